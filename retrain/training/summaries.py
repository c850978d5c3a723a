"""TensorBoard summaries of a run, laid out as the tutorial's: ``train/`` and ``validation/`` under one folder.

Written with TensorBoard's own protos and record format, without TensorFlow: a run whose bottlenecks are cached and
that exports no TensorFlow format never imports it (5 s of a pull request's ``train``), and ``tf.summary`` took about
4 ms a scalar."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.results import EpochResult, EvalStep

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


class SerializableGraph(Protocol):
    """A GraphDef (TensorFlow's proto), as the frozen-graph export makes it."""

    def SerializeToString(self) -> bytes: ...  # noqa: N802 (the protobuf method's name)


class EventFile:
    """One TensorBoard event file: records of ``Event`` protos, the first naming the format's version."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._file: BinaryIO = open(folder / name, "wb")  # noqa: SIM115 (closed by close())
        self._records = RecordWriter(self._file)
        self.add(Event(file_version="brain.Event:2"))

    def add(self, event: Event) -> None:
        event.wall_time = event.wall_time or time.time()
        self._records.write(event.SerializeToString())

    def summary(self, step: int, *values: Summary) -> None:
        self.add(Event(step=step, summary=Summary(value=[value for summary in values for value in summary.value])))

    def close(self) -> None:
        self._file.close()


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
            self.train = EventFile(self.directory / "train")
            self.validation = EventFile(self.directory / "validation")

    @contextmanager
    def _write_errors(self) -> Iterator[None]:
        """A log that cannot be written (a full disk) is one line, not a traceback."""
        try:
            yield
        except OSError as error:
            raise InputError(f"cannot write the TensorBoard logs {self.directory} ({error.strerror})") from None

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
        train = [scalar_pb("accuracy", step.train_accuracy), scalar_pb("cross_entropy", step.cross_entropy)]
        if step.step % self.histogram_steps == 0 or not self._histograms_written:
            train += [
                histogram_pb("final_layer/weights", np.asarray(step.layer.weights)),
                histogram_pb("final_layer/biases", np.asarray(step.layer.biases)),
            ]
            self._histograms_written = True
        with self._write_errors():
            self.train.summary(step.step, *train)
            self.validation.summary(
                step.step,
                scalar_pb("accuracy", step.validation_accuracy),
                scalar_pb("cross_entropy", step.validation_cross_entropy),
            )

    def write_fine_tune_epoch(self, epoch: EpochResult) -> None:
        """Per-epoch curves of ``--fine-tune`` (epoch 0: the new layer alone), beside the step curves."""
        with self._write_errors():
            if epoch.epoch > 0:
                self.train.summary(
                    epoch.epoch,
                    scalar_pb("fine_tune/accuracy", epoch.train_accuracy),
                    scalar_pb("fine_tune/cross_entropy", epoch.train_cross_entropy),
                )
            self.validation.summary(
                epoch.epoch,
                scalar_pb("fine_tune/accuracy", epoch.validation_accuracy),
                scalar_pb("fine_tune/cross_entropy", epoch.validation_cross_entropy),
            )

    def write_graph(self, graph_def: SerializableGraph) -> None:
        with self._write_errors():
            self.train.add(Event(graph_def=graph_def.SerializeToString()))

    def close(self) -> None:
        with self._write_errors():
            self.train.close()
            self.validation.close()
