"""``retrain-ci evaluate``: score an exported model on a golden folder, and gate on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from retrain.cli.common import (
    BaselineOption,
    FormatOption,
    MaxClassRegressionOption,
    MaxRegressionOption,
    MinAccuracyOption,
    MinClassRecallOption,
    MinClassSupportOption,
    MinTestImagesOption,
    OutputFormat,
    ProgressBars,
    console,
    err_console,
    exit_on_gate,
    print_story,
    user_errors,
    warn,
    warn_skipped,
)
from retrain.cli.label import InputLayerOption, LabelsOption, OutputLayerOption
from retrain.core.display import escaped_bytes, is_undecodable, name_bytes, printable
from retrain.core.gate import interval_text
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings

MISCLASSIFIED_SHOWN = 20


def evaluate(  # noqa: PLR0913 (a Typer command declares its options)
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="SavedModel folder, frozen .pb or .tflite.")],
    image_dir: Annotated[
        Path,
        typer.Argument(metavar="IMAGE_DIR", help="Labeled folder: one subfolder per class; every image is used."),
    ],
    labels: LabelsOption = None,
    input_layer: InputLayerOption = FROZEN_INPUT_NAME,
    output_layer: OutputLayerOption = ExportSettings().final_tensor_name,
    min_accuracy: MinAccuracyOption = None,
    min_class_recall: MinClassRecallOption = None,
    baseline: BaselineOption = None,
    max_regression: MaxRegressionOption = None,
    max_class_regression: MaxClassRegressionOption = None,
    min_class_support: MinClassSupportOption = None,
    min_test_images: MinTestImagesOption = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            metavar="DIR",
            help="Also write a report (HTML, metrics.json, ...) here.",
            rich_help_panel="Outputs",
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Score an exported model on a fixed labeled folder (a golden set training never sees), and gate on it."""
    from retrain.app.audit import settings_file
    from retrain.app.training import evaluate_job, gate_settings, read_baseline

    bars = ProgressBars()
    with user_errors():
        source = settings_file(image_dir, None, Path.cwd())
        earlier = read_baseline(baseline)
        gate = gate_settings(
            source.path,
            earlier,
            min_accuracy=min_accuracy,
            min_class_recall=min_class_recall,
            max_regression=max_regression,
            max_class_regression=max_class_regression,
            min_class_support=min_class_support,
            min_test_images=min_test_images,
        )
        try:
            result = evaluate_job(
                model,
                image_dir,
                gate=gate,
                labels=labels,
                input_layer=input_layer,
                output_layer=output_layer,
                report_dir=report_dir,
                baseline=earlier,
                hooks=bars.hooks(),
            )
        finally:
            bars.stop()
    warn_skipped(result.evaluation.skipped)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(_json_document(result), indent=2))
        warn(list(result.run.gate.warnings))  # stdout is the JSON alone; the table's story prints them otherwise
    else:
        _print_tables(result.evaluation, result.run, image_dir)
        print_story(result.run)
    if result.report:
        err_console.print(f"Report: {result.report.directory / 'report.html'}", soft_wrap=True, markup=False)
    for line in source.lines():  # after the run: a run that ends in an error says that one line only
        err_console.print(line, soft_wrap=True, markup=False)
    exit_on_gate(result.run.gate)


def _json_document(result) -> dict:
    """The documented JSON shape of ``retrain-ci evaluate --format json``."""
    from retrain.core.run_json import run_report_document

    evaluation, run = result.evaluation, result.run
    document = {
        "accuracy": evaluation.accuracy,
        "accuracy_interval": list(run.accuracy_interval),
        "images": len(evaluation.paths),
        "per_class": [
            {
                "label": row.Index,
                "images": int(row.images),
                "recall": float(row.recall),
                "recall_interval": list(run.per_class[row.Index].recall_interval),
            }
            for row in evaluation.per_class().itertuples()
        ],
        "misclassified": [
            _json_path(m.path) | {"true": m.true_label, "predicted": m.predicted_label, "confidence": m.confidence}
            for m in evaluation.misclassified()
        ],
        "skipped": [escaped_bytes(str(path)) for path, _ in evaluation.skipped],
    }
    if any(is_undecodable(str(path)) for path, _ in evaluation.skipped):
        document["skipped_bytes"] = [name_bytes(str(path)) for path, _ in evaluation.skipped]
    metrics = run_report_document(run)
    return document | {"gate": metrics["gate"]} | ({"baseline": metrics["baseline"]} if run.diff else {})


def _json_path(path: Path) -> dict[str, str]:
    """A path as valid UTF-8 JSON: a name that is not valid UTF-8 escaped (``\\xff``), its bytes in ``path_bytes``."""
    shown = {"path": escaped_bytes(str(path))}
    return shown | ({"path_bytes": name_bytes(str(path))} if is_undecodable(str(path)) else {})


def _print_tables(evaluation, run, image_dir: Path) -> None:
    from retrain.reports import recall_interval_cell

    table = Table("class", "images", "recall", "95% interval")
    for row in evaluation.per_class().itertuples():
        interval = recall_interval_cell(run.per_class[row.Index])
        table.add_row(Text(printable(row.Index)), str(row.images), f"{row.recall:.1%}", interval)
    console.print(table)
    misclassified = evaluation.misclassified()
    if misclassified:
        wrong = Table(
            "image",
            "true",
            "predicted",
            "confidence",
            title=Text(f"Misclassified in {printable(image_dir)}, most confident first"),
        )
        wrong.columns[0].overflow = "fold"
        for m in misclassified[:MISCLASSIFIED_SHOWN]:
            shown = m.path.relative_to(image_dir) if m.path.is_relative_to(image_dir) else m.path
            labels = (Text(printable(m.true_label)), Text(printable(m.predicted_label)))
            wrong.add_row(Text(printable(shown)), *labels, f"{m.confidence:.0%}")
        console.print(wrong)
        if len(misclassified) > MISCLASSIFIED_SHOWN:
            console.print(f"... and {len(misclassified) - MISCLASSIFIED_SHOWN} more (--format json lists all)")
    console.print(
        f"Accuracy = {evaluation.accuracy:.1%} (N={len(evaluation.paths)}, 95% interval "
        f"{interval_text(run.accuracy_interval)})"
    )
