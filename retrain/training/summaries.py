"""TensorBoard summaries of a run, laid out as the tutorial's: ``train/`` and ``validation/`` under one folder."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tensorflow as tf

from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.results import EpochResult, EvalStep
from retrain.training.export import failed_write_reason

# The run's own log folders under --summaries-dir (the tutorial's layout); anything else there is left alone.
LOG_FOLDERS = ("train", "validation")
# Histograms of the new layer per run: each costs about 15 ms, so 400 of them (one per evaluation of the default run)
# took 6 s, most of a warm run's training; 20 show as well how the weights move.
HISTOGRAMS = 20


def refuse_foreign_logs(directory: Path) -> None:
    """Each run starts its log folders afresh, so they must hold TensorBoard event files only, never a user's files."""
    for split in LOG_FOLDERS:
        folder = directory / split
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise InputError(f"cannot write the TensorBoard logs {printable(folder)}: it is not a folder of logs")
        if not folder.is_dir():
            continue
        foreign = [
            path for path in folder.rglob("*") if path.is_symlink() or (path.is_file() and not _is_event_file(path))
        ]
        if foreign:
            raise InputError(
                f"cannot write the TensorBoard logs into {printable(folder)}: it holds "
                f"{printable(foreign[0].relative_to(folder))}, which is not a TensorBoard log; name another "
                "--summaries-dir"
            )


def _is_event_file(path: Path) -> bool:
    return path.name.startswith("events.out.tfevents.")


class TrainingSummaries:
    """Scalars ``accuracy`` and ``cross_entropy`` for both splits at each evaluation, and the new layer's histograms
    at the first evaluation and then every ``histogram_steps`` steps."""

    def __init__(self, directory: Path, histogram_steps: int = 1) -> None:
        # Earlier runs' event files would interleave with this run's curves, so each run starts its folders afresh.
        self.directory = Path(directory)
        self.histogram_steps = max(1, histogram_steps)
        self._histograms_written = False
        refuse_foreign_logs(self.directory)
        for split in LOG_FOLDERS:
            shutil.rmtree(self.directory / split, ignore_errors=True)
        with self._write_errors():
            self.train = tf.summary.create_file_writer(str(self.directory / "train"))
            self.validation = tf.summary.create_file_writer(str(self.directory / "validation"))

    @contextmanager
    def _write_errors(self) -> Iterator[None]:
        """A log that cannot be written (a full disk) is one line, not TensorFlow's traceback."""
        try:
            yield
        except tf.errors.OpError as error:
            reason = failed_write_reason(error)
            raise InputError(f"cannot write the TensorBoard logs {self.directory} ({reason})") from None

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
        with self._write_errors(), self.train.as_default(step=step.step):
            tf.summary.scalar("accuracy", step.train_accuracy)
            tf.summary.scalar("cross_entropy", step.cross_entropy)
            if step.step % self.histogram_steps == 0 or not self._histograms_written:
                tf.summary.histogram("final_layer/weights", step.layer.weights)
                tf.summary.histogram("final_layer/biases", step.layer.biases)
                self._histograms_written = True
        with self._write_errors(), self.validation.as_default(step=step.step):
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
        with self._write_errors(), self.train.as_default():
            tf.summary.graph(graph_def)

    def close(self) -> None:
        with self._write_errors():
            self.train.close()
            self.validation.close()
