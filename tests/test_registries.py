"""Every registered export format and executor keeps one contract, the way scikit-learn's common tests run over
every estimator: a new format or executor is tested by registering it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from retrain.cli.common import Executor as ExecutorChoice
from retrain.core import settings
from retrain.core.results import SoftmaxHead
from retrain.core.settings import ExecutionSettings, ExportSettings, OutputPaths, RunSettings
from retrain.training.classifier import Classifier
from retrain.training.executors import EXECUTORS, Executor, executor_for
from retrain.training.export import LoadOptions, ModelToExport
from retrain.training.exporters import EXPORTERS, Exporter, exporter_for, exporters_asked
from retrain.training.inference import load_exported_model
from retrain.training.modules import ImageModule

LABELS = ("daisy", "roses", "tulips")
SIZE = (32, 24)


class TinyBackbone(tf.Module):
    """Mean colour times a fixed matrix: a backbone every format converts in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = tf.Variable(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))

    @tf.function
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.projection)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    rng = np.random.default_rng(1)
    head = SoftmaxHead(rng.normal(0, 1, (4, 3)).astype(np.float32), rng.normal(0, 1, 3).astype(np.float32))
    module = ImageModule("tiny", SIZE, 4, "tiny-for-test", TinyBackbone())
    return Classifier(module, head, LABELS, ExportSettings().final_tensor_name)


@pytest.fixture(scope="module")
def written(classifier: Classifier, tmp_path_factory: pytest.TempPathFactory) -> dict[Exporter, Path]:
    """Every format, written where a run that asks for all of them writes it."""
    root = tmp_path_factory.mktemp("exports")
    run = RunSettings(root, export=ExportSettings(tflite=root / "model.tflite"), outputs=OutputPaths.under(root))
    asked = exporters_asked(run)
    assert [exporter for exporter, _ in asked] == list(EXPORTERS.values())
    model = ModelToExport(classifier)
    for exporter, path in asked:
        exporter.write(model, path)
    return dict(asked)


@pytest.mark.parametrize("name", EXPORTERS)
def test_every_format_reads_back_its_model_and_labels_and_knows_its_own_path(
    name: str, written: dict[Exporter, Path], classifier: Classifier
) -> None:
    exporter = EXPORTERS[name]
    assert isinstance(exporter, Exporter)
    path = written[exporter]
    assert [other for other in EXPORTERS.values() if other.recognises(path)] == [exporter]
    assert exporter_for(path) is exporter
    assert exporter.labels(path) == LABELS
    model, classes = exporter.load(path, LoadOptions())
    assert (model.image_size, classes) == (SIZE, len(LABELS))
    images = np.random.default_rng(2).uniform(0, 1, (5, *SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(images), classifier.__call__(images).numpy(), atol=1e-5)
    assert load_exported_model(path).labels == LABELS  # through the registry, with no labels file beside it


def test_a_format_not_asked_for_is_not_written(tmp_path: Path) -> None:
    run = RunSettings(tmp_path, outputs=OutputPaths.under(tmp_path))  # no --tflite
    assert [exporter for exporter, _ in exporters_asked(run)] == [EXPORTERS["saved_model"], EXPORTERS["frozen_graph"]]


def test_every_executor_is_chosen_by_the_name_the_settings_and_the_command_line_accept() -> None:
    assert tuple(EXECUTORS) == settings.EXECUTORS
    assert [choice.value for choice in ExecutorChoice] == list(EXECUTORS)
    for name in EXECUTORS:
        assert isinstance(executor_for(ExecutionSettings(name)), Executor)
