"""The retraining flow, end to end: image folder -> bottlenecks (cached) -> new layer -> test accuracy -> exports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrain.bottlenecks import BottleneckCache, Bottlenecks, ProgressCallback, compute_bottlenecks
from retrain.dataset import Dataset, list_dataset
from retrain.errors import RetrainError
from retrain.export import check_writable, export_classifier, write_labels
from retrain.modules import ImageModule, load_image_module
from retrain.modules.loading import DEFAULT_MODULE
from retrain.training import EvalStep, SoftmaxHead, TrainingConfig, train_head


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
    saved_model_dir: Path = Path("/tmp/saved_models/1")
    output_labels: Path = Path("/tmp/output_labels.txt")
    final_tensor_name: str = "final_result"


@dataclass(frozen=True)
class RunEvents:
    """What a run reports while it works; the CLI turns these into progress bars and step lines."""

    on_stage: Callable[[str], None] = lambda message: None
    on_bottleneck_progress: ProgressCallback | None = None
    on_eval: Callable[[EvalStep], None] | None = None


@dataclass(frozen=True)
class Misclassified:
    path: Path
    true_label: str
    predicted_label: str
    confidence: float


@dataclass
class RunResult:
    dataset: Dataset
    module: ImageModule
    bottlenecks: Bottlenecks
    head: SoftmaxHead
    test_accuracy: float
    test_count: int
    misclassified: list[Misclassified]
    seconds: dict[str, float]


def train(options: RunOptions, events: RunEvents = RunEvents()) -> RunResult:
    """Run the tutorial's flow and write the labels file and the SavedModel; raise RetrainError on bad input."""
    started = time.perf_counter()
    check_writable(options.output_labels, "labels file", folder=False)
    check_writable(options.saved_model_dir, "SavedModel folder", folder=True)
    check_writable(options.bottleneck_dir, "bottleneck cache", folder=True)
    dataset = list_dataset(Path(options.image_dir), options.testing_percentage, options.validation_percentage)
    events.on_stage(f"Loading module {options.tfhub_module}")
    module = load_image_module(options.tfhub_module, options.image_size)

    bottleneck_start = time.perf_counter()
    cache = BottleneckCache(Path(options.bottleneck_dir), module.cache_key)
    bottlenecks = compute_bottlenecks(dataset.images, module, cache, events.on_bottleneck_progress)
    train_x, train_y, _ = bottlenecks.split("training")
    validation_x, validation_y, _ = bottlenecks.split("validation")
    test_x, test_y, test_images = bottlenecks.split("testing")
    for name, rows in (("training", train_x), ("validation", validation_x), ("testing", test_x)):
        if len(rows) == 0:
            raise RetrainError(f"no readable image is left in the {name} split; see the skipped files above")

    training_start = time.perf_counter()
    head = train_head(
        train_x, train_y, validation_x, validation_y, len(dataset.labels), options.training, events.on_eval
    )
    training_end = time.perf_counter()

    if options.test_batch_size != -1:
        rows = np.random.default_rng(options.training.random_seed).integers(0, len(test_x), options.test_batch_size)
        test_x, test_y, test_images = test_x[rows], test_y[rows], [test_images[i] for i in rows]
    probabilities = head.probabilities(test_x)
    predicted = probabilities.argmax(axis=1)
    misclassified = sorted(
        (
            Misclassified(image.path, dataset.labels[truth], dataset.labels[guess], float(p[guess]))
            for image, truth, guess, p in zip(test_images, test_y, predicted, probabilities, strict=True)
            if truth != guess
        ),
        key=lambda m: -m.confidence,
    )

    events.on_stage("Exporting the model")
    write_labels(dataset.labels, Path(options.output_labels))
    export_classifier(module, head, dataset.labels, Path(options.saved_model_dir), options.final_tensor_name)
    finished = time.perf_counter()
    return RunResult(
        dataset=dataset,
        module=module,
        bottlenecks=bottlenecks,
        head=head,
        test_accuracy=float(np.mean(predicted == test_y)),
        test_count=len(test_y),
        misclassified=misclassified,
        seconds={
            "bottlenecks": training_start - bottleneck_start,
            "training": training_end - training_start,
            "total": finished - started,
        },
    )
