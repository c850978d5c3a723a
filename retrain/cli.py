"""The ``retrain-ci`` command line: parse options, call the library, render what it returns."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from retrain.errors import RetrainError

DEMO_DATA = Path(__file__).parent / "demo_data" / "flower_photos"
MISCLASSIFIED_SHOWN = 20


def _tutorial_spelling(token: str) -> str:
    """Accept the tutorial's snake_case flags (``--how_many_training_steps``) as the kebab-case ones."""
    return token.replace("_", "-")


app = typer.Typer(
    help="Retrain an image classifier on your own categories (the TensorFlow retraining tutorial), and gate CI on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"token_normalize_func": _tutorial_spelling},
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Quantization(str, Enum):
    none = "none"
    dynamic = "dynamic"
    float16 = "float16"
    int8 = "int8"


class Schedule(str, Enum):
    cosine = "cosine"
    constant = "constant"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except RetrainError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr closed: its C++ layer logs CUDA and oneDNN notices before any setting applies."""
    from retrain.quiet import stderr_closed

    with stderr_closed():
        import tensorflow  # noqa: F401
        import tensorflow_hub  # noqa: F401


def _warn_skipped(skipped: list[tuple[Path, str]]) -> None:
    """One warning line per file that could not be read; the run goes on without it."""
    for path, reason in skipped:
        err_console.print(f"warning: skipped unreadable image {path}: {reason}", soft_wrap=True, markup=False)


def _batch_size(value: int) -> int:
    if value != -1 and value < 1:
        raise typer.BadParameter("must be a positive number of images, or -1 for the whole set")
    return value


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


MinAccuracyOption = Annotated[
    float | None, typer.Option("--min-accuracy", help="Gate: exit 1 when accuracy is below this.", min=0.0, max=1.0)
]
MinClassRecallOption = Annotated[
    float | None,
    typer.Option("--min-class-recall", help="Gate: exit 1 when any class's recall is below this.", min=0.0, max=1.0),
]
BaselineOption = Annotated[
    Path | None, typer.Option("--baseline", help="Gate: an earlier run's metrics.json (e.g. the main branch's).")
]
MaxRegressionOption = Annotated[
    float, typer.Option("--max-regression", help="Gate: largest accuracy drop allowed against --baseline.", min=0.0)
]


def _gate_options(min_accuracy, min_class_recall, baseline: Path | None, max_regression: float):
    from retrain.gate import GateOptions, baseline_accuracy

    return GateOptions(
        min_accuracy, min_class_recall, baseline_accuracy(baseline) if baseline else None, max_regression
    )


def _exit_on_gate(report) -> None:
    """After every output is written: exit 1 with one line when the gate failed."""
    if not report.passed:
        typer.echo("FAILED: " + "; ".join(report.metrics["gate"]["failures"]), err=True)
        raise typer.Exit(1)


def _print_report_summary(report) -> None:
    from retrain.reports import class_scores

    metrics = report.metrics
    table = Table("class", "precision", "recall", "F1", "images", title="Test set, per class")
    for label, row in metrics["per_class"].items():
        table.add_row(label, *class_scores(row), str(row["support"]))
    console.print(table)
    confusions = report.top_confusions()
    if confusions:
        listed = ", ".join(f"{true} -> {predicted} ({count})" for true, predicted, count in confusions)
        console.print(f"Top confusions: {listed}", soft_wrap=True)
    if report.gated:
        console.print(f"Gate: {'passed' if report.passed else 'FAILED'}")
    console.print(f"Report: {report.directory / 'report.html'}", soft_wrap=True, markup=False)


@app.command()
def train(
    image_dir_argument: Annotated[
        Path | None, typer.Argument(metavar="IMAGE_DIR", help="Folder with one subfolder of images per class.")
    ] = None,
    image_dir: Annotated[Path | None, typer.Option("--image-dir", help="Same as IMAGE_DIR.")] = None,
    tfhub_module: Annotated[
        str, typer.Option("--tfhub-module", help="Bundled module name, local SavedModel folder, or TF Hub handle/URL.")
    ] = "efficientnet_lite0",
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Input size for modules that do not declare one.", min=1)
    ] = None,
    bottleneck_dir: Annotated[Path, typer.Option("--bottleneck-dir", help="Cache of bottleneck values.")] = Path(
        "/tmp/bottleneck"
    ),
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Put every output of the run under this folder.")
    ] = None,
    output_labels: Annotated[
        Path | None, typer.Option("--output-labels", help="Labels file.", show_default="/tmp/output_labels.txt")
    ] = None,
    saved_model_dir: Annotated[
        Path | None,
        typer.Option("--saved-model-dir", help="SavedModel of the classifier.", show_default="/tmp/saved_models/1"),
    ] = None,
    output_graph: Annotated[
        Path | None,
        typer.Option("--output-graph", help="Frozen graph for label_image.py.", show_default="/tmp/output_graph.pb"),
    ] = None,
    summaries_dir: Annotated[
        Path | None, typer.Option("--summaries-dir", help="TensorBoard logs.", show_default="/tmp/retrain_logs")
    ] = None,
    intermediate_store_frequency: Annotated[
        int, typer.Option("--intermediate-store-frequency", help="Save a frozen graph every N steps (0: never).", min=0)
    ] = 0,
    intermediate_output_graphs_dir: Annotated[
        Path | None,
        typer.Option(
            "--intermediate-output-graphs-dir",
            help="Where intermediate graphs go.",
            show_default="/tmp/intermediate_graph",
        ),
    ] = None,
    tflite: Annotated[Path | None, typer.Option("--tflite", help="Also write a TensorFlow Lite model here.")] = None,
    quantize: Annotated[
        Quantization,
        typer.Option("--quantize", help="TensorFlow Lite quantization (int8: calibrated on training images)."),
    ] = Quantization.none,
    how_many_training_steps: Annotated[
        int, typer.Option("--how-many-training-steps", help="Training steps.", min=1)
    ] = 4000,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", help="SGD learning rate (the tutorial's: 0.01).", min=0.0)
    ] = 0.1,
    learning_rate_schedule: Annotated[
        Schedule,
        typer.Option("--learning-rate-schedule", help="cosine: decay to 0 over the steps; constant: the tutorial's."),
    ] = Schedule.cosine,
    mirror_training: Annotated[
        bool,
        typer.Option(
            "--mirror-training/--no-mirror-training",
            help="Also train on the cached bottleneck of each training image mirrored left-right.",
        ),
    ] = True,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta",
            help="Average each prediction over the image and its mirror image (the exported model does too).",
        ),
    ] = True,
    testing_percentage: Annotated[
        float, typer.Option("--testing-percentage", help="Percentage of images in the test split.", min=0.0, max=100.0)
    ] = 10.0,
    validation_percentage: Annotated[
        float,
        typer.Option(
            "--validation-percentage", help="Percentage of images in the validation split.", min=0.0, max=100.0
        ),
    ] = 10.0,
    eval_step_interval: Annotated[
        int, typer.Option("--eval-step-interval", help="Steps between accuracy lines.", min=1)
    ] = 10,
    train_batch_size: Annotated[
        int, typer.Option("--train-batch-size", help="Images per training step (-1: all).", callback=_batch_size)
    ] = 100,
    validation_batch_size: Annotated[
        int, typer.Option("--validation-batch-size", help="Images per validation (-1: all).", callback=_batch_size)
    ] = 100,
    test_batch_size: Annotated[
        int, typer.Option("--test-batch-size", help="Images in the final test (-1: all).", callback=_batch_size)
    ] = -1,
    flip_left_right: Annotated[
        bool, typer.Option("--flip-left-right", help="Randomly mirror training images.")
    ] = False,
    random_crop: Annotated[
        float, typer.Option("--random-crop", help="Percentage of margin to randomly crop off.", min=0.0)
    ] = 0.0,
    random_scale: Annotated[
        float, typer.Option("--random-scale", help="Percentage to randomly scale up by.", min=0.0)
    ] = 0.0,
    random_brightness: Annotated[
        float, typer.Option("--random-brightness", help="Percentage to randomly change brightness by.", min=0.0)
    ] = 0.0,
    final_tensor_name: Annotated[
        str, typer.Option("--final-tensor-name", help="Name of the output op.")
    ] = "final_result",
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir", help="Evaluation report (HTML, metrics.json, ...).", show_default="/tmp/retrain_report"
        ),
    ] = None,
    min_accuracy: MinAccuracyOption = None,
    min_class_recall: MinClassRecallOption = None,
    baseline: BaselineOption = None,
    max_regression: MaxRegressionOption = 0.02,
    print_misclassified_test_images: Annotated[
        bool, typer.Option("--print-misclassified-test-images", help="List the test images the model gets wrong.")
    ] = False,
    random_seed: Annotated[
        int | None, typer.Option("--random-seed", help="Seed for a reproducible run.", min=0, show_default="random")
    ] = None,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help="After the new layer, also train the top of the (bundled) backbone on augmented images.",
        ),
    ] = False,
    fine_tune_blocks: Annotated[
        int, typer.Option("--fine-tune-blocks", help="Backbone blocks to train, counted from the top.", min=1)
    ] = 5,
    fine_tune_epochs: Annotated[
        int, typer.Option("--fine-tune-epochs", help="Passes over the training images.", min=1)
    ] = 12,
    fine_tune_learning_rate: Annotated[
        float,
        typer.Option(
            "--fine-tune-learning-rate",
            help="Peak learning rate of the blocks (SGD, momentum 0.9, cosine); the new layer's is 10x.",
            min=0.0,
        ),
    ] = 0.003,
    fine_tune_image_size: Annotated[
        int | None,
        typer.Option(
            "--fine-tune-image-size",
            help="Input size of the fine-tuned model.",
            min=32,
            show_default="1.25x the backbone's: 280 for efficientnet_lite0",
        ),
    ] = None,
) -> None:
    """Retrain a new top layer on your images and export the classifier."""
    if image_dir_argument and image_dir and image_dir_argument != image_dir:
        raise typer.BadParameter("give the image folder once, as IMAGE_DIR or --image-dir")
    folder = image_dir_argument or image_dir
    if folder is None:
        raise typer.BadParameter("missing the image folder: retrain-ci train IMAGE_DIR")
    with _user_errors():
        options = _run_options(
            folder,
            output_dir,
            outputs=dict(
                output_labels=output_labels,
                saved_model_dir=saved_model_dir,
                output_graph=output_graph,
                summaries_dir=summaries_dir,
                intermediate_output_graphs_dir=intermediate_output_graphs_dir,
                report_dir=report_dir,
            ),
            training=dict(
                how_many_training_steps=how_many_training_steps,
                learning_rate=learning_rate,
                learning_rate_schedule=learning_rate_schedule.value,
                train_batch_size=train_batch_size,
                eval_step_interval=eval_step_interval,
                validation_batch_size=validation_batch_size,
                random_seed=random_seed,
            ),
            distortions=dict(
                flip_left_right=flip_left_right,
                random_crop=random_crop,
                random_scale=random_scale,
                random_brightness=random_brightness,
            ),
            tfhub_module=tfhub_module,
            image_size=image_size,
            bottleneck_dir=bottleneck_dir,
            testing_percentage=testing_percentage,
            validation_percentage=validation_percentage,
            test_batch_size=test_batch_size,
            final_tensor_name=final_tensor_name,
            intermediate_store_frequency=intermediate_store_frequency,
            tflite=tflite,
            quantize=quantize.value,
            gate=_gate_options(min_accuracy, min_class_recall, baseline, max_regression),
            tta=tta,
            mirror_training=mirror_training,
            fine_tune=dict(
                blocks=fine_tune_blocks,
                epochs=fine_tune_epochs,
                learning_rate=fine_tune_learning_rate,
                image_size=fine_tune_image_size,
            )
            if fine_tune
            else None,
        )
        _train_and_report(options, print_misclassified_test_images)


@app.command()
def demo(
    how_many_training_steps: Annotated[
        int, typer.Option("--how-many-training-steps", help="Training steps.", min=1)
    ] = 1000,
) -> None:
    """Retrain on the bundled sample of flower photos, to see the whole flow work in about a minute."""
    workdir = Path(tempfile.mkdtemp(prefix="retrain-ci-demo-"))
    images = workdir / "flower_photos"
    shutil.copytree(DEMO_DATA, images)
    console.print(f"Demo: {sum(1 for _ in images.rglob('*.jpg'))} flower photos copied to {images}")
    with _user_errors():
        options = _run_options(
            images,
            workdir / "output",
            outputs={},
            training=dict(how_many_training_steps=how_many_training_steps, random_seed=0, eval_step_interval=100),
            distortions={},
            bottleneck_dir=workdir / "bottleneck",
        )
        _train_and_report(options, print_misclassified=True)
    console.print(
        f"\nNext: retrain-ci label --model {options.saved_model_dir} {images / 'daisy'}\n"
        f"      retrain-ci train YOUR_IMAGE_DIR --output-dir ./model",
        soft_wrap=True,
        markup=False,
    )


def _run_options(
    image_dir: Path, output_dir: Path | None, *, outputs: dict, training: dict, distortions: dict, **kwargs
):
    """Tutorial defaults, then ``--output-dir``, then explicit output paths; a missing seed is drawn and shown."""
    _import_tensorflow_quietly()
    from retrain.distortions import Distortions
    from retrain.finetuning import FineTuneConfig
    from retrain.run import RunOptions
    from retrain.training import TrainingConfig

    if training.get("random_seed") is None:
        training["random_seed"] = secrets.randbelow(2**31)
        console.print(f"Random seed {training['random_seed']} (pass --random-seed to repeat this run)")
    under_output_dir = {
        "output_labels": "output_labels.txt",
        "saved_model_dir": "saved_model",
        "output_graph": "output_graph.pb",
        "summaries_dir": "retrain_logs",
        "intermediate_output_graphs_dir": "intermediate_graph",
        "report_dir": "report",
    }
    if output_dir:
        outputs = {name: outputs.get(name) or output_dir / relative for name, relative in under_output_dir.items()}
    outputs = {name: path for name, path in outputs.items() if path is not None}
    if kwargs.get("fine_tune"):
        kwargs["fine_tune"] = FineTuneConfig(**kwargs["fine_tune"])
    return RunOptions(
        image_dir, training=TrainingConfig(**training), distortions=Distortions(**distortions), **outputs, **kwargs
    )


def _train_and_report(options, print_misclassified: bool) -> None:
    from retrain.run import RunEvents, train

    total_steps = options.training.how_many_training_steps
    progress = _progress()

    def bar(description: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback showing one bar per pass of work, from its first call until done == total."""
        task = None

        def update(done: int, total: int) -> None:
            nonlocal task
            if task is None or done == 0:
                progress.start()
                task = progress.add_task(description, total=total)
            progress.update(task, completed=done)
            if done == total:
                progress.stop()
                progress.remove_task(task)  # it stays printed; the next pass's bar must not draw it again
                task = None

        return update

    training_bar = bar("Training")

    def on_fine_tune_epoch(epoch) -> None:
        if epoch.epoch == 0:
            console.print(f"Before fine-tuning: validation accuracy {epoch.validation_accuracy:.1%}")
            return
        console.print(
            f"Fine-tuning epoch {epoch.epoch}/{options.fine_tune.epochs}: "
            f"train accuracy {epoch.train_accuracy:.1%} (augmented), cross-entropy {epoch.train_cross_entropy:.3f}, "
            f"validation accuracy {epoch.validation_accuracy:.1%}, {epoch.seconds:.0f} s",
            soft_wrap=True,
        )

    def on_eval(step) -> None:
        console.print(
            f"Step {step.step}/{total_steps}: train accuracy {step.train_accuracy:.1%}, "
            f"cross-entropy {step.cross_entropy:.3f}, "
            f"validation accuracy {step.validation_accuracy:.1%} (N={step.validation_count})",
            soft_wrap=True,
        )

    events = RunEvents(
        on_stage=lambda message: console.print(message, soft_wrap=True),
        on_bottleneck_progress=bar("Computing bottlenecks"),
        # A bar only for runs whose steps take visible time (distortions on).
        on_step=(lambda step: training_bar(step, total_steps)) if options.distortions.enabled else None,
        on_fine_tune_progress=bar("Fine-tuning"),
        on_fine_tune_epoch=on_fine_tune_epoch,
        on_eval=on_eval,
    )
    try:
        result = train(options, events)
    finally:
        progress.stop()
    _print_result(result, options, print_misclassified)
    _exit_on_gate(result.report)


def _print_result(result, options, print_misclassified: bool) -> None:
    bottlenecks = result.bottlenecks
    _warn_skipped(bottlenecks.skipped)
    dataset = result.dataset
    seconds = result.report.metrics["durations_seconds"]
    console.print(
        f"{len(dataset.images)} images in {len(dataset.labels)} classes; bottlenecks: "
        f"{bottlenecks.computed} computed, {bottlenecks.reused} from cache, {len(bottlenecks.skipped)} skipped "
        f"({seconds['bottlenecks']:.1f} s); training {seconds['training']:.1f} s",
        soft_wrap=True,
    )
    if print_misclassified:
        console.print("=== MISCLASSIFIED TEST IMAGES ===")
        for item in result.test.misclassified():
            console.print(
                f"{item.path}  {item.true_label} -> {item.predicted_label} ({item.confidence:.0%})",
                soft_wrap=True,
                markup=False,
            )
    console.print(f"Final test accuracy = {result.test.accuracy:.1%} (N={len(result.test.truths)})")
    outputs = [
        ("Saved model", options.saved_model_dir),
        ("Frozen graph", options.output_graph),
        ("Labels", options.output_labels),
        ("TensorBoard logs", options.summaries_dir),
    ]
    if options.tflite:
        size = Path(options.tflite).stat().st_size / 1e6
        console.print(
            f"TensorFlow Lite test accuracy = {result.tflite_accuracy:.1%} ({options.quantize}, {size:.1f} MB)"
        )
        outputs.append(("TensorFlow Lite model", options.tflite))
    for what, path in outputs:
        console.print(f"{what}: {path}", soft_wrap=True, markup=False)
    _print_report_summary(result.report)


ModelOption = Annotated[Path, typer.Option("--model", "--graph", help="SavedModel folder, frozen .pb or .tflite.")]
LabelsOption = Annotated[
    Path | None,
    typer.Option("--labels", help="Labels file [default: inside a SavedModel; output_labels.txt beside .pb/.tflite]."),
]
InputLayerOption = Annotated[str, typer.Option("--input-layer", help="Input op of a frozen graph.")]
OutputLayerOption = Annotated[str, typer.Option("--output-layer", help="Output op of a frozen graph.")]
InputHeightOption = Annotated[
    int | None, typer.Option("--input-height", help="Input height of a frozen graph that does not declare it.", min=1)
]
InputWidthOption = Annotated[
    int | None, typer.Option("--input-width", help="Input width of a frozen graph that does not declare it.", min=1)
]


@app.command()
def label(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    model: ModelOption,
    labels: LabelsOption = None,
    input_layer: InputLayerOption = "Placeholder",
    output_layer: OutputLayerOption = "final_result",
    input_height: InputHeightOption = None,
    input_width: InputWidthOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels shown per image.", min=1)] = 5,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table for people, json for machines.")] = (
        OutputFormat.table
    ),
) -> None:
    """Classify images with an exported model (label_image.py, for every export format)."""
    _import_tensorflow_quietly()
    from retrain.inference import classify, image_files, load_exported_model

    with _user_errors():
        exported = load_exported_model(model, labels, input_layer, output_layer, (input_height, input_width))
        files = image_files(images)
        classified = classify(exported, files)
        _warn_skipped(classified.skipped)
        if not classified.paths:
            raise RetrainError("no readable image to classify")
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
        table.add_row(str(path), *(f"{name} {score:.3f}" for name, score in top))
    console.print(table)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="SavedModel folder, frozen .pb or .tflite.")],
    image_dir: Annotated[Path, typer.Argument(help="Labeled folder: one subfolder per class; every image is used.")],
    labels: LabelsOption = None,
    input_layer: InputLayerOption = "Placeholder",
    output_layer: OutputLayerOption = "final_result",
    min_accuracy: MinAccuracyOption = None,
    min_class_recall: MinClassRecallOption = None,
    baseline: BaselineOption = None,
    max_regression: MaxRegressionOption = 0.02,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Also write a report (HTML, metrics.json, ...) here.")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table for people, json for machines.")] = (
        OutputFormat.table
    ),
) -> None:
    """Score an exported model on a fixed labeled folder (a golden set training never sees), and gate on it."""
    _import_tensorflow_quietly()
    from retrain.evaluation import evaluate_folder
    from retrain.export import check_writable
    from retrain.gate import gate_failures
    from retrain.inference import load_exported_model
    from retrain.reports import write_report

    with _user_errors():
        gate_options = _gate_options(min_accuracy, min_class_recall, baseline, max_regression)
        if report_dir:
            check_writable(report_dir, "report folder", folder=True)
        exported = load_exported_model(model, labels, input_layer, output_layer)
        with _progress() as progress:
            task = progress.add_task("Classifying", total=None)
            evaluation = evaluate_folder(
                exported, image_dir, lambda done, total: progress.update(task, completed=done, total=total)
            )
    _warn_skipped(evaluation.skipped)
    per_class = evaluation.per_class()
    misclassified = evaluation.misclassified()
    failures = gate_failures(evaluation.accuracy, evaluation.recall_by_class(), gate_options)
    if output_format is OutputFormat.json:
        document = {
            "accuracy": evaluation.accuracy,
            "images": len(evaluation.paths),
            "per_class": [
                {"label": row.Index, "images": int(row.images), "recall": float(row.recall)}
                for row in per_class.itertuples()
            ],
            "misclassified": [
                {"path": str(m.path), "true": m.true_label, "predicted": m.predicted_label, "confidence": m.confidence}
                for m in misclassified
            ],
            "skipped": [str(path) for path, _ in evaluation.skipped],
            "gate": {**gate_options.as_dict(), "failures": failures},
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        table = Table("class", "images", "recall")
        for row in per_class.itertuples():
            table.add_row(row.Index, str(row.images), f"{row.recall:.1%}")
        console.print(table)
        if misclassified:
            wrong = Table("misclassified image (most confident first)", "true", "predicted", "confidence")
            wrong.columns[0].overflow = "fold"
            for m in misclassified[:MISCLASSIFIED_SHOWN]:
                wrong.add_row(str(m.path), m.true_label, m.predicted_label, f"{m.confidence:.0%}")
            console.print(wrong)
            if len(misclassified) > MISCLASSIFIED_SHOWN:
                console.print(f"... and {len(misclassified) - MISCLASSIFIED_SHOWN} more (--format json lists all)")
        console.print(f"Accuracy = {evaluation.accuracy:.1%} (N={len(evaluation.paths)})")
    if report_dir:
        info = {"model": str(model), "dataset": str(image_dir), "skipped": len(evaluation.skipped)}
        report = write_report(report_dir, evaluation, info, {**gate_options.as_dict(), "failures": failures})
        err_console.print(f"Report: {report.directory / 'report.html'}", soft_wrap=True, markup=False)
    if failures:
        typer.echo("FAILED: " + "; ".join(failures), err=True)
        raise typer.Exit(1)


@app.command()
def modules(
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table for people, json for machines.")] = (
        OutputFormat.table
    ),
) -> None:
    """List the modules --tfhub-module accepts by name: bundled backbones and well-known TF Hub modules."""
    _import_tensorflow_quietly()
    from retrain.modules.loading import module_catalogue

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
    console.print("Any other TF Hub handle or URL, or a local SavedModel folder, works as well.")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="An earlier run's --output-dir or --report-dir.")],
    print_summary: Annotated[bool, typer.Option("--print-summary", help="Print summary.md to stdout.")] = False,
    github_step_summary: Annotated[
        bool, typer.Option("--github-step-summary", help="Append summary.md to the file $GITHUB_STEP_SUMMARY names.")
    ] = False,
) -> None:
    """Render an earlier run's report again (HTML, Markdown, CSV, PNG) from the predictions it kept."""
    from retrain.reports import rerender

    with _user_errors():
        rendered = rerender(run_dir)
        summary = (rendered.directory / "summary.md").read_text(encoding="utf-8")
        if github_step_summary:
            target = os.environ.get("GITHUB_STEP_SUMMARY")
            if not target:
                raise RetrainError(
                    "--github-step-summary: GITHUB_STEP_SUMMARY is not set (it is, inside GitHub Actions)"
                )
            with open(target, "a", encoding="utf-8") as f:
                f.write(summary)
    if print_summary:
        typer.echo(summary, nl=False)
    else:
        _print_report_summary(rendered)


@app.command()
def check(
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one subfolder of images per class.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="table (for people), json, markdown (pull requests) or github (annotations).",
        ),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar="LEVEL",
            show_default="error",
            help="Exit 1 on a finding at or above: error, warning, never.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Settings file (pyproject.toml or retrain-ci.toml); default: the first in DIR, then here.",
        ),
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", metavar="ID", help="Check id to leave out (repeatable).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", metavar="ID", help="Run only this check id (repeatable).")
    ] = None,
    min_images: Annotated[
        int | None,
        typer.Option("--min-images", help="Error below this many images in a class.", show_default="20", min=0),
    ] = None,
    recommended_images: Annotated[
        int | None,
        typer.Option(
            "--recommended-images", help="Warning below this many images in a class.", show_default="100", min=0
        ),
    ] = None,
    max_imbalance: Annotated[
        float | None,
        typer.Option(
            "--max-imbalance", help="Warning when the largest class is this many times a class.", show_default="3"
        ),
    ] = None,
    near_duplicate_bits: Annotated[
        int | None,
        typer.Option(
            "--near-duplicate-bits", help="Perceptual hashes this close (of 64 bits) are one picture.", show_default="4"
        ),
    ] = None,
    testing_percentage: Annotated[
        float | None, typer.Option("--testing-percentage", help="As for train.", show_default="10", min=0.0, max=100.0)
    ] = None,
    validation_percentage: Annotated[
        float | None,
        typer.Option("--validation-percentage", help="As for train.", show_default="10", min=0.0, max=100.0),
    ] = None,
    bottleneck_dir: Annotated[
        Path | None, typer.Option("--bottleneck-dir", help="As for train.", show_default="/tmp/bottleneck")
    ] = None,
    tfhub_module: Annotated[
        str | None, typer.Option("--tfhub-module", help="As for train.", show_default="efficientnet_lite0")
    ] = None,
) -> None:
    """Audit a dataset before training: broken files, duplicates, leaks between splits, suspected mislabels, ..."""
    from datacheck.audit import audit_dataset
    from datacheck.config import find_config_file, load_config
    from datacheck.findings import Severity
    from datacheck.registry import selected_checks
    from datacheck.reports import FORMATS, render_github, render_json, render_markdown, render_table

    if output_format not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    renderers = {"json": render_json, "markdown": render_markdown, "github": render_github}
    with _user_errors():
        if output is not None and not output.parent.is_dir():
            raise RetrainError(f"cannot write the report to {output}: folder {output.parent} does not exist")
        settings = load_config(config_file or find_config_file(image_dir, Path.cwd())).replace(
            fail_on=fail_on,
            skip=tuple(i for value in skip or () for i in value.split(",")) or None,
            only=tuple(i for value in only or () for i in value.split(",")) or None,
            min_images=min_images,
            recommended_images=recommended_images,
            max_imbalance=max_imbalance,
            near_duplicate_bits=near_duplicate_bits,
            testing_percentage=testing_percentage,
            validation_percentage=validation_percentage,
            bottleneck_dir=bottleneck_dir,
            tfhub_module=tfhub_module,
        )
        if any(check.needs_bottlenecks for check in selected_checks(settings.only, settings.skip)):
            _import_tensorflow_quietly()
        progress = _progress()
        stages: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in stages:
                if total == 0:
                    return  # e.g. every bottleneck already cached: no bar for nothing
                progress.start()
                stages[stage] = progress.add_task(stage, total=total)
            progress.update(stages[stage], completed=done)

        try:
            report = audit_dataset(image_dir, settings, on_progress)
        finally:
            progress.stop()
        if output is None:
            if output_format == "table":
                console.print(render_table(report))
            else:
                typer.echo(renderers[output_format](report), nl=False)
        else:
            try:
                with open(output, "w", encoding="utf-8") as f:
                    if output_format == "table":
                        Console(file=f, width=160).print(render_table(report))
                    else:
                        f.write(renderers[output_format](report))
            except OSError as error:
                raise RetrainError(f"cannot write the report to {output} ({error.strerror})") from None
    gate = None if settings.fail_on == "never" else Severity(settings.fail_on)
    raise typer.Exit(1 if report.fails(gate) else 0)
