"""The ``retrain-ci`` command line: parse options, call the library, render what it returns."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from retrain.errors import RetrainError

DEMO_DATA = Path(__file__).parent / "demo_data" / "flower_photos"


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
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
        import tensorflow_hub  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _batch_size(value: int) -> int:
    if value != -1 and value < 1:
        raise typer.BadParameter("must be a positive number of images, or -1 for the whole set")
    return value


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
    how_many_training_steps: Annotated[
        int, typer.Option("--how-many-training-steps", help="Training steps.", min=1)
    ] = 4000,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="SGD learning rate.", min=0.0)] = 0.01,
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
    final_tensor_name: Annotated[
        str, typer.Option("--final-tensor-name", help="Name of the output op.")
    ] = "final_result",
    print_misclassified_test_images: Annotated[
        bool, typer.Option("--print-misclassified-test-images", help="List the test images the model gets wrong.")
    ] = False,
    random_seed: Annotated[
        int | None, typer.Option("--random-seed", help="Seed for a reproducible run.", min=0, show_default="random")
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
            tfhub_module=tfhub_module,
            image_size=image_size,
            bottleneck_dir=bottleneck_dir,
            output_dir=output_dir,
            output_labels=output_labels,
            saved_model_dir=saved_model_dir,
            testing_percentage=testing_percentage,
            validation_percentage=validation_percentage,
            test_batch_size=test_batch_size,
            final_tensor_name=final_tensor_name,
            training=dict(
                how_many_training_steps=how_many_training_steps,
                learning_rate=learning_rate,
                train_batch_size=train_batch_size,
                eval_step_interval=eval_step_interval,
                validation_batch_size=validation_batch_size,
                random_seed=random_seed,
            ),
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
            bottleneck_dir=workdir / "bottleneck",
            output_dir=workdir / "output",
            training=dict(how_many_training_steps=how_many_training_steps, random_seed=0),
        )
        _train_and_report(options, print_misclassified=True)
    console.print(
        f"\nNext: retrain-ci train YOUR_IMAGE_DIR --output-dir ./model  (the demo's files are in {workdir})",
        soft_wrap=True,
    )


def _run_options(image_dir: Path, *, output_dir: Path | None = None, training: dict, **kwargs):
    """Tutorial defaults, then ``--output-dir``, then explicit output paths; a missing seed is drawn and shown."""
    _import_tensorflow_quietly()
    from retrain.run import RunOptions
    from retrain.training import TrainingConfig

    if training.get("random_seed") is None:
        training["random_seed"] = secrets.randbelow(2**31)
        console.print(f"Random seed {training['random_seed']} (pass --random-seed to repeat this run)")
    defaults = RunOptions(image_dir)
    output_labels = kwargs.pop("output_labels", None)
    saved_model_dir = kwargs.pop("saved_model_dir", None)
    return RunOptions(
        image_dir,
        training=TrainingConfig(**training),
        output_labels=output_labels or (output_dir / "output_labels.txt" if output_dir else defaults.output_labels),
        saved_model_dir=saved_model_dir or (output_dir / "saved_model" if output_dir else defaults.saved_model_dir),
        **kwargs,
    )


def _train_and_report(options, print_misclassified: bool) -> None:
    from retrain.run import RunEvents, train

    total_steps = options.training.how_many_training_steps
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )

    def on_bottleneck_progress(done: int, total: int) -> None:
        if not progress.tasks:
            progress.start()
            progress.add_task("Computing bottlenecks", total=total)
        progress.update(progress.tasks[0].id, completed=done)
        if done == total:
            progress.stop()

    def on_eval(step) -> None:
        console.print(
            f"Step {step.step}/{total_steps}: train accuracy {step.train_accuracy:.1%}, "
            f"cross-entropy {step.cross_entropy:.3f}, "
            f"validation accuracy {step.validation_accuracy:.1%} (N={step.validation_count})",
            soft_wrap=True,
        )

    events = RunEvents(
        on_stage=lambda message: console.print(message, soft_wrap=True),
        on_bottleneck_progress=on_bottleneck_progress,
        on_eval=on_eval,
    )
    try:
        result = train(options, events)
    finally:
        progress.stop()
    _print_result(result, options, print_misclassified)


def _print_result(result, options, print_misclassified: bool) -> None:
    bottlenecks = result.bottlenecks
    for path, reason in bottlenecks.skipped:
        err_console.print(f"warning: skipped unreadable image {path}: {reason}", soft_wrap=True, markup=False)
    dataset = result.dataset
    console.print(
        f"{len(dataset.images)} images in {len(dataset.labels)} classes; bottlenecks: "
        f"{bottlenecks.computed} computed, {bottlenecks.reused} from cache, {len(bottlenecks.skipped)} skipped "
        f"({result.seconds['bottlenecks']:.1f} s); training {result.seconds['training']:.1f} s",
        soft_wrap=True,
    )
    if print_misclassified:
        console.print("=== MISCLASSIFIED TEST IMAGES ===")
        for item in result.misclassified:
            console.print(
                f"{item.path}  {item.true_label} -> {item.predicted_label} ({item.confidence:.0%})",
                soft_wrap=True,
                markup=False,
            )
    console.print(f"Final test accuracy = {result.test_accuracy:.1%} (N={result.test_count})")
    console.print(f"Saved model: {options.saved_model_dir}", soft_wrap=True, markup=False)
    console.print(f"Labels: {options.output_labels}", soft_wrap=True, markup=False)


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
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True,
        )  # fmt: skip
        stages: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in stages:
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
