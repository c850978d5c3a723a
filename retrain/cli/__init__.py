"""The ``retrain-ci`` command line: one module per command, each parsing options and calling the library."""

from __future__ import annotations

from typing import Annotated

import typer

from retrain.cli.cache import cache
from retrain.cli.check import check
from retrain.cli.demo import demo
from retrain.cli.evaluate import evaluate
from retrain.cli.gate import gate
from retrain.cli.help import HelpCommand, HelpGroup
from retrain.cli.label import label
from retrain.cli.modules import modules
from retrain.cli.report import report
from retrain.cli.train import train


def _tutorial_spelling(token: str) -> str:
    """Accept the tutorial's snake_case flags (``--how_many_training_steps``) as the kebab-case ones."""
    return token.replace("_", "-")


def _print_version(asked: bool) -> None:
    if asked:
        from retrain import __version__

        typer.echo(f"retrain-ci {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=HelpGroup,
    help="Retrain an image classifier on your own categories (the TensorFlow retraining tutorial), and gate CI on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"token_normalize_func": _tutorial_spelling},
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """``retrain-ci [--version] COMMAND``: the options that come before a command's name."""


for command in (train, demo, label, evaluate, modules, report, check, gate):
    app.command(cls=HelpCommand)(command)
app.add_typer(cache, name="cache")
