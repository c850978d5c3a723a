"""The retraining flow, end to end: image folder -> bottlenecks (cached) -> new layer -> test accuracy -> exports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import __version__
from retrain.bottlenecks import BottleneckCache, Bottlenecks, ProgressCallback, compute_bottlenecks
from retrain.dataset import Dataset, fingerprint, list_dataset
from retrain.distortions import DistortedBottlenecks, Distortions
from retrain.errors import RetrainError
from retrain.evaluation import Evaluation
from retrain.export import (
    Classifier,
    check_writable,
    export_frozen_graph,
    export_saved_model,
    export_tflite,
    frozen_graph,
    write_labels,
)
from retrain.finetuning import EpochResult, FineTuneConfig, FineTuned, fine_tune
from retrain.gate import GateOptions, gate_failures
from retrain.images import load_image
from retrain.inference import classify, load_exported_model
from retrain.modules import ImageModule, load_image_module
from retrain.modules.efficientnet_lite import BUNDLED_BACKBONES, build_network
from retrain.modules.loading import DEFAULT_MODULE, fine_tunable_backbone
from retrain.reports import Report, write_report
from retrain.summaries import TrainingSummaries
from retrain.training import EvalStep, SoftmaxHead, TrainingConfig, TrainingHooks, train_head

# int8 quantization is calibrated on this many training images.
CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs; defaults are the tutorial's."""

    image_dir: Path
    tfhub_module: str = DEFAULT_MODULE
    image_size: int | None = None
    bottleneck_dir: Path = Path("/tmp/bottleneck")
    testing_percentage: float = 10
    validation_percentage: float = 10
    test_batch_size: int = -1
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distortions: Distortions = field(default_factory=Distortions)
    saved_model_dir: Path = Path("/tmp/saved_models/1")
    output_labels: Path = Path("/tmp/output_labels.txt")
    output_graph: Path = Path("/tmp/output_graph.pb")
    final_tensor_name: str = "final_result"
    summaries_dir: Path = Path("/tmp/retrain_logs")
    intermediate_store_frequency: int = 0
    intermediate_output_graphs_dir: Path = Path("/tmp/intermediate_graph")
    tflite: Path | None = None
    quantize: str = "none"
    report_dir: Path = Path("/tmp/retrain_report")
    gate: GateOptions = field(default_factory=GateOptions)
    tta: bool = True
    mirror_training: bool = True
    fine_tune: FineTuneConfig | None = None

    @property
    def needs_mirrored(self) -> bool:
        """Mirrored bottlenecks serve --tta, and --mirror-training unless distortions make fresh training ones."""
        return self.tta or (self.mirror_training and not self.distortions.enabled)


@dataclass(frozen=True)
class RunEvents:
    """What a run reports while it works; the CLI turns these into progress bars and step lines."""

    on_stage: Callable[[str], None] = lambda message: None
    on_bottleneck_progress: ProgressCallback | None = None
    on_step: Callable[[int], None] | None = None
    on_eval: Callable[[EvalStep], None] | None = None
    on_fine_tune_progress: ProgressCallback | None = None
    on_fine_tune_epoch: Callable[[EpochResult], None] | None = None


@dataclass
class RunResult:
    dataset: Dataset
    module: ImageModule
    bottlenecks: Bottlenecks
    head: SoftmaxHead
    test: Evaluation
    validation: Evaluation
    report: Report
    tflite_accuracy: float | None = None
    fine_tuned: FineTuned | None = None


def train(options: RunOptions, events: RunEvents = RunEvents()) -> RunResult:
    """Run the tutorial's flow and write every output; raise RetrainError on bad input."""
    started = time.perf_counter()
    # Same seed, same digits: TensorFlow may otherwise pick kernels whose float sums vary between runs.
    tf.config.experimental.enable_op_determinism()
    _check_outputs(options)
    dataset = list_dataset(Path(options.image_dir), options.testing_percentage, options.validation_percentage)
    events.on_stage(f"Loading module {options.tfhub_module}")
    module = load_image_module(options.tfhub_module, options.image_size)

    bottleneck_start = time.perf_counter()
    cache = BottleneckCache(Path(options.bottleneck_dir), module.cache_key)
    bottlenecks = compute_bottlenecks(dataset.images, module, cache, events.on_bottleneck_progress)
    mirrored = _mirrored_bottlenecks(options, module, bottlenecks, events)
    train_x, train_y, train_images = bottlenecks.split("training")
    validation_x, validation_y, validation_images = bottlenecks.split("validation")
    test_x, test_y, test_images = bottlenecks.split("testing")
    for name, rows in (("training", train_x), ("validation", validation_x), ("testing", test_x)):
        if len(rows) == 0:
            raise RetrainError(f"no readable image is left in the {name} split; see the skipped files above")
    mirrored_validation_x = mirrored.split("validation")[0] if options.tta else None
    mirrored_test_x = mirrored.split("testing")[0] if options.tta else None
    if options.mirror_training and not options.distortions.enabled:
        train_x = np.concatenate([train_x, mirrored.split("training")[0]])
        train_y = np.concatenate([train_y, train_y])

    training_start = time.perf_counter()
    distorted = None
    if options.distortions.enabled:
        events.on_stage(
            "Distortions on: every training step decodes, distorts and runs its batch through the module "
            "(the bottleneck cache serves only validation and test), so training is much slower"
        )
        distorted = DistortedBottlenecks(
            [image.path for image in train_images], module, options.distortions, options.training.random_seed
        )
    summaries = TrainingSummaries(Path(options.summaries_dir))

    def on_eval(step: EvalStep, head: SoftmaxHead) -> None:
        summaries.write_eval(step, head)
        if events.on_eval:
            events.on_eval(step)

    def on_snapshot(step: int, head: SoftmaxHead) -> None:
        graph_def = frozen_graph(Classifier(module, head, dataset.labels, options.final_tensor_name, options.tta))
        export_frozen_graph(graph_def, Path(options.intermediate_output_graphs_dir) / f"intermediate_{step}.pb")

    hooks = TrainingHooks(events.on_step, on_eval, options.intermediate_store_frequency, on_snapshot)
    head = train_head(
        train_x, train_y, validation_x, validation_y, len(dataset.labels), options.training, hooks, distorted
    )
    training_end = time.perf_counter()
    fine_tuned = None

    def on_fine_tune_epoch(epoch: EpochResult) -> None:
        summaries.write_fine_tune_epoch(epoch)
        if events.on_fine_tune_epoch:
            events.on_fine_tune_epoch(epoch)

    if options.fine_tune:
        backbone = fine_tunable_backbone(options.tfhub_module)
        size = options.fine_tune.input_size(backbone.image_size)
        events.on_stage(
            f"Fine-tuning the top {options.fine_tune.blocks} blocks of {options.tfhub_module} with the new layer "
            f"for {options.fine_tune.epochs} epochs on augmented {size}x{size} training images"
        )
        fine_tuned = fine_tune(
            module,
            build_network(backbone, size),
            head,
            train_images,
            validation_images,
            options.fine_tune,
            options.training.random_seed,
            options.tta,
            events.on_fine_tune_progress,
            on_fine_tune_epoch,
        )
        module, head = fine_tuned.module, fine_tuned.head
    fine_tune_end = time.perf_counter()

    if options.test_batch_size != -1:
        rows = np.random.default_rng(options.training.random_seed).integers(0, len(test_x), options.test_batch_size)
        test_x, test_y, test_images = test_x[rows], test_y[rows], [test_images[i] for i in rows]
        mirrored_test_x = None if mirrored_test_x is None else mirrored_test_x[rows]
    test_paths = [image.path for image in test_images]
    validation_paths = [image.path for image in validation_images]
    if fine_tuned:  # the cached bottlenecks are the original backbone's
        test_probabilities = fine_tuned.probabilities(test_paths)
        validation_probabilities = fine_tuned.validation_probabilities  # computed when its epoch was kept
    else:
        test_probabilities = head.probabilities(test_x, mirrored_test_x)
        validation_probabilities = head.probabilities(validation_x, mirrored_validation_x)
    test = Evaluation(dataset.labels, test_paths, test_y, test_probabilities, [])
    validation = Evaluation(dataset.labels, validation_paths, validation_y, validation_probabilities, [])

    events.on_stage("Exporting the model")
    classifier = Classifier(module, head, dataset.labels, options.final_tensor_name, options.tta)
    write_labels(dataset.labels, Path(options.output_labels))
    export_saved_model(classifier, Path(options.saved_model_dir))
    graph_def = frozen_graph(classifier)
    export_frozen_graph(graph_def, Path(options.output_graph))
    summaries.write_graph(graph_def)
    summaries.close()
    tflite_accuracy = None
    if options.tflite:
        events.on_stage(f"Converting to TensorFlow Lite (quantization: {options.quantize})")
        calibration = [load_image(image.path, module.image_size) for image in train_images[:CALIBRATION_IMAGES]]
        export_tflite(classifier, Path(options.tflite), options.quantize, calibration)
        tflite_model = load_exported_model(Path(options.tflite), Path(options.output_labels))
        tflite_probabilities = classify(tflite_model, [image.path for image in test_images]).probabilities
        tflite_accuracy = float(np.mean(tflite_probabilities.argmax(axis=1) == test_y))
    seconds = {
        "bottlenecks": training_start - bottleneck_start,
        "training": training_end - training_start,
        "total": time.perf_counter() - started,
    }
    if fine_tuned:
        seconds["fine_tuning"] = fine_tune_end - training_end
    run_info = _run_info(options, dataset, module, bottlenecks, validation, seconds)
    if fine_tuned:
        run_info["image_size"] = list(fine_tuned.module.image_size)
        run_info["fine_tune"] = {
            **asdict(options.fine_tune),
            "image_size": fine_tuned.module.image_size[0],
            "best_epoch": fine_tuned.best_epoch,
            "epochs_run": [asdict(epoch) for epoch in fine_tuned.epochs],
        }
    if options.tflite:
        run_info["tflite"] = {
            "path": str(options.tflite),
            "quantize": options.quantize,
            "bytes": Path(options.tflite).stat().st_size,
            "test_accuracy": tflite_accuracy,
        }
    gate = {
        **options.gate.as_dict(),
        "failures": gate_failures(test.accuracy, test.recall_by_class(), options.gate),
    }
    report = write_report(Path(options.report_dir), test, run_info, gate)
    return RunResult(dataset, module, bottlenecks, head, test, validation, report, tflite_accuracy, fine_tuned)


def _mirrored_bottlenecks(
    options: RunOptions, module: ImageModule, bottlenecks: Bottlenecks, events: RunEvents
) -> Bottlenecks | None:
    """Bottlenecks of the readable images mirrored left-right, in their own cache beside the plain ones."""
    if not options.needs_mirrored:
        return None
    events.on_stage("Bottlenecks of the mirrored images (for --tta and --mirror-training)")
    cache = BottleneckCache(Path(options.bottleneck_dir), module.cache_key + "-mirrored")
    mirrored = compute_bottlenecks(bottlenecks.images, module, cache, events.on_bottleneck_progress, mirrored=True)
    if mirrored.images != bottlenecks.images:
        unreadable = ", ".join(str(path) for path, _ in mirrored.skipped)
        raise RetrainError(f"images changed while the run read them: {unreadable}")
    return mirrored


def _run_info(
    options: RunOptions,
    dataset: Dataset,
    module: ImageModule,
    bottlenecks: Bottlenecks,
    validation: Evaluation,
    seconds: dict[str, float],
) -> dict:
    """What produced the numbers, so that a report says how to reproduce it."""
    return {
        "validation_accuracy": validation.accuracy,
        "validation_images": len(validation.truths),
        "module": options.tfhub_module,
        "image_size": list(module.image_size),
        "steps": options.training.how_many_training_steps,
        "learning_rate": options.training.learning_rate,
        "learning_rate_schedule": options.training.learning_rate_schedule,
        "mirror_training": options.mirror_training and not options.distortions.enabled,
        "tta": options.tta,
        "train_batch_size": options.training.train_batch_size,
        "seed": options.training.random_seed,
        "distortions": asdict(options.distortions),
        "dataset": str(dataset.root),
        "dataset_fingerprint": fingerprint(dataset, bottlenecks.images, bottlenecks.content_keys),
        "images": {
            split: sum(1 for image in bottlenecks.images if image.split == split)
            for split in ("training", "validation", "testing")
        }
        | {"skipped": len(bottlenecks.skipped)},
        "durations_seconds": seconds,
        "tool_version": __version__,
        "tensorflow_version": tf.__version__,
    }


def _check_outputs(options: RunOptions) -> None:
    if options.fine_tune and fine_tunable_backbone(options.tfhub_module) is None:
        raise RetrainError(
            f"--fine-tune trains the bundled backbones only ({', '.join(BUNDLED_BACKBONES)}), "
            f"not {options.tfhub_module}"
        )
    check_writable(options.output_labels, "labels file", folder=False)
    check_writable(options.saved_model_dir, "SavedModel folder", folder=True)
    check_writable(options.output_graph, "frozen graph", folder=False)
    check_writable(options.bottleneck_dir, "bottleneck cache", folder=True)
    check_writable(options.summaries_dir, "summaries folder", folder=True)
    if options.tflite:
        check_writable(options.tflite, "TensorFlow Lite file", folder=False)
    check_writable(options.report_dir, "report folder", folder=True)
    if options.intermediate_store_frequency > 0:
        check_writable(options.intermediate_output_graphs_dir, "intermediate graphs folder", folder=True)
