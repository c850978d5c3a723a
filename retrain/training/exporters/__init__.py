"""The export formats, by name: each owns writing, recognising, loading and reading the labels of its models.

A format is one module here and its line in ``EXPORTERS``; ``run`` writes every format a run asks for, in this
order, and ``inference.load_exported_model`` loads a path with the first format that recognises it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from retrain.core.errors import InputError
from retrain.core.settings import RunSettings
from retrain.training.export import ExportedModel, LoadOptions, ModelToExport
from retrain.training.exporters.frozen_graph import FrozenGraphExporter
from retrain.training.exporters.saved_model import SavedModelExporter
from retrain.training.exporters.tflite import TFLiteExporter


@runtime_checkable
class Exporter(Protocol):
    """One export format. ``output_name`` names the output in staging and errors ("SavedModel folder"); ``described``
    names it in "expected a SavedModel folder, ..."; ``folder`` outputs are replaced as a whole; ``quantized`` formats
    apply ``--quantize``, so a run scores them on the test images again."""

    output_name: str
    described: str
    folder: bool
    quantized: bool

    def output(self, settings: RunSettings) -> Path | None:
        """Where this run writes the format; None when the run does not ask for it."""

    def write(self, model: ModelToExport, path: Path) -> None:
        """Write ``model`` to ``path`` (a staging path) with its labels inside; a failed write raises OSError."""

    def recognises(self, path: Path) -> bool:
        """Whether ``path`` (which exists) is in this format, from the path alone."""

    def load(self, path: Path, options: LoadOptions) -> tuple[ExportedModel, int | None]:
        """The model (labels still empty) and how many classes it scores (None if it does not say); InputError when
        ``path`` is not a readable model of the format."""

    def labels(self, path: Path) -> tuple[str, ...] | None:
        """The labels the model carries; None for a model written elsewhere (or by an earlier version)."""


EXPORTERS: dict[str, Exporter] = {
    "saved_model": SavedModelExporter(),
    "frozen_graph": FrozenGraphExporter(),
    "tflite": TFLiteExporter(),
}


def exporters_asked(settings: RunSettings) -> list[tuple[Exporter, Path]]:
    """Each format the run asks for, with where it goes, in ``EXPORTERS`` order."""
    return [(exporter, path) for exporter in EXPORTERS.values() if (path := exporter.output(settings)) is not None]


def exporter_for(path: Path) -> Exporter:
    """The format of the model at ``path``; InputError naming every format when none recognises it."""
    for exporter in EXPORTERS.values():
        if exporter.recognises(path):
            return exporter
    *others, last = (exporter.described for exporter in EXPORTERS.values())
    raise InputError(f"{path}: expected {', '.join(others)} or {last}")
