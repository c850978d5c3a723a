"""The one judgement of a run, whatever produced it (training or ``evaluate``): compare with the baseline, apply the
gate, and score the test predictions into a ``RunReport``."""

from __future__ import annotations

from retrain.core.gate import GateScores, judge
from retrain.core.model_diff import run_diff
from retrain.core.results import Evaluation
from retrain.core.run_json import BaselineRun
from retrain.core.run_report import RunFacts, RunReport, accuracy_interval, class_scores, top5_accuracy
from retrain.core.settings import GateSettings


def assess(
    evaluation: Evaluation, facts: RunFacts, gate: GateSettings, baseline: BaselineRun | None, **extra: object
) -> RunReport:
    """``extra`` are the RunReport's other fields a run knows (durations, its TensorFlow Lite result)."""
    diff = run_diff(baseline, evaluation, facts, gate.min_class_support) if baseline is not None else None
    per_class, interval = class_scores(evaluation), accuracy_interval(evaluation)
    scores = GateScores(evaluation.accuracy, len(evaluation.truths), interval, per_class)
    return RunReport(
        test_accuracy=evaluation.accuracy,
        test_images=len(evaluation.truths),
        per_class=per_class,
        facts=facts,
        gate=judge(scores, evaluation.recall_by_class(), gate, diff),
        top5_accuracy=top5_accuracy(evaluation),
        diff=diff,
        labels=tuple(evaluation.labels),
        accuracy_interval=interval,
        **extra,
    )
