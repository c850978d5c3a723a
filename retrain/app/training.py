"""The training and evaluation jobs (``retrain-ci train``/``demo``/``evaluate``, the pytest plugin's accuracy item):
the gate's settings and the baseline run resolved once, then the engine, which returns the typed report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.core.hooks import Hooks
from retrain.core.run_json import BaselineRun, load_baseline_run
from retrain.core.settings import GateSettings, RunSettings
from retrain.core.settings_file import resolve_settings

if TYPE_CHECKING:
    from retrain.reports import AuditLinks


def read_baseline(path: Path | None) -> BaselineRun | None:
    """The --baseline run, read and checked before any work (a bad one is an InputError, and nothing is written)."""
    return load_baseline_run(path) if path else None


def gate_settings(settings_path: Path | None, baseline: BaselineRun | None, **options: float | None) -> GateSettings:
    """The gate (file < environment < options), held to the baseline run's accuracy when there is one."""
    from datacheck.settings import AuditSettings

    gate = resolve_settings(GateSettings, settings_path, options, shared_with=(AuditSettings,))
    return replace(gate, baseline_accuracy=baseline.accuracy if baseline else None)


def train_job(settings: RunSettings, hooks: Hooks = Hooks(), audit: AuditLinks | None = None):
    """Train, export and report (``retrain.training.run.RunResult``; its ``run`` is the typed report), with the
    ``audit`` of the dataset in the report when given."""
    from retrain.training.run import train

    return train(settings, hooks, audit)


def evaluate_job(
    model_path: Path,
    image_dir: Path,
    *,
    gate: GateSettings,
    input_layer: str,
    output_layer: str,
    labels: Path | None = None,
    report_dir: Path | None = None,
    baseline: BaselineRun | None = None,
    hooks: Hooks = Hooks(),
):
    """Score an exported model on a labeled folder (``retrain.training.evaluation.ModelEvaluation``)."""
    from retrain.training.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from retrain.training.evaluation import evaluate_model
    from retrain.training.inference import load_exported_model

    exported = load_exported_model(model_path, labels, input_layer, output_layer)
    return evaluate_model(exported, image_dir, gate=gate, report_dir=report_dir, baseline=baseline, hooks=hooks)
