"""Evaluation reports of a run: metrics.json, confusion matrix (CSV + PNG), misclassified.csv, report.html, summary.md.

Everything is derived from one table of predictions (``predictions.csv``) and the run's metrics.json, both kept with
the report, so ``retrain-ci report`` can render the same files again later and every number agrees with every other.
report.html is a Jinja2 template (``retrain/templates/report.html``, autoescaped); this module hands it typed values
and inline SVG charts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup
from sklearn.metrics import confusion_matrix

from retrain.charts import Axis, Panel, Series, chart_layout, confusion_png
from retrain.core.display import markdown_text, printable
from retrain.core.errors import InputError
from retrain.core.gate import interval_text
from retrain.core.model_diff import changed_photos_line, shared_photos_line
from retrain.core.outputs import check_replaceable, staged_output
from retrain.core.predictions import (
    CONTENT_KEY,
    check_predictions,
    predictions_table,
    read_predictions,
    resolved,
    write_csv,
)
from retrain.core.results import Evaluation, TrainingStep
from retrain.core.run_json import read_run_report, run_report_json
from retrain.core.run_report import ClassScores, FineTuneFacts, RelabelledImage, RunReport
from retrain.core.settings import GateSettings
from retrain.core.thumbnails import THUMBNAIL_SIZE, thumbnail_uri

THUMBNAILS_SHOWN = 100


@dataclass(frozen=True)
class Report:
    """A written report: where its files are, the run's typed report, and the confusion matrix."""

    directory: Path
    run: RunReport
    confusion: pd.DataFrame

    def top_confusions(self, count: int = 5) -> list[tuple[str, str, int]]:
        """The most frequent (true, predicted) pairs among wrong predictions."""
        pairs = [
            (true, predicted, int(self.confusion.loc[true, predicted]))
            for true in self.confusion.index
            for predicted in self.confusion.columns
            if true != predicted and self.confusion.loc[true, predicted] > 0
        ]
        return sorted(pairs, key=lambda pair: -pair[2])[:count]


def write_report(
    directory: Path,
    evaluation: Evaluation,
    run: RunReport,
    audit_findings: Mapping[str, tuple[str, ...]] | None = None,
) -> Report:
    """Write every report file into ``directory`` at once (the folder is replaced whole, never half-written);
    ``audit_findings`` (the audit's checks naming each photo, by content key) are shown beside the mistakes."""
    confusion = pd.DataFrame(
        confusion_matrix(evaluation.truths, evaluation.predictions, labels=list(range(len(evaluation.labels)))),
        index=pd.Index(evaluation.labels, name="true"),
        columns=pd.Index(evaluation.labels, name="predicted"),
    )
    report = Report(Path(directory), run, confusion)
    with staged_output(Path(directory), "report folder") as staging:
        staging.mkdir()
        write_csv(predictions_table(evaluation), staging / "predictions.csv", index=False)
        (staging / "metrics.json").write_text(run_report_json(run), encoding="utf-8")
        write_csv(confusion, staging / "confusion_matrix.csv")
        labels = [printable(label) for label in confusion.index]
        png = confusion_png(confusion.to_numpy(), labels, "Confusion matrix (test images)")
        (staging / "confusion_matrix.png").write_bytes(png)
        write_csv(_misclassified_table(evaluation), staging / "misclassified.csv", index=False)
        (staging / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
        (staging / "report.html").write_text(_html(report, evaluation, audit_findings), encoding="utf-8")
    return report


@dataclass(frozen=True)
class AuditLinks:
    """What a run's report takes from the audit of its dataset: the change line against the audit's baseline, and
    the checks naming each photo, by content key (shown beside the relabelled and the misclassified test photos)."""

    change: str
    findings: Mapping[str, tuple[str, ...]]


def with_audit(run: RunReport, audit: AuditLinks) -> RunReport:
    """``run`` led by the audit's change line, its relabelled test photos linked to the findings naming them."""
    run = replace(run, dataset_change=audit.change)
    if run.diff is not None and run.diff.images is not None:
        linked = tuple(
            replace(item, audit_findings=audit.findings.get(item.content_key, ()))
            for item in run.diff.images.relabelled_images
        )
        run = replace(run, diff=replace(run.diff, images=replace(run.diff.images, relabelled_images=linked)))
    return run


def rerender(directory: Path, audit: AuditLinks | None = None) -> Report:
    """Render an earlier run's report again from the predictions and run details it kept, with the ``audit`` of its
    dataset when given (``retrain-ci train --audit`` does the same as it writes the report)."""
    directory = Path(directory)
    if (directory / "report" / "metrics.json").is_file():
        directory = directory / "report"
    if not (directory / "metrics.json").is_file() or not (directory / "predictions.csv").is_file():
        raise InputError(f"{directory} holds no retrain-ci report (metrics.json and predictions.csv)")
    run = read_run_report(directory / "metrics.json")
    try:
        table = read_predictions(directory / "predictions.csv")
    except (OSError, ValueError) as error:
        raise InputError(f"{directory} holds no retrain-ci report (metrics.json and predictions.csv)") from error
    check_replaceable(directory, "report folder")
    labels = run.labels
    check_predictions(directory, table, labels, run.test_images)
    evaluation = Evaluation(
        labels,
        [Path(p) for p in table["path"]],
        np.array([labels.index(label) for label in table["true_label"]], dtype=np.int64),
        table[[f"p:{label}" for label in labels]].to_numpy(),
        [],
        list(table[CONTENT_KEY]) if CONTENT_KEY in table else [],
    )
    if audit is None:
        return write_report(directory, evaluation, run)
    return write_report(directory, evaluation, with_audit(run, audit), audit.findings)


def summary_markdown(report: Report) -> str:
    """A short summary for pull requests and GitHub step summaries: the story first (``story``), then the details."""
    run = report.run
    lines = ["## retrain-ci report", ""]
    for key, text in story(run):
        lines += [f"**{key}:** {markdown_text(text)}.", ""]
    lines += [
        "| class | precision | recall | 95% interval | F1 | images |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, scores in run.per_class.items():
        precision, recall, f1 = score_cells(scores)
        cells = [precision, recall, recall_interval_cell(scores), f1]
        lines.append(f"| {markdown_text(label)} | {' | '.join(cells)} | {scores.support} |")
    relabelled = run.diff.images.relabelled_images if run.diff and run.diff.images else ()
    if relabelled:
        lines += ["", f"Relabelled test photos ({len(relabelled)}), not held against the model:", ""]
        lines += [f"- {markdown_text(_relabelled_text(item))}" for item in relabelled]
    worst = ", ".join(f"{markdown_text(label)} ({recall:.1%} recall)" for label, recall in run.worst_classes())
    lines += ["", f"Worst classes: {worst}."]
    confusions = report.top_confusions()
    if confusions:
        listed = ", ".join(
            f"{markdown_text(true)} → {markdown_text(predicted)} ({count})" for true, predicted, count in confusions
        )
        lines.append(f"Top confusions: {listed}.")
    return "\n".join(lines) + "\n"


def story(run: RunReport) -> list[tuple[str, str]]:
    """What a run says, in the order a reviewer needs it, as (heading, plain text): what changed in the data (the
    audit's change line, then the test photos added, removed and relabelled), what the model did on the photos it had
    already seen, its test accuracy with the interval, then the gate's verdict with the reason and its warnings."""
    told = [("Change", run.dataset_change), ("Test data", changed_photos_line(run.diff))]
    if run.diff is not None:
        images = run.diff.images
        shared = images is not None and images.shared_accuracy_before is not None
        heading = f"The {images.shared} test photos both runs share" if shared else "Against the baseline"
        told.append((heading, shared_photos_line(run.diff)))
    validation = run.facts.validation_accuracy
    told.append(
        (
            "Test accuracy",
            f"{run.test_accuracy:.1%}{_interval_note(run.accuracy_interval)} on {run.test_images} images"
            + (f" (validation {validation:.1%})" if validation is not None else ""),
        )
    )
    told.append(("Gate", run.gate.verdict))
    told += [("Warning", warning) for warning in run.gate.warnings]
    return [(key, text) for key, text in told if text]


def _interval_note(interval: tuple[float, float] | None) -> str:
    return f" (95% interval {interval_text(interval)})" if interval is not None else ""


def recall_interval_cell(scores: ClassScores) -> str:
    """A class's 95% recall interval; "n/a" without test images (or for an older report that has none)."""
    return interval_text(scores.recall_interval) if scores.recall_interval is not None else "n/a"


def _relabelled_text(item: RelabelledImage) -> str:
    flagged = f"; the audit flags it: {', '.join(item.audit_findings)}" if item.audit_findings else ""
    return (
        f"{Path(item.path).name}: {item.label_before} -> {item.label_after}, "
        f"the model says {item.predicted_after} (said {item.predicted_before}){flagged}"
    )


def score_cells(scores: ClassScores) -> list[str]:
    """Precision, recall and F1 as percentages; "n/a" for a class without test images, rather than a false 0%."""
    if not scores.support:
        return ["n/a"] * 3
    return [f"{value:.1%}" for value in (scores.precision, scores.recall, scores.f1)]


def _misclassified_table(evaluation: Evaluation) -> pd.DataFrame:
    wrong = evaluation.misclassified()
    paths = resolved(m.path for m in wrong)
    rows = [(path, m.true_label, m.predicted_label, m.confidence) for path, m in zip(paths, wrong, strict=True)]
    return pd.DataFrame(rows, columns=["path", "true_label", "predicted_label", "confidence"])


def percent(value: float | None) -> str:
    """The one way report.html writes a fraction: a percentage with one decimal ("n/a" when there is none)."""
    return "n/a" if value is None else f"{value:.1%}"


@dataclass(frozen=True)
class Verdict:
    """The banner at the top of report.html: the gate's outcome, why, and the warnings that do not fail it."""

    outcome: str  # "passed", "failed" or "ungated": the banner's colour
    title: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]


def verdict(run: RunReport) -> Verdict:
    """What the banner says: the gate's failures, or the conditions met, or that none was asked for."""
    warnings = run.gate.warnings
    if not run.passed:
        return Verdict("failed", "FAILED", run.gate.failures, warnings)
    asked = _conditions(run.gate.settings)
    if not asked:
        reason = "no gate condition was asked for (--min-accuracy, --min-class-recall, --baseline, --min-test-images)"
        return Verdict("ungated", "NOT GATED", (reason,), warnings)
    return Verdict("passed", "PASSED", (f"every condition asked is met: {', '.join(asked)}",), warnings)


def _conditions(settings: GateSettings) -> list[str]:
    """The gate's conditions as asked, in the page's number format."""
    asked = []
    if settings.min_accuracy is not None:
        asked.append(f"--min-accuracy {percent(settings.min_accuracy)}")
    if settings.min_class_recall is not None:
        asked.append(f"--min-class-recall {percent(settings.min_class_recall)}")
    if settings.baseline_accuracy is not None:
        asked.append(f"--max-regression {percent(settings.max_regression)} against the baseline")
    if settings.max_class_regression is not None:
        asked.append(f"--max-class-regression {percent(settings.max_class_regression)}")
    if settings.min_test_images is not None:
        asked.append(f"--min-test-images {settings.min_test_images}")
    return asked


@dataclass(frozen=True)
class MatrixCell:
    """One cell of a confusion table as drawn: its text and how strongly it is coloured, as a hit or a mistake."""

    text: str
    shade: float  # 0..1: how strongly the cell is coloured
    mistake: bool  # off the diagonal: coloured as an error


@dataclass(frozen=True)
class MatrixRow:
    """One true class's row of a confusion table, with its test images."""

    label: str
    cells: tuple[MatrixCell, ...]
    images: int


def confusion_rows(confusion: pd.DataFrame) -> tuple[list[MatrixRow], list[MatrixRow]]:
    """The confusion matrix twice, as table rows: counts, and each true class's row normalised by its images (so the
    diagonal is the class's recall and each other cell the share of its photos taken for that class)."""
    counts = confusion.to_numpy()
    largest = max(int(counts.max()), 1) if counts.size else 1
    counted, normalised = [], []
    for i, label in enumerate(confusion.index):
        images = int(counts[i].sum())
        counted.append(
            MatrixRow(
                label,
                tuple(MatrixCell(str(int(n)), n / largest, i != j and n > 0) for j, n in enumerate(counts[i])),
                images,
            )
        )
        shares = counts[i] / images if images else [None] * len(counts[i])
        normalised.append(
            MatrixRow(
                label,
                tuple(
                    MatrixCell(percent(share), share or 0.0, i != j and bool(share)) for j, share in enumerate(shares)
                ),
                images,
            )
        )
    return counted, normalised


# The charts' look: two colours a reader tells apart (and in grey), text kept as text (small, searchable, selectable).
TRAIN_COLOUR, VALIDATION_COLOUR = "#8da0cb", "#d95f02"
RIGHT_COLOUR, WRONG_COLOUR = "#1b9e77", "#d7301f"


def _svg(layout: dict) -> Markup:
    """A chart (``retrain.charts.chart_layout``) as inline SVG markup."""
    return Markup(_PAGES.get_template("chart.svg").render(**layout))


def _curves(title: str, x_label: str, series: list[Series], percent: bool, epochs: bool = False, mark=None) -> Panel:
    """A panel of curves on axes that span them: ``percent`` for accuracy, whole ``epochs`` along x."""
    xs = [x for line in series for x in line.xs]
    ys = [y for line in series for y in line.ys]
    return Panel(title, x_label, tuple(series), Axis.over(min(xs), max(xs), integer=epochs),
                 Axis.over(min(ys), max(ys), percent=percent), mark=mark)  # fmt: skip


def training_curves_svg(curve: tuple[TrainingStep, ...]) -> Markup:
    """Accuracy and cross-entropy of the training batch and the validation sample at each evaluation step; the
    validation sample is small and redrawn each time, so its curve is drawn faint with its running mean over it."""
    steps = [point.step for point in curve]
    window = max(1, len(curve) // 25)
    panels = []
    for train, validation, title in (
        ("train_accuracy", "validation_accuracy", "Accuracy"),
        ("train_cross_entropy", "validation_cross_entropy", "Cross-entropy (loss)"),
    ):
        validated = pd.Series([getattr(p, validation) for p in curve])
        series = [Series("training batch", TRAIN_COLOUR, steps, [getattr(p, train) for p in curve], 1.2)]
        if window > 1:
            series += [
                Series("validation sample", VALIDATION_COLOUR, steps, validated.tolist(), 0.8, 0.3),
                Series(f"validation, mean of {window} evaluations", VALIDATION_COLOUR, steps,
                       validated.rolling(window, min_periods=1).mean().tolist(), 2),
            ]  # fmt: skip
        else:
            series.append(Series("validation sample", VALIDATION_COLOUR, steps, validated.tolist(), 1.6))
        panels.append(_curves(title, "training step", series, percent=train == "train_accuracy"))
    return _svg(chart_layout(panels, 1100, 340))


def fine_tune_curves_svg(facts: FineTuneFacts) -> Markup:
    """Accuracy and cross-entropy per fine-tuning epoch (epoch 0: the new layer alone), the kept epoch marked."""
    epochs = facts.epochs_run
    trained = [epoch for epoch in epochs if epoch.train_accuracy is not None]
    panels = []
    for train, validation, title in (
        ("train_accuracy", "validation_accuracy", "Accuracy"),
        ("train_cross_entropy", "validation_cross_entropy", "Cross-entropy (loss)"),
    ):
        series = [
            Series("training (augmented)", TRAIN_COLOUR, [e.epoch for e in trained],
                   [getattr(e, train) for e in trained], 1.2, markers=True),
            Series("validation", VALIDATION_COLOUR, [e.epoch for e in epochs], [getattr(e, validation) for e in epochs],
                   2, markers=True),
        ]  # fmt: skip
        mark = (facts.best_epoch, f"kept: epoch {facts.best_epoch}")
        x_label = "epoch (0: the new layer alone)"
        panels.append(_curves(title, x_label, series, percent=train == "train_accuracy", epochs=True, mark=mark))
    return _svg(chart_layout(panels, 1100, 340))


def confidence_histogram_svg(evaluation: Evaluation) -> Markup:
    """How sure the model was of each test prediction (its top-class probability), right and wrong apart: wrong
    predictions made with high confidence are the ones to look at (or a label to doubt)."""
    confidence = evaluation.probabilities.max(axis=1)
    right = evaluation.predictions == evaluation.truths
    edges = np.linspace(1 / len(evaluation.labels), 1, 13) if len(evaluation.labels) > 1 else np.linspace(0, 1, 13)
    counts = [np.histogram(confidence[kept], bins=edges)[0] for kept in (right, ~right)]
    series = (
        Series(f"right ({int(right.sum())})", RIGHT_COLOUR, edges[:-1].tolist(), counts[0].tolist()),
        Series(f"wrong ({int((~right).sum())})", WRONG_COLOUR, edges[:-1].tolist(), counts[1].tolist()),
    )
    x = Axis.over(float(edges[0]), 1.0, percent=True)
    y = Axis.over(0, max(1, int(max(c.max() for c in counts))), integer=True)
    panel = Panel("", "top-class probability", series, x, y, y_label="test images", bars=True)
    return _svg(chart_layout([panel], 750, 320, legend_inside=True))


@dataclass(frozen=True)
class MistakeCard:
    """A misclassified test photo as report.html shows it, with the audit's checks that name it."""

    name: str
    picture: Markup | None  # a data URI; None when the photo moved or changed since the run
    true_label: str
    predicted_label: str
    confidence: float
    audit_findings: tuple[str, ...]


def _picture(path: Path) -> Markup | None:
    """A photo's thumbnail as markup: a data URI of our own JPEG holds nothing to escape, and ``printable`` would read
    each of its characters (a second for a report's 200 pictures)."""
    uri = thumbnail_uri(path)
    return None if uri is None else Markup(uri)


def mistake_cards(evaluation: Evaluation, audit_findings: Mapping[str, tuple[str, ...]]) -> list[MistakeCard]:
    key_of = dict(zip(evaluation.paths, evaluation.content_keys, strict=False)) if evaluation.content_keys else {}
    return [
        MistakeCard(
            Path(item.path).name,
            _picture(item.path),
            item.true_label,
            item.predicted_label,
            item.confidence,
            tuple(audit_findings.get(key_of.get(item.path, ""), ())),
        )
        for item in evaluation.misclassified()[:THUMBNAILS_SHOWN]
    ]


def _facts(run: RunReport) -> list[tuple[str, str]]:
    """How the run was made, for the page's last table: enough to reproduce it."""
    facts = run.facts
    rows = [("dataset", facts.dataset), ("module", facts.module)]
    if facts.image_size is not None:
        rows.append(("image size", "x".join(map(str, facts.image_size))))
    rows += [("training steps", facts.steps), ("learning rate", facts.learning_rate), ("seed", facts.seed)]
    if facts.images is not None:
        rows.append(("images", ", ".join(f"{count} {split}" for split, count in facts.images.items())))
    rows += [("dataset fingerprint", facts.dataset_fingerprint), ("model", facts.model)]
    if run.top5_accuracy is not None:
        rows.append(("top-5 accuracy", percent(run.top5_accuracy)))
    if run.tflite is not None:
        rows.append(
            (
                "TensorFlow Lite",
                f"{run.tflite.path} ({run.tflite.quantize}, {run.tflite.bytes / 1e6:.1f} MB): "
                f"test accuracy {percent(run.tflite.test_accuracy)}",
            )
        )
    if run.durations is not None:
        took = {"bottlenecks": run.durations.bottlenecks, "training": run.durations.training,
                "fine-tuning": run.durations.fine_tuning, "in all": run.durations.total}  # fmt: skip
        rows.append(("took", ", ".join(f"{seconds:.1f} s {stage}" for stage, seconds in took.items() if seconds)))
    if facts.tool_version:
        rows.append(("versions", f"retrain-ci {facts.tool_version}, TensorFlow {facts.tensorflow_version}"))
    return [(name, str(value)) for name, value in rows if value is not None and value != ""]


_PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("retrain", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # Every value shown goes through printable (control characters as escapes), then autoescaping; drawn SVG is ours.
    finalize=lambda value: value if isinstance(value, Markup) else printable(value),
)
_PAGES.filters["percent"] = percent
_PAGES.filters["signed_percent"] = lambda value: "n/a" if value is None else f"{value:+.1%}"
_PAGES.filters["name"] = lambda path: Path(path).name
_PAGES.globals["thumbnail"] = _picture
_PAGES.globals["interval"] = interval_text


def _html(report: Report, evaluation: Evaluation, audit_findings: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """One page with everything inlined (charts as SVG, photos as data URIs): it opens anywhere, offline, alone."""
    run = report.run
    counted, normalised = confusion_rows(report.confusion)
    misclassified = evaluation.misclassified()
    cards = mistake_cards(evaluation, audit_findings or {})
    fine_tune = run.facts.fine_tune
    return _PAGES.get_template("report.html").render(
        run=run,
        verdict=verdict(run),
        training_curves=training_curves_svg(run.facts.training_curve) if run.facts.training_curve else None,
        fine_tune=fine_tune,
        fine_tune_curves=fine_tune_curves_svg(fine_tune) if fine_tune is not None and fine_tune.epochs_run else None,
        labels=list(report.confusion.columns),
        counted=counted,
        normalised=normalised,
        per_class=[
            (label, score_cells(scores), recall_interval_cell(scores), scores.support)
            for label, scores in run.per_class.items()
        ],
        histogram=confidence_histogram_svg(evaluation) if len(evaluation.truths) else None,
        diff=run.diff,
        changed_photos=changed_photos_line(run.diff) if run.diff is not None else "",
        shared_photos=shared_photos_line(run.diff) if run.diff is not None else "",
        misclassified=len(misclassified),
        cards=cards,
        audited=audit_findings is not None,
        flagged=sum(1 for card in cards if card.audit_findings),
        thumbnails=THUMBNAILS_SHOWN,
        thumbnail_size=THUMBNAIL_SIZE,
        facts=_facts(run),
    )
