"""``retrain-ci modules``: the modules ``--tfhub-module`` accepts by name."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from retrain.cli.common import FormatOption, OutputFormat, console
from retrain.core.settings import FINE_TUNE_MODULE, ModuleSettings
from retrain.training.quiet import import_tensorflow_quietly


def modules(output_format: FormatOption = OutputFormat.table) -> None:
    """List the modules --tfhub-module accepts by name: bundled backbones and well-known TF Hub modules."""
    import_tensorflow_quietly()
    from retrain.training.modules.loading import module_catalogue

    catalogue = module_catalogue()
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([vars(info) for info in catalogue], indent=2))
        return
    table = Table("module", "source", "input size", "features", "available")
    table.columns[0].overflow = "fold"
    for info in catalogue:
        size = f"{info.image_size}x{info.image_size}"
        table.add_row(info.name, info.source, size, str(info.feature_size), info.available)
    console.print(table)
    console.print(
        f"Defaults: {ModuleSettings().tfhub_module} for the new layer alone, {FINE_TUNE_MODULE} with --fine-tune. "
        "Any other TF Hub handle or URL, or a local SavedModel folder, works as well.",
        soft_wrap=True,
    )
