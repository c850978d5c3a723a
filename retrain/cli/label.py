"""``retrain-ci label``: classify images with an exported model (the tutorial's label_image.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from retrain.cli.common import FormatOption, OutputFormat, console, user_errors, warn_skipped
from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings
from retrain.training.quiet import import_tensorflow_quietly

ModelOption = Annotated[
    Path,
    typer.Option(
        "--model", "--graph", metavar="MODEL", help="SavedModel folder, frozen .pb or .tflite.", rich_help_panel="Model"
    ),
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        metavar="FILE",
        help="Labels file, checked against the model's own.",
        show_default="the model's; output_labels.txt beside a .pb or .tflite exported elsewhere",
        rich_help_panel="Model",
    ),
]
InputLayerOption = Annotated[
    str, typer.Option("--input-layer", metavar="NAME", help="Input op of a frozen graph.", rich_help_panel="Model")
]
OutputLayerOption = Annotated[
    str, typer.Option("--output-layer", metavar="NAME", help="Output op of a frozen graph.", rich_help_panel="Model")
]
InputHeightOption = Annotated[
    int | None,
    typer.Option(
        "--input-height",
        metavar="PIXELS",
        help="Input height of a frozen graph that does not declare it.",
        min=1,
        rich_help_panel="Model",
    ),
]
InputWidthOption = Annotated[
    int | None,
    typer.Option(
        "--input-width",
        metavar="PIXELS",
        help="Input width of a frozen graph that does not declare it.",
        min=1,
        rich_help_panel="Model",
    ),
]


def label(  # noqa: PLR0913 (a Typer command declares its options)
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files and/or folders of images.")],
    model: ModelOption,
    labels: LabelsOption = None,
    input_layer: InputLayerOption = FROZEN_INPUT_NAME,
    output_layer: OutputLayerOption = ExportSettings().final_tensor_name,
    input_height: InputHeightOption = None,
    input_width: InputWidthOption = None,
    top_k: Annotated[
        int, typer.Option("--top-k", metavar="K", help="Labels shown per image.", min=1, rich_help_panel="Outputs")
    ] = 5,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Classify images with an exported model (label_image.py, for every export format)."""
    import_tensorflow_quietly()
    from retrain.training.inference import classify, image_files, load_exported_model

    with user_errors():
        exported = load_exported_model(model, labels, input_layer, output_layer, (input_height, input_width))
        files = image_files(images)
        classified = classify(exported, files)
        warn_skipped(classified.skipped)
        if not classified.paths:
            raise InputError("no readable image to classify")
    ranked = [
        (path, [(exported.labels[i], float(p[i])) for i in p.argsort()[::-1][:top_k]])
        for path, p in zip(classified.paths, classified.probabilities, strict=True)
    ]
    if output_format is OutputFormat.json:
        document = [
            {"path": str(path), "predictions": [{"label": name, "score": score} for name, score in top]}
            for path, top in ranked
        ]
        typer.echo(json.dumps(document, indent=2))
        return
    folder = _common_folder(classified.paths)
    if folder is not None:
        console.print(f"Images in {printable(folder)}", soft_wrap=True, markup=False)
    table = Table("image", *(f"#{rank}" for rank in range(1, min(top_k, len(exported.labels)) + 1)))
    table.columns[0].overflow = "fold"
    for path, top in ranked:
        shown = path.relative_to(folder) if folder is not None else path
        table.add_row(Text(printable(shown)), *(Text(printable(f"{name} {score:.3f}")) for name, score in top))
    console.print(table)


def _common_folder(paths: list[Path]) -> Path | None:
    """The folder holding every image, named once above the table so that each row shows a short path; None when
    they share none worth naming (the root, the current folder, absolute and relative paths mixed)."""
    try:
        folder = Path(os.path.commonpath([path.parent for path in paths]))
    except ValueError:
        return None
    return None if folder in (Path("."), Path(folder.anchor)) else folder
