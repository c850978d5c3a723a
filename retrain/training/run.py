"""The retraining flow, end to end: image folder -> bottlenecks (cached) -> new layer -> test accuracy -> exports.

``train`` is a sequence of stages; each takes values and returns values, so a reader can follow the data down the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, cached_property
from importlib.metadata import version
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from retrain import __version__
from retrain.core.assessment import assess
from retrain.core.bottleneck_cache import BottleneckCache, Bottlenecks
from retrain.core.dataset import SPLITS, Dataset, LabeledImage, Splits, dataset_fingerprint, list_dataset
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.images import is_lfs_pointer, load_image
from retrain.core.outputs import OutputSet, check_replaceable, check_writable, staged_output
from retrain.core.results import EvalStep, Evaluation, SoftmaxHead, TrainingStep
from retrain.core.run_report import Durations, FineTuneFacts, RunFacts, RunReport, TfliteResult
from retrain.core.settings import RunSettings
from retrain.reports import AuditLinks, Report, with_audit, write_report
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.executors import executor_for
from retrain.training.export import ModelToExport, write_labels
from retrain.training.exporters import EXPORTERS, exporters_asked
from retrain.training.head import LabeledVectors, TableRows, TrainingExamples, train_head
from retrain.training.inference import classify, load_exported_model
from retrain.training.modules.bundled import BUNDLED_BACKBONES, ConvertedBackbone, converted_backbone
from retrain.training.summaries import HISTOGRAMS, TrainingSummaries, refuse_foreign_logs

if TYPE_CHECKING:  # TensorFlow loads only when the run needs it (``_module``)
    from retrain.training.classifier import Classifier
    from retrain.training.fine_tune import FineTuned
    from retrain.training.modules import ImageModule

# int8 quantization is calibrated on this many training images.
CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class SplitData:
    """One split's readable images with their label indices and bottlenecks: rows ``table_rows`` of the run's table
    (and of the mirrored images' table, when computed), read in place. Copying the training split took seconds at
    100,000 photos (fresh memory costs that much here), so only the small splits are copied, when scored."""

    images: list[LabeledImage]
    labels: np.ndarray
    table_rows: np.ndarray
    table: np.ndarray
    mirrored_table: np.ndarray | None

    @property
    def paths(self) -> list[Path]:
        return [image.path for image in self.images]

    @cached_property  # validation is scored twice (during training and at the end)
    def vectors(self) -> np.ndarray:
        return self.table[self.table_rows]

    @cached_property
    def mirrored(self) -> np.ndarray | None:
        return None if self.mirrored_table is None else self.mirrored_table[self.table_rows]

    def rows(self, rows: np.ndarray) -> SplitData:
        images = [self.images[i] for i in rows]
        return SplitData(images, self.labels[rows], self.table_rows[rows], self.table, self.mirrored_table)


@dataclass(frozen=True)
class RunResult:
    """What a training run produced: its typed report (``report.run``), and the parts a caller may look into."""

    dataset: Dataset
    module: ImageModule | ConvertedBackbone
    bottlenecks: Bottlenecks
    head: SoftmaxHead
    test: Evaluation
    validation: Evaluation
    report: Report
    fine_tuned: FineTuned | None = None

    @property
    def run(self) -> RunReport:
        return self.report.run


def train(settings: RunSettings, hooks: Hooks = Hooks(), audit: AuditLinks | None = None) -> RunResult:
    """Run the tutorial's flow and write every output as one set, the report with the dataset's ``audit`` when given;
    raise InputError on bad input."""
    _check_outputs(settings)
    dataset = list_dataset(Path(settings.image_dir), settings.split)  # bad input stops before any output is touched
    _refuse_lfs_pointers(dataset)
    steps = settings.training.steps_for(len(dataset.split("training")))  # from here on, a number
    settings = replace(settings, training=replace(settings.training, how_many_training_steps=steps))
    executor_for(settings.execution).connect()  # e.g. Ray missing or unreachable stops the run before any output
    with OutputSet(Path(settings.outputs.output_labels)) as outputs:
        result = _train(settings, dataset, hooks, outputs, audit)
        outputs.commit()
    return replace(result, report=replace(result.report, directory=Path(settings.outputs.report_dir)))


def _train(
    settings: RunSettings, dataset: Dataset, hooks: Hooks, outputs: OutputSet, audit: AuditLinks | None
) -> RunResult:
    """Every stage, with each output staged in ``outputs`` (nothing replaces the previous run's until the commit)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    hooks.on_stage(f"Loading module {settings.module.tfhub_module}")
    module = _module(settings)
    bottlenecks, splits = _bottlenecks(settings, dataset, module, hooks)
    seconds["bottlenecks"] = time.perf_counter() - started
    steps = settings.training.how_many_training_steps
    summaries = TrainingSummaries(Path(settings.outputs.summaries_dir), histogram_steps=steps // HISTOGRAMS)
    recorded = summaries.recording(hooks)
    head, curve = _train_layer(settings, dataset.labels, module, splits, recorded)
    seconds["training"] = time.perf_counter() - started - seconds["bottlenecks"]
    tuned = None
    if settings.fine_tune:
        tuned = _fine_tune(settings, module, head, splits, recorded)
        module, head = tuned.module, tuned.head
        seconds["fine_tuning"] = time.perf_counter() - started - seconds["bottlenecks"] - seconds["training"]
    splits = replace(splits, testing=_test_sample(settings, splits.testing))
    test, validation = _evaluate(settings, dataset.labels, splits, head, tuned)
    key_of = dict(zip((image.path for image in bottlenecks.images), bottlenecks.content_keys, strict=True))
    test = replace(test, content_keys=[key_of[path] for path in test.paths])  # matches photos across runs

    classifier = cache(lambda: _classifier(settings, module, head, dataset.labels))
    _export(settings, dataset.labels, classifier, summaries, hooks, outputs)
    tflite = _export_tflite(settings, classifier, splits, hooks, outputs)
    seconds["total"] = time.perf_counter() - started
    run = assess(
        test,
        _run_facts(settings, dataset, module, bottlenecks, validation, tuned, curve),
        settings.gate,
        settings.baseline,
        durations=Durations(**seconds),
        tflite=tflite,
    )
    if audit is not None:
        run = with_audit(run, audit)
    with outputs.staging(Path(settings.outputs.report_dir), "report folder") as staging:
        report = write_report(staging, test, run, audit.findings if audit is not None else None)
    return RunResult(dataset, module, bottlenecks, head, test, validation, report, tuned)


def _needs_tensorflow(settings: RunSettings) -> bool:
    """Whether the run builds or runs a TensorFlow model: to export one, to fine-tune, to distort images, or to
    compute bottlenecks on a cluster; a bundled backbone's cached TFLite form does the rest."""
    return bool(
        exporters_asked(settings)
        or settings.fine_tune
        or settings.distortions.enabled
        or settings.export.intermediate_store_frequency
        or settings.execution.executor != "local"
    )


def _module(settings: RunSettings) -> ImageModule | ConvertedBackbone:
    """The module as far as the run needs it: without TensorFlow when it can (its import takes 5 s of a pull
    request's run), else loaded with TensorFlow (which also converts and caches a bundled backbone's TFLite form)."""
    if not _needs_tensorflow(settings):
        converted = converted_backbone(settings.module.tfhub_module)
        if converted is not None:
            return converted
    from retrain.training.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from retrain.training.modules import load_image_module

    # Same seed, same digits: TensorFlow may otherwise pick kernels whose float sums vary between runs, and its random
    # ops (fine-tuning's augmentation) need a seed once determinism is on.
    tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(settings.training.random_seed)
    return load_image_module(settings.module.tfhub_module, settings.module.image_size)


def _classifier(
    settings: RunSettings, module: ImageModule | ConvertedBackbone, head: SoftmaxHead, labels: tuple[str, ...]
) -> Classifier:
    from retrain.training.classifier import Classifier

    return Classifier(module, head, labels, settings.export.final_tensor_name, settings.tta)


def _refuse_lfs_pointers(dataset: Dataset) -> None:
    """A checkout without its LFS content holds pointer files where the photos should be: say that, not "corrupt"."""
    pointers = [image.path for image in dataset.images if is_lfs_pointer(image.path)]
    if pointers:
        raise InputError(
            f"{len(pointers)} of {len(dataset.images)} images are Git LFS pointers, not images (e.g. {pointers[0]}): "
            "the dataset was checked out without its LFS content; fetch it (`git lfs pull`, or `lfs: true` on "
            "actions/checkout)"
        )


def _bottlenecks(
    settings: RunSettings, dataset: Dataset, module: ImageModule | ConvertedBackbone, hooks: Hooks
) -> tuple[Bottlenecks, Splits[SplitData]]:
    """Every readable image's bottleneck (and its mirror image's, when needed), grouped by split."""
    cache = BottleneckCache(Path(settings.module.bottleneck_dir), module.cache_key)
    execution = settings.execution
    runner = module.runner() if isinstance(module, ConvertedBackbone) else None  # else the fastest for the module
    bottlenecks = compute_bottlenecks(dataset.images, module, cache, hooks=hooks, runner=runner, execution=execution)
    mirrored = None
    if settings.needs_mirrored:
        hooks.on_stage("Bottlenecks of the mirrored images (for --tta and --mirror-training)")
        mirrored_cache = BottleneckCache(Path(settings.module.bottleneck_dir), module.cache_key + "-mirrored")
        mirrored = compute_bottlenecks(
            bottlenecks.images, module, mirrored_cache, hooks=hooks, runner=runner, mirrored=True, execution=execution
        )
        if mirrored.images != bottlenecks.images:
            unreadable = ", ".join(str(path) for path, _ in mirrored.skipped)
            raise InputError(f"images changed while the run read them: {unreadable}")
        bottlenecks.warnings.extend(mirrored.warnings)

    def split_data(name: str) -> SplitData:
        rows = np.flatnonzero([image.split == name for image in bottlenecks.images])
        if len(rows) == 0:
            raise InputError(f"no readable image is left in the {name} split; see the skipped files above")
        images = [bottlenecks.images[row] for row in rows]
        labels = np.array([image.label_index for image in images], dtype=np.int64)
        return SplitData(images, labels, rows, bottlenecks.vectors, mirrored.vectors if mirrored else None)

    return bottlenecks, Splits.of(split_data)


def _training_examples(settings: RunSettings, module: ImageModule, training: SplitData, hooks: Hooks):
    """Cached bottlenecks (with their mirror images' under --mirror-training), or fresh distorted ones."""
    if settings.distortions.enabled:
        from retrain.training.distortions import DistortedBottlenecks

        hooks.on_stage(
            "Distortions on: every training step decodes, distorts and runs its batch through the module "
            "(the bottleneck cache serves only validation and test), so training is much slower"
        )
        seed = settings.training.random_seed
        return DistortedBottlenecks(
            training.paths, training.labels, module, distortions=settings.distortions, seed=seed
        )
    if settings.mirrors_training:
        labels = np.concatenate([training.labels, training.labels])
        return TableRows(training.table, training.table_rows, labels, training.mirrored_table)
    return TableRows(training.table, training.table_rows, training.labels)


def _train_layer(
    settings: RunSettings, labels: tuple[str, ...], module: ImageModule, splits: Splits[SplitData], hooks: Hooks
) -> tuple[SoftmaxHead, tuple[TrainingStep, ...]]:
    """The new layer with its training curve (each evaluation's scores), and the intermediate graphs asked for
    (``--intermediate-store-frequency``)."""
    snapshot_every = settings.export.intermediate_store_frequency
    last = settings.training.how_many_training_steps
    curve: list[TrainingStep] = []

    def on_eval(step: EvalStep) -> None:
        curve.append(step.scores)
        if snapshot_every and step.step % snapshot_every == 0 and step.step < last:
            classifier = _classifier(settings, module, step.layer, labels)
            folder = Path(settings.outputs.intermediate_output_graphs_dir)
            with staged_output(folder / f"intermediate_{step.step}.pb", "intermediate graph") as staging:
                EXPORTERS["frozen_graph"].write(ModelToExport(classifier), staging)
        hooks.on_eval(step)

    validation = splits.validation
    examples: TrainingExamples = _training_examples(settings, module, splits.training, hooks)
    head = train_head(
        examples,
        LabeledVectors(validation.vectors, validation.labels),
        class_count=len(labels),
        settings=settings.training,
        hooks=Hooks(on_progress=hooks.on_progress, on_eval=on_eval),
        snapshot_every=snapshot_every,
    )
    return head, tuple(curve)


def _fine_tune(
    settings: RunSettings, module: ImageModule, head: SoftmaxHead, splits: Splits[SplitData], hooks: Hooks
) -> FineTuned:
    from retrain.training.fine_tune import fine_tune
    from retrain.training.modules.efficientnet_lite import build_network

    backbone = BUNDLED_BACKBONES[settings.module.tfhub_module]
    size = settings.fine_tune.input_size(backbone.image_size)
    hooks.on_stage(
        f"Fine-tuning the top {settings.fine_tune.blocks} blocks of {settings.module.tfhub_module} with the new "
        f"layer for {settings.fine_tune.epochs} epochs on augmented {size}x{size} training images"
    )
    return fine_tune(
        module,
        build_network(backbone, size),
        head,
        training=splits.training.images,
        validation=splits.validation.images,
        settings=settings.fine_tune,
        seed=settings.training.random_seed,
        tta=settings.tta,
        hooks=hooks,
    )


def _test_sample(settings: RunSettings, testing: SplitData) -> SplitData:
    """The whole test split, or ``--test-batch-size`` rows of it drawn with replacement (the tutorial's)."""
    if settings.test_batch_size == -1:
        return testing
    rng = np.random.default_rng(settings.training.random_seed)
    return testing.rows(rng.integers(0, len(testing.images), settings.test_batch_size))


def _evaluate(
    settings: RunSettings,
    labels: tuple[str, ...],
    splits: Splits[SplitData],
    head: SoftmaxHead,
    tuned: FineTuned | None,
) -> tuple[Evaluation, Evaluation]:
    """Test and validation predictions, as the exported model makes them (with --tta: image and mirror image)."""
    test, validation = splits.testing, splits.validation
    if tuned:  # the cached bottlenecks are the original backbone's
        test_probabilities = tuned.probabilities(test.paths)
        validation_probabilities = tuned.validation_probabilities  # computed when its epoch was kept
    else:
        test_probabilities = head.probabilities(test.vectors, test.mirrored if settings.tta else None)
        validation_probabilities = head.probabilities(validation.vectors, validation.mirrored if settings.tta else None)
    return (
        Evaluation(labels, test.paths, test.labels, test_probabilities, []),
        Evaluation(labels, validation.paths, validation.labels, validation_probabilities, []),
    )


def _export(
    settings: RunSettings,
    labels: tuple[str, ...],
    classifier: Callable[[], Classifier],
    summaries: TrainingSummaries,
    hooks: Hooks,
    outputs: OutputSet,
) -> None:
    """Labels and every unquantized format asked for (SavedModel, frozen graph), staged in the run's output set; the
    frozen graph also goes to TensorBoard when it is written. ``classifier`` builds the model (and loads TensorFlow)
    only if a format is asked for."""
    hooks.on_stage("Exporting the model")
    with outputs.staging(Path(settings.outputs.output_labels), "labels file") as staging:
        write_labels(labels, staging)
    unquantized = [(exporter, path) for exporter, path in exporters_asked(settings) if not exporter.quantized]
    if unquantized:
        model = ModelToExport(classifier())
        for exporter, path in unquantized:
            with outputs.staging(path, exporter.output_name) as staging:
                exporter.write(model, staging)
        if "graph_def" in vars(model):  # frozen by the frozen-graph format: TensorBoard shows it at no cost
            summaries.write_graph(model.graph_def)
    summaries.close()


def _export_tflite(
    settings: RunSettings,
    classifier: Callable[[], Classifier],
    splits: Splits[SplitData],
    hooks: Hooks,
    outputs: OutputSet,
) -> TfliteResult | None:
    """The quantized format when asked for (TensorFlow Lite, the only one), scored on the test images again:
    quantization costs accuracy."""
    quantized = [(exporter, path) for exporter, path in exporters_asked(settings) if exporter.quantized]
    if not quantized:
        return None
    ((exporter, path),) = quantized  # one, reported as the run's "tflite"
    quantize = settings.export.quantize
    hooks.on_stage(f"Converting to TensorFlow Lite (quantization: {quantize})")
    model = classifier()
    calibration = [load_image(image, model.image_size) for image in splits.training.paths[:CALIBRATION_IMAGES]]
    test = splits.testing
    with outputs.staging(path, exporter.output_name) as staging:
        exporter.write(ModelToExport(model, quantize, calibration), staging)
        probabilities = classify(load_exported_model(staging), test.paths).probabilities
        size_bytes = staging.stat().st_size
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test.labels))
    return TfliteResult(str(settings.export.tflite), quantize, size_bytes, accuracy)


def _run_facts(
    settings: RunSettings,
    dataset: Dataset,
    module: ImageModule | ConvertedBackbone,
    bottlenecks: Bottlenecks,
    validation: Evaluation,
    tuned: FineTuned | None,
    curve: tuple[TrainingStep, ...],
) -> RunFacts:
    """What produced the numbers, so that a report says how to reproduce it."""
    training = settings.training
    return RunFacts(
        dataset=str(dataset.root),
        validation_accuracy=validation.accuracy,
        validation_images=len(validation.truths),
        module=settings.module.tfhub_module,
        image_size=tuple(module.image_size),
        steps=training.how_many_training_steps,
        learning_rate=training.learning_rate,
        learning_rate_schedule=training.learning_rate_schedule,
        mirror_training=settings.mirrors_training,
        tta=settings.tta,
        train_batch_size=training.train_batch_size,
        seed=training.random_seed,
        split=settings.split,
        distortions=settings.distortions,
        dataset_fingerprint=dataset_fingerprint(dataset, bottlenecks.images, bottlenecks.content_keys),
        images=MappingProxyType(
            {split: sum(1 for image in bottlenecks.images if image.split == split) for split in SPLITS}
            | {"skipped": len(bottlenecks.skipped)}
        ),
        tool_version=__version__,
        tensorflow_version=version("tensorflow"),
        fine_tune=None
        if tuned is None
        else FineTuneFacts(settings.fine_tune, tuned.module.image_size[0], tuned.best_epoch, tuple(tuned.epochs)),
        training_curve=curve,
    )


def _check_outputs(settings: RunSettings) -> None:
    """Before any work: fine-tuning needs a bundled backbone, and every output must be writable."""
    spec = settings.module.tfhub_module
    if settings.fine_tune and spec not in BUNDLED_BACKBONES:
        raise InputError(f"--fine-tune trains the bundled backbones only ({', '.join(BUNDLED_BACKBONES)}), not {spec}")
    outputs = settings.outputs
    check_writable(outputs.output_labels, "labels file", folder=False)
    for exporter, path in exporters_asked(settings):
        if exporter.folder:
            check_replaceable(path, exporter.output_name)
        else:
            check_writable(path, exporter.output_name, folder=False)
    check_writable(settings.module.bottleneck_dir, "bottleneck cache", folder=True)
    check_writable(outputs.summaries_dir, "summaries folder", folder=True)
    refuse_foreign_logs(Path(outputs.summaries_dir))
    check_replaceable(outputs.report_dir, "report folder")
    if settings.export.intermediate_store_frequency > 0:
        check_writable(outputs.intermediate_output_graphs_dir, "intermediate graphs folder", folder=True)
