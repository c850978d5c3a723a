"""``retrain-ci cache``: keep the content-keyed caches (bottlenecks, image properties) to what a dataset holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retrain.cli.common import user_errors
from retrain.cli.help import HelpCommand, HelpGroup
from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.settings import GateSettings, ModuleSettings

MODULE = ModuleSettings()

cache = typer.Typer(
    cls=HelpGroup,
    help="Keep the bottleneck and image-property caches small: they grow with every change to the data.",
    no_args_is_help=True,
)


@cache.command(cls=HelpCommand)
def prune(
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="The dataset whose content the caches keep.")],
    bottleneck_dir: Annotated[
        Path | None,
        typer.Option(
            "--bottleneck-dir",
            metavar="DIR",
            help="As for train; every module's folder in it is pruned.",
            show_default=str(MODULE.bottleneck_dir),
        ),
    ] = None,
    property_cache: Annotated[
        Path | None,
        typer.Option("--property-cache", metavar="DIR", help="As for check.", show_default="the bottleneck dir"),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="Settings file; default: the one here, never one inside DIR."),
    ] = None,
) -> None:
    """Drop cached entries of content no longer in DIR (deleted or edited photos), e.g. before CI saves the cache."""
    from datacheck.properties import property_cache as property_store
    from datacheck.settings import AuditSettings
    from retrain.app.audit import settings_file
    from retrain.core.bottleneck_cache import prune_caches
    from retrain.core.dataset import scan_folder
    from retrain.core.settings_file import resolve_settings

    with user_errors():
        source = settings_file(image_dir, config_file, Path.cwd())
        settings = resolve_settings(
            AuditSettings,
            source.path,
            {"bottleneck_dir": bottleneck_dir, "property_cache": property_cache},
            shared_with=(GateSettings,),
        )
        images = [path for folder in scan_folder(image_dir).classes for path in folder.images]
        if not images:
            raise InputError(f"no images in {image_dir}: pruning would empty the caches; give the dataset folder")
        roots = {settings.module.bottleneck_dir, property_store(settings).directory.parent}
        pruned = prune_caches(sorted(roots), images)
    for folder, removed in pruned.items():
        typer.echo(f"{printable(str(folder))}: removed {removed.entries} entries ({_size(removed.bytes)})")
    entries = sum(removed.entries for removed in pruned.values())
    freed = sum(removed.bytes for removed in pruned.values())
    typer.echo(f"removed {entries} cache entries ({_size(freed)}) of content no longer in {printable(str(image_dir))}")
    for line in source.lines():
        typer.echo(line, err=True)


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"
