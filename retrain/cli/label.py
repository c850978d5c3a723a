"""``retrain-ci label``: classify images with an exported model (the tutorial's label_image.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from retrain.cli.common import OutputFormat, console, user_errors, warn_skipped
from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings
from retrain.training.quiet import import_tensorflow_quietly

ModelOption = Annotated[Path, typer.Option("--model", "--graph", help="SavedModel folder, frozen .pb or .tflite.")]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="Labels file, checked against the model's own [default: the model's; output_labels.txt beside a .pb or "
        ".tflite exported elsewhere].",
    ),
]
InputLayerOption = Annotated[str, typer.Option("--input-layer", help="Input op of a frozen graph.")]
OutputLayerOption = Annotated[str, typer.Option("--output-layer", help="Output op of a frozen graph.")]
InputHeightOption = Annotated[
    int | None, typer.Option("--input-height", help="Input height of a frozen graph that does not declare it.", min=1)
]
InputWidthOption = Annotated[
    int | None, typer.Option("--input-width", help="Input width of a frozen graph that does not declare it.", min=1)
]


def label(  # noqa: PLR0913 (a Typer command declares its options)
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    model: ModelOption,
    labels: LabelsOption = None,
    input_layer: InputLayerOption = FROZEN_INPUT_NAME,
    output_layer: OutputLayerOption = ExportSettings().final_tensor_name,
    input_height: InputHeightOption = None,
    input_width: InputWidthOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels shown per image.", min=1)] = 5,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table for people, json for machines.")] = (
        OutputFormat.table
    ),
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
    table = Table("image", *(f"#{rank}" for rank in range(1, min(top_k, len(exported.labels)) + 1)))
    table.columns[0].overflow = "fold"
    for path, top in ranked:
        table.add_row(Text(printable(path)), *(f"{name} {score:.3f}" for name, score in top))
    console.print(table)
