"""How ``--help`` looks: flags without a type, and option names kept whole at any width (80 columns included)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup


class HelpTable(Table):
    """Typer's help table with the option names kept whole. When a table is too wide, Rich narrows its widest columns
    together: a long help text would drag a long option name down with it ("--how-many-train…")."""

    def __init__(self, *headers, **options) -> None:
        super().__init__(*headers, **options)
        self.collapse_padding = True  # one space between columns, none for an empty one (no short option, say)

    def add_row(self, *renderables, **options) -> None:
        super().add_row(*renderables, **options)
        for column in self.columns[:-2]:  # names; the type and the help text wrap
            column.no_wrap = True
        for item in getattr(renderables[-1], "renderables", ()):  # the help text, its default and the like
            if isinstance(item, Text):
                item.overflow = "fold"  # a long default path breaks, never ends in "…"


@contextmanager
def _help_tables() -> Iterator[None]:
    """Typer builds its help tables from ``rich_utils.Table``: ours while one --help is drawn, Typer's again after."""
    from typer import rich_utils

    typer_table = rich_utils.Table
    rich_utils.Table = HelpTable
    try:
        yield
    finally:
        rich_utils.Table = typer_table


def _flags_without_type(ctx: typer.Context, command: TyperCommand | TyperGroup) -> None:
    """A flag takes no value: its line shows no ``<bool>`` (Typer shows a type for every option)."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class HelpCommand(TyperCommand):
    """A command with the help described in this module."""

    def format_help(self, ctx: typer.Context, formatter) -> None:
        _flags_without_type(ctx, self)
        with _help_tables():
            super().format_help(ctx, formatter)


class HelpGroup(TyperGroup):
    """A group (``retrain-ci``, ``retrain-ci cache``) with the help described in this module."""

    def format_help(self, ctx: typer.Context, formatter) -> None:
        _flags_without_type(ctx, self)
        with _help_tables():
            super().format_help(ctx, formatter)
