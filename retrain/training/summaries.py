"""TensorBoard summaries of a run, laid out as the tutorial's: ``train/`` and ``validation/`` under one folder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import tensorflow as tf

from retrain.core.hooks import Hooks
from retrain.core.results import EpochResult, EvalStep


class TrainingSummaries:
    """Scalars ``accuracy`` and ``cross_entropy`` for both splits at each evaluation, and the new layer's histograms."""

    def __init__(self, directory: Path) -> None:
        # Earlier runs' event files would interleave with this run's curves, so each run starts its folders afresh.
        for split in ("train", "validation"):
            shutil.rmtree(Path(directory) / split, ignore_errors=True)
        self.train = tf.summary.create_file_writer(str(Path(directory) / "train"))
        self.validation = tf.summary.create_file_writer(str(Path(directory) / "validation"))

    def recording(self, hooks: Hooks) -> Hooks:
        """``hooks`` that also write each evaluation and each fine-tuning epoch here."""

        def on_eval(step: EvalStep) -> None:
            self.write_eval(step)
            hooks.on_eval(step)

        def on_epoch(epoch: EpochResult) -> None:
            self.write_fine_tune_epoch(epoch)
            hooks.on_epoch(epoch)

        return dataclasses.replace(hooks, on_eval=on_eval, on_epoch=on_epoch)

    def write_eval(self, step: EvalStep) -> None:
        with self.train.as_default(step=step.step):
            tf.summary.scalar("accuracy", step.train_accuracy)
            tf.summary.scalar("cross_entropy", step.cross_entropy)
            tf.summary.histogram("final_layer/weights", step.layer.weights)
            tf.summary.histogram("final_layer/biases", step.layer.biases)
        with self.validation.as_default(step=step.step):
            tf.summary.scalar("accuracy", step.validation_accuracy)
            tf.summary.scalar("cross_entropy", step.validation_cross_entropy)

    def write_fine_tune_epoch(self, epoch: EpochResult) -> None:
        """Per-epoch curves of ``--fine-tune`` (epoch 0: the new layer alone), beside the step curves."""
        if epoch.epoch > 0:
            with self.train.as_default(step=epoch.epoch):
                tf.summary.scalar("fine_tune/accuracy", epoch.train_accuracy)
                tf.summary.scalar("fine_tune/cross_entropy", epoch.train_cross_entropy)
        with self.validation.as_default(step=epoch.epoch):
            tf.summary.scalar("fine_tune/accuracy", epoch.validation_accuracy)
            tf.summary.scalar("fine_tune/cross_entropy", epoch.validation_cross_entropy)

    def write_graph(self, graph_def: tf.compat.v1.GraphDef) -> None:
        with self.train.as_default():
            tf.summary.graph(graph_def)

    def close(self) -> None:
        self.train.close()
        self.validation.close()
