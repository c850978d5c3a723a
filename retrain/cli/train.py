"""``retrain-ci train``: the tutorial's retraining, with reports and the CI gate."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from retrain.cli.common import (
    EXECUTION,
    BaselineOption,
    ExecutorOption,
    MaxClassRegressionOption,
    MaxRegressionOption,
    MinAccuracyOption,
    MinClassRecallOption,
    MinClassSupportOption,
    MinTestImagesOption,
    ProgressBars,
    RayAddressOption,
    collect_garbage_rarely,
    console,
    err_console,
    exit_on_gate,
    print_report_summary,
    user_errors,
    warn,
    warn_skipped,
)
from retrain.core.display import printable
from retrain.core.settings import (
    BUDGET_EPOCHS,
    FINE_TUNE_MODULE,
    MAX_STEPS,
    MIN_STEPS,
    QUANTIZATIONS,
    SCHEDULES,
    Distortions,
    ExecutionSettings,
    ExportSettings,
    FineTuneSettings,
    ModuleSettings,
    OutputPaths,
    RunSettings,
    SplitSettings,
    TrainingSettings,
)

RUN = RunSettings(Path())
MODULE, SPLIT, TRAINING, DISTORTIONS, EXPORT, OUTPUTS = (
    RUN.module,
    RUN.split,
    RUN.training,
    RUN.distortions,
    RUN.export,
    RUN.outputs,
)
FINE_TUNE = FineTuneSettings()
Quantization = Enum("Quantization", {name: name for name in QUANTIZATIONS}, type=str)
Schedule = Enum("Schedule", {name: name for name in SCHEDULES}, type=str)

if TYPE_CHECKING:
    from retrain.reports import AuditLinks


def _batch_size(value: int) -> int:
    if value != -1 and value < 1:
        raise typer.BadParameter("must be a positive number of images, or -1 for the whole set")
    return value


def drawn_seed(seed: int | None) -> int:
    """The seed given, or a new one, shown so that the run can be repeated."""
    if seed is None:
        seed = secrets.randbelow(2**31)
        console.print(f"Random seed {seed} (pass --random-seed to repeat this run)")
    return seed


def train(  # noqa: PLR0913 (a Typer command declares its options)
    image_dir_argument: Annotated[
        Path | None, typer.Argument(metavar="IMAGE_DIR", help="Folder with one subfolder of images per class.")
    ] = None,
    image_dir: Annotated[
        Path | None, typer.Option("--image-dir", metavar="DIR", help="Same as IMAGE_DIR.", rich_help_panel="Data")
    ] = None,
    testing_percentage: Annotated[
        float,
        typer.Option(
            "--testing-percentage",
            metavar="PERCENT",
            help="Share of images in the test split.",
            min=0.0,
            max=100.0,
            rich_help_panel="Data",
        ),
    ] = SPLIT.testing_percentage,
    validation_percentage: Annotated[
        float,
        typer.Option(
            "--validation-percentage",
            metavar="PERCENT",
            help="Share of images in the validation split.",
            min=0.0,
            max=100.0,
            rich_help_panel="Data",
        ),
    ] = SPLIT.validation_percentage,
    tfhub_module: Annotated[
        str | None,
        typer.Option(
            "--tfhub-module",
            metavar="MODULE",
            help="Backbone: a bundled module's name (retrain-ci modules), a SavedModel folder, or a TF Hub handle.",
            show_default=f"{MODULE.tfhub_module}; {FINE_TUNE_MODULE} with --fine-tune",
            rich_help_panel="Training",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            metavar="PIXELS",
            help="Input size of a module that does not declare one.",
            min=1,
            rich_help_panel="Training",
        ),
    ] = None,
    how_many_training_steps: Annotated[
        int | None,
        typer.Option(
            "--how-many-training-steps",
            metavar="STEPS",
            help="Training steps.",
            min=1,
            show_default=f"{BUDGET_EPOCHS} passes over the training images, {MIN_STEPS:,} to {MAX_STEPS:,}",
            rich_help_panel="Training",
        ),
    ] = None,
    learning_rate: Annotated[
        float,
        typer.Option(
            "--learning-rate",
            metavar="RATE",
            help="SGD learning rate (the tutorial's: 0.01).",
            min=0.0,
            rich_help_panel="Training",
        ),
    ] = TRAINING.learning_rate,
    learning_rate_schedule: Annotated[
        Schedule,
        typer.Option(
            "--learning-rate-schedule",
            help="cosine: decay to 0 over the steps; constant: the tutorial's.",
            rich_help_panel="Training",
        ),
    ] = Schedule(TRAINING.learning_rate_schedule),
    train_batch_size: Annotated[
        int,
        typer.Option(
            "--train-batch-size",
            metavar="IMAGES",
            help="Images per training step (-1: all).",
            callback=_batch_size,
            rich_help_panel="Training",
        ),
    ] = TRAINING.train_batch_size,
    eval_step_interval: Annotated[
        int,
        typer.Option(
            "--eval-step-interval",
            metavar="STEPS",
            help="Steps between evaluations on validation images (a step line every 10% of the run; all: --verbose).",
            min=1,
            rich_help_panel="Training",
        ),
    ] = TRAINING.eval_step_interval,
    validation_batch_size: Annotated[
        int,
        typer.Option(
            "--validation-batch-size",
            metavar="IMAGES",
            help="Images per evaluation (-1: all).",
            callback=_batch_size,
            rich_help_panel="Training",
        ),
    ] = TRAINING.validation_batch_size,
    test_batch_size: Annotated[
        int,
        typer.Option(
            "--test-batch-size",
            metavar="IMAGES",
            help="Images in the final test (-1: all).",
            callback=_batch_size,
            rich_help_panel="Training",
        ),
    ] = RUN.test_batch_size,
    random_seed: Annotated[
        int | None,
        typer.Option(
            "--random-seed",
            metavar="SEED",
            help="Seed for a reproducible run.",
            min=0,
            show_default="random",
            rich_help_panel="Training",
        ),
    ] = None,
    mirror_training: Annotated[
        bool,
        typer.Option(
            "--mirror-training/--no-mirror-training",
            help="Also train on each training image mirrored left-right (from the cache).",
            rich_help_panel="Mirror images",
        ),
    ] = RUN.mirror_training,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta",
            help="Average each prediction over the image and its mirror image (the exported model does too).",
            rich_help_panel="Mirror images",
        ),
    ] = RUN.tta,
    flip_left_right: Annotated[
        bool,
        typer.Option("--flip-left-right", help="Randomly mirror training images.", rich_help_panel="Distortions"),
    ] = DISTORTIONS.flip_left_right,
    random_crop: Annotated[
        float,
        typer.Option(
            "--random-crop",
            metavar="PERCENT",
            help="Margin to randomly crop off.",
            min=0.0,
            rich_help_panel="Distortions",
        ),
    ] = DISTORTIONS.random_crop,
    random_scale: Annotated[
        float,
        typer.Option(
            "--random-scale",
            metavar="PERCENT",
            help="Randomly scale up by up to this.",
            min=0.0,
            rich_help_panel="Distortions",
        ),
    ] = DISTORTIONS.random_scale,
    random_brightness: Annotated[
        float,
        typer.Option(
            "--random-brightness",
            metavar="PERCENT",
            help="Randomly change brightness by up to this.",
            min=0.0,
            rich_help_panel="Distortions",
        ),
    ] = DISTORTIONS.random_brightness,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help=f"After the new layer, also train the top of the backbone ({FINE_TUNE_MODULE} unless --tfhub-module "
            "names another bundled one) on augmented images.",
            rich_help_panel="Fine-tuning",
        ),
    ] = False,
    fine_tune_blocks: Annotated[
        int,
        typer.Option(
            "--fine-tune-blocks",
            metavar="BLOCKS",
            help="Backbone blocks to train, counted from the top.",
            min=1,
            rich_help_panel="Fine-tuning",
        ),
    ] = FINE_TUNE.blocks,
    fine_tune_epochs: Annotated[
        int,
        typer.Option(
            "--fine-tune-epochs",
            metavar="EPOCHS",
            help="Passes over the training images.",
            min=1,
            rich_help_panel="Fine-tuning",
        ),
    ] = FINE_TUNE.epochs,
    fine_tune_learning_rate: Annotated[
        float,
        typer.Option(
            "--fine-tune-learning-rate",
            metavar="RATE",
            help="Peak learning rate of the blocks (SGD, momentum 0.9, cosine); the new layer's is 10x.",
            min=0.0,
            rich_help_panel="Fine-tuning",
        ),
    ] = FINE_TUNE.learning_rate,
    fine_tune_image_size: Annotated[
        int | None,
        typer.Option(
            "--fine-tune-image-size",
            metavar="PIXELS",
            help="Input size of the fine-tuned model.",
            min=32,
            show_default="1.25x the backbone's",
            rich_help_panel="Fine-tuning",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            metavar="DIR",
            help="Put every output of the run under this folder.",
            rich_help_panel="Outputs",
        ),
    ] = None,
    saved_model_dir: Annotated[
        Path | None,
        typer.Option(
            "--saved-model-dir",
            metavar="DIR",
            help="SavedModel of the classifier.",
            show_default=str(OUTPUTS.saved_model_dir),
            rich_help_panel="Outputs",
        ),
    ] = None,
    output_labels: Annotated[
        Path | None,
        typer.Option(
            "--output-labels",
            metavar="FILE",
            help="Labels file.",
            show_default=str(OUTPUTS.output_labels),
            rich_help_panel="Outputs",
        ),
    ] = None,
    output_graph: Annotated[
        Path | None,
        typer.Option(
            "--output-graph",
            metavar="FILE",
            help="Frozen graph for label_image.py.",
            show_default=str(OUTPUTS.output_graph),
            rich_help_panel="Outputs",
        ),
    ] = None,
    final_tensor_name: Annotated[
        str,
        typer.Option("--final-tensor-name", metavar="NAME", help="Name of the output op.", rich_help_panel="Outputs"),
    ] = EXPORT.final_tensor_name,
    export: Annotated[
        str,
        typer.Option(
            "--export",
            metavar="FORMATS",
            help="Models to write: saved_model,frozen_graph (the default) or none (a gate's).",
            show_default=False,
            rich_help_panel="Outputs",
        ),
    ] = ",".join(EXPORT.formats),
    tflite: Annotated[
        Path | None,
        typer.Option(
            "--tflite", metavar="FILE", help="Also write a TensorFlow Lite model here.", rich_help_panel="Outputs"
        ),
    ] = None,
    quantize: Annotated[
        Quantization,
        typer.Option(
            "--quantize",
            metavar="TYPE",
            help="TensorFlow Lite quantization: none, dynamic, float16 or int8 (calibrated on training images).",
            rich_help_panel="Outputs",
        ),
    ] = Quantization(EXPORT.quantize),
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            metavar="DIR",
            help="Evaluation report (HTML, metrics.json, ...).",
            show_default=str(OUTPUTS.report_dir),
            rich_help_panel="Outputs",
        ),
    ] = None,
    summaries_dir: Annotated[
        Path | None,
        typer.Option(
            "--summaries-dir",
            metavar="DIR",
            help="TensorBoard logs.",
            show_default=str(OUTPUTS.summaries_dir),
            rich_help_panel="Outputs",
        ),
    ] = None,
    intermediate_store_frequency: Annotated[
        int,
        typer.Option(
            "--intermediate-store-frequency",
            metavar="STEPS",
            help="Save a frozen graph every this many steps (0: never).",
            min=0,
            rich_help_panel="Outputs",
        ),
    ] = EXPORT.intermediate_store_frequency,
    intermediate_output_graphs_dir: Annotated[
        Path | None,
        typer.Option(
            "--intermediate-output-graphs-dir",
            metavar="DIR",
            help="Where those graphs go.",
            show_default=str(OUTPUTS.intermediate_output_graphs_dir),
            rich_help_panel="Outputs",
        ),
    ] = None,
    print_misclassified_test_images: Annotated[
        bool,
        typer.Option(
            "--print-misclassified-test-images",
            help="List the test images the model gets wrong.",
            rich_help_panel="Outputs",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="A step line at every evaluation, not every 10% of the run.",
            rich_help_panel="Outputs",
        ),
    ] = False,
    min_accuracy: MinAccuracyOption = None,
    min_class_recall: MinClassRecallOption = None,
    baseline: BaselineOption = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            "--audit",
            metavar="AUDIT.json",
            help="The dataset's `check` JSON: its change and findings in the report.",
            rich_help_panel="Gate",
        ),
    ] = None,
    max_regression: MaxRegressionOption = None,
    max_class_regression: MaxClassRegressionOption = None,
    min_class_support: MinClassSupportOption = None,
    min_test_images: MinTestImagesOption = None,
    bottleneck_dir: Annotated[
        Path,
        typer.Option(
            "--bottleneck-dir", metavar="DIR", help="Cache of bottleneck values.", rich_help_panel="Cache and executor"
        ),
    ] = MODULE.bottleneck_dir,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Retrain a new top layer on your images and export the classifier."""
    if image_dir_argument and image_dir and image_dir_argument != image_dir:
        raise typer.BadParameter("give the image folder once, as IMAGE_DIR or --image-dir")
    folder = image_dir_argument or image_dir
    if folder is None:
        raise typer.BadParameter("missing the image folder: retrain-ci train IMAGE_DIR")
    from retrain.app.audit import audit_links, settings_file
    from retrain.app.training import gate_settings, read_baseline

    collect_garbage_rarely()
    with user_errors():
        source = settings_file(folder, None, Path.cwd())
        earlier = read_baseline(baseline)
        audit_read = audit_links(audit) if audit is not None else None  # a bad audit file stops before any work
        settings = RunSettings(
            folder,
            module=ModuleSettings.for_mode(
                tfhub_module, fine_tune=fine_tune, image_size=image_size, bottleneck_dir=bottleneck_dir
            ),
            split=SplitSettings(testing_percentage, validation_percentage),
            execution=ExecutionSettings(
                executor.value if executor else EXECUTION.executor, ray_address or EXECUTION.ray_address
            ),
            training=TrainingSettings(
                how_many_training_steps=how_many_training_steps,
                learning_rate=learning_rate,
                learning_rate_schedule=learning_rate_schedule.value,
                train_batch_size=train_batch_size,
                eval_step_interval=eval_step_interval,
                validation_batch_size=validation_batch_size,
                random_seed=drawn_seed(random_seed),
            ),
            distortions=Distortions(flip_left_right, random_crop, random_scale, random_brightness),
            fine_tune=FineTuneSettings(
                blocks=fine_tune_blocks,
                epochs=fine_tune_epochs,
                learning_rate=fine_tune_learning_rate,
                image_size=fine_tune_image_size,
            )
            if fine_tune
            else None,
            export=ExportSettings(
                final_tensor_name,
                tflite,
                quantize.value,
                intermediate_store_frequency,
                ExportSettings.formats_named(export),
            ),
            outputs=OutputPaths.under(
                output_dir,
                output_labels=output_labels,
                saved_model_dir=saved_model_dir,
                output_graph=output_graph,
                summaries_dir=summaries_dir,
                intermediate_output_graphs_dir=intermediate_output_graphs_dir,
                report_dir=report_dir,
            ),
            gate=gate_settings(
                source.path,
                earlier,
                min_accuracy=min_accuracy,
                min_class_recall=min_class_recall,
                max_regression=max_regression,
                max_class_regression=max_class_regression,
                min_class_support=min_class_support,
                min_test_images=min_test_images,
            ),
            baseline=earlier,
            test_batch_size=test_batch_size,
            tta=tta,
            mirror_training=mirror_training,
        )
        train_and_report(settings, print_misclassified_test_images, source.lines(), verbose=verbose, audit=audit_read)


def train_and_report(
    settings: RunSettings,
    print_misclassified: bool,
    settings_lines: Sequence[str] = (),
    verbose: bool = False,
    audit: AuditLinks | None = None,
) -> None:
    """Run the flow with progress bars and step lines, print what it produced and the ``settings_lines`` (which
    settings file the run read), then apply the gate. Step lines: every evaluation when ``verbose``, else the first one
    past each tenth of the run (10%, 20%, ...) and the last: a line per evaluation would bury the results in 400."""
    from retrain.app.training import train_job

    epochs = settings.fine_tune.epochs if settings.fine_tune else 0
    printed_tenth = 0

    def on_eval(step) -> None:
        nonlocal printed_tenth
        tenth = step.step * 10 // step.steps
        if not verbose and tenth == printed_tenth and step.step != step.steps:
            return
        printed_tenth = tenth
        console.print(
            f"Step {step.step}/{step.steps}: train accuracy {step.train_accuracy:.1%}, "
            f"cross-entropy {step.cross_entropy:.3f}, "
            f"validation accuracy {step.validation_accuracy:.1%} (N={step.validation_count})",
            soft_wrap=True,
        )

    def on_epoch(epoch) -> None:
        if epoch.epoch == 0:
            console.print(f"Before fine-tuning: validation accuracy {epoch.validation_accuracy:.1%}")
            return
        console.print(
            f"Fine-tuning epoch {epoch.epoch}/{epochs}: "
            f"train accuracy {epoch.train_accuracy:.1%} (augmented), cross-entropy {epoch.train_cross_entropy:.3f}, "
            f"validation accuracy {epoch.validation_accuracy:.1%}, {epoch.seconds:.0f} s",
            soft_wrap=True,
        )

    # A training bar only for runs whose steps take visible time (distortions on).
    bars = ProgressBars(hidden_stages=() if settings.distortions.enabled else ("Training",))
    hooks = bars.hooks(
        on_stage=lambda message: console.print(message, soft_wrap=True), on_eval=on_eval, on_epoch=on_epoch
    )
    try:
        result = train_job(settings, hooks, audit)
    finally:
        bars.stop()
    _print_result(result, settings, print_misclassified)
    for line in settings_lines:  # after the run: a run that ends in an error says that one line only
        err_console.print(line, soft_wrap=True, markup=False)
    exit_on_gate(result.run.gate)


def _print_result(result, settings: RunSettings, print_misclassified: bool) -> None:
    bottlenecks = result.bottlenecks
    warn(bottlenecks.warnings)
    dataset = result.dataset
    skipped = [*dataset.skipped, *bottlenecks.skipped]
    warn_skipped(skipped)
    warn([f"skipped link {path}: {reason}" for path, reason in dataset.skipped_links])
    seconds = result.run.durations
    console.print(
        f"{len(dataset.images)} images in {len(dataset.labels)} classes; bottlenecks: "
        f"{bottlenecks.computed} computed, {bottlenecks.reused} from cache, {len(skipped)} skipped "
        f"({seconds.bottlenecks:.1f} s); training {seconds.training:.1f} s",
        soft_wrap=True,
    )
    if print_misclassified:
        console.print("=== MISCLASSIFIED TEST IMAGES ===")
        for item in result.test.misclassified():
            console.print(
                printable(f"{item.path}  {item.true_label} -> {item.predicted_label} ({item.confidence:.0%})"),
                soft_wrap=True,
                markup=False,
            )
    console.print(f"Final test accuracy = {result.test.accuracy:.1%} (N={len(result.test.truths)})")
    outputs = settings.outputs
    formats = settings.export.formats
    shown = [
        *([("Saved model", outputs.saved_model_dir)] if "saved_model" in formats else []),
        *([("Frozen graph", outputs.output_graph)] if "frozen_graph" in formats else []),
        ("Labels", outputs.output_labels),
        ("TensorBoard logs", outputs.summaries_dir),
    ]
    tflite = settings.export.tflite
    if tflite:
        size = Path(tflite).stat().st_size / 1e6
        quantize = settings.export.quantize
        accuracy = result.run.tflite.test_accuracy
        console.print(f"TensorFlow Lite test accuracy = {accuracy:.1%} ({quantize}, {size:.1f} MB)")
        shown.append(("TensorFlow Lite model", tflite))
    for what, path in shown:
        console.print(f"{what}: {printable(path)}", soft_wrap=True, markup=False)
    print_report_summary(result.report)
