"""Evaluation reports of a run: metrics.json, confusion matrix (CSV + PNG), misclassified.csv, report.html, summary.md.

Everything is derived from one table of predictions (``predictions.csv``), which is kept with the report, so
``retrain-ci report`` can render the same files again later and every number agrees with every other.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix  # noqa: E402

from retrain.core.display import markdown_text, printable  # noqa: E402
from retrain.core.errors import InputError  # noqa: E402
from retrain.core.gate import interval_text  # noqa: E402
from retrain.core.model_diff import changed_photos_line, shared_photos_line  # noqa: E402
from retrain.core.outputs import check_replaceable, staged_output  # noqa: E402
from retrain.core.predictions import (  # noqa: E402
    CONTENT_KEY,
    check_predictions,
    predictions_table,
    read_predictions,
    write_csv,
)
from retrain.core.results import Evaluation  # noqa: E402
from retrain.core.run_json import read_run_report, run_report_json  # noqa: E402
from retrain.core.run_report import ClassScores, FlippedImage, ModelDiff, RelabelledImage, RunReport  # noqa: E402
from retrain.core.thumbnails import THUMBNAIL_SIZE, data_uri, thumbnail_uri  # noqa: E402

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


def write_report(directory: Path, evaluation: Evaluation, run: RunReport) -> Report:
    """Write every report file into ``directory`` at once (the folder is replaced whole, never half-written)."""
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
        png = _confusion_png(confusion)
        (staging / "confusion_matrix.png").write_bytes(png)
        write_csv(_misclassified_table(evaluation), staging / "misclassified.csv", index=False)
        (staging / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
        (staging / "report.html").write_text(_html(report, evaluation, png), encoding="utf-8")
    return report


def rerender(
    directory: Path, dataset_change: str | None = None, audit_findings: Mapping[str, tuple[str, ...]] | None = None
) -> Report:
    """Render an earlier run's report again from the predictions and run details it kept; ``dataset_change`` (the
    audit's change line against its baseline) is kept with it, to lead the summary, and ``audit_findings`` (the
    audit's checks naming each photo, by content key) are linked to the relabelled test photos."""
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
    if dataset_change is not None:
        run = replace(run, dataset_change=dataset_change)
    if audit_findings is not None and run.diff is not None and run.diff.images is not None:
        linked = tuple(
            replace(item, audit_findings=audit_findings.get(item.content_key, ()))
            for item in run.diff.images.relabelled_images
        )
        run = replace(run, diff=replace(run.diff, images=replace(run.diff.images, relabelled_images=linked)))
    return write_report(directory, evaluation, run)


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
    rows = [
        (str(Path(m.path).resolve()), m.true_label, m.predicted_label, m.confidence) for m in evaluation.misclassified()
    ]
    return pd.DataFrame(rows, columns=["path", "true_label", "predicted_label", "confidence"])


def _confusion_png(confusion: pd.DataFrame) -> bytes:
    size = max(5.0, 0.6 * len(confusion) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(confusion.to_numpy(), display_labels=[printable(label) for label in confusion.index]).plot(
        ax=axes, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    axes.set_title("Confusion matrix (test images)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _html_text(text: str) -> str:
    return html.escape(printable(text))


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _recall_table(classes: tuple, min_support: int) -> str:
    rows = pd.DataFrame(
        [
            [
                _percent(change.recall_before),
                _percent(change.recall_after),
                "n/a" if change.delta is None else f"{change.delta:+.1%}",
                change.support_before,
                change.support_after,
                "yes" if change.gated(min_support) else f"no (under {min_support} images)",
            ]
            for change in classes
        ],
        index=[printable(change.label) for change in classes],
        columns=["recall before", "recall after", "change", "images before", "images after", "gated"],
    )
    return rows.to_html(border=0) if classes else ""


def _baseline_html(diff: ModelDiff | None) -> str:
    """ "Against the baseline", in the summary's order: what changed in the test data (relabelled photos as pictures),
    what the model did on the photos both runs share (per-class deltas, the photos that flipped, as pictures), then
    the whole test sets for reference."""
    if diff is None:
        return ""
    sections = ["<h2>Against the baseline</h2>"]
    images = diff.images
    test_data = changed_photos_line(diff)
    if test_data:
        sections.append(f"<p><b>Test data:</b> {_html_text(test_data)}.</p>")
    relabelled = images.relabelled_images if images is not None else ()
    if relabelled:
        cards = "".join(_relabelled_card(item) for item in relabelled[:THUMBNAILS_SHOWN])
        sections.append(
            f"<h3>Relabelled test photos ({len(relabelled)}): a change of the labels, not of the model</h3>"
            f'<div class="grid">{cards}</div>'
        )
    shared = images is not None and images.shared_accuracy_before is not None
    heading = f"The {images.shared} test photos both runs share" if shared else "The model"
    sections.append(f"<p><b>{heading}:</b> {_html_text(shared_photos_line(diff))}.</p>")
    if shared:
        sections += [
            "<h3>Recall on the photos both runs share (what the gate compares)</h3>",
            _recall_table(images.shared_classes, diff.min_class_support),
        ]
    if images is not None:
        for title, flipped in (
            ("Now wrong (the baseline had them right)", images.now_wrong),
            ("Now right", images.now_right),
        ):
            cards = "".join(_flipped_card(item) for item in flipped[:THUMBNAILS_SHOWN])
            hidden = len(flipped) - THUMBNAILS_SHOWN
            more = f"<p>... and {hidden} more in metrics.json</p>" if hidden > 0 else ""
            sections.append(f'<h3>{title} ({len(flipped)})</h3><div class="grid">{cards or "<p>None.</p>"}</div>{more}')
    sections += [
        "<h3>The whole test sets</h3>",
        f"<p>Baseline: {_html_text(diff.baseline)} ({diff.images_before} test images; this run {diff.images_after})."
        f" Accuracy {diff.accuracy_before:.2%} &rarr; {diff.accuracy_after:.2%} ({diff.accuracy_delta:+.2%}).</p>",
        _recall_table(diff.classes, diff.min_class_support),
    ]
    if images is None:
        sections.append(f"<p>{_html_text(diff.note)}.</p>")
    else:
        new_accuracy = f", {images.new_right / images.new:.1%} right" if images.new else ""
        sections.append(
            f"<p>Test photos in both runs: {images.shared} under the same class ({images.flipped} flipped); "
            f"new to the test set: {images.new}{new_accuracy}; gone from it: {images.gone}; "
            f"moved to another class: {images.relabelled}.</p>"
        )
    return "\n".join(sections)


def _picture(path: str) -> str:
    thumbnail = thumbnail_uri(Path(path))  # None: moved or changed since the run
    return f'<img src="{thumbnail}" alt="{_html_text(Path(path).name)}">' if thumbnail else "(missing)"


def _flipped_card(item: FlippedImage) -> str:
    return (
        f"<figure>{_picture(item.path)}<figcaption>{_html_text(Path(item.path).name)}<br>true "
        f"<b>{_html_text(item.true_label)}</b>, predicted {_html_text(item.predicted_before)} &rarr; "
        f"<b>{_html_text(item.predicted_after)}</b></figcaption></figure>"
    )


def _relabelled_card(item: RelabelledImage) -> str:
    return (
        f"<figure>{_picture(item.path)}<figcaption>{_html_text(Path(item.path).name)}<br>"
        f"{_html_text(item.label_before)} &rarr; <b>{_html_text(item.label_after)}</b>, the model says "
        f"<b>{_html_text(item.predicted_after)}</b>"
        + (f"<br>the audit flags it: {_html_text(', '.join(item.audit_findings))}" if item.audit_findings else "")
        + "</figcaption></figure>"
    )


def _html(report: Report, evaluation: Evaluation, confusion_png: bytes) -> str:
    """One page with everything inlined (images as data URIs), so it opens anywhere, offline, as a lone file."""
    run = report.run
    per_class = pd.DataFrame(
        [
            [*score_cells(scores)[:2], recall_interval_cell(scores), score_cells(scores)[2], scores.support]
            for scores in run.per_class.values()
        ],
        index=[printable(label) for label in run.per_class],  # to_html escapes HTML, not control characters
        columns=["precision", "recall", "recall 95% interval", "F1", "images"],
    )
    facts = {
        "test accuracy": f"{run.test_accuracy:.2%}{_interval_note(run.accuracy_interval)} ({run.test_images} images)",
        "gate": run.gate.verdict,
    }
    if run.gate.warnings:
        facts["warning"] = "; ".join(run.gate.warnings)
    for name, value in (("validation accuracy", run.facts.validation_accuracy), ("top5 accuracy", run.top5_accuracy)):
        if value is not None:
            facts[name] = f"{value:.2%}"
    if run.dataset_change:
        facts["dataset change"] = run.dataset_change
    for key in ("module", "image_size", "steps", "seed", "dataset", "dataset_fingerprint"):
        value = getattr(run.facts, key)
        if value is not None and value != "":
            facts[key.replace("_", " ")] = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
    cards = []
    for item in evaluation.misclassified()[:THUMBNAILS_SHOWN]:
        thumbnail = thumbnail_uri(item.path)  # None: moved or changed since the run
        name = _html_text(item.path.name)
        picture = f'<img src="{thumbnail}" alt="{name}">' if thumbnail else "(missing)"
        cards.append(
            f"<figure>{picture}<figcaption>{name}<br>true <b>{_html_text(item.true_label)}</b>, "
            f"predicted <b>{_html_text(item.predicted_label)}</b> ({item.confidence:.0%})</figcaption></figure>"
        )
    facts_rows = "".join(f"<tr><th>{_html_text(k)}</th><td>{_html_text(v)}</td></tr>" for k, v in facts.items())
    more = len(evaluation.misclassified()) - len(cards)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>retrain-ci report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 10px; }}
th {{ text-align: left; background: #f4f4f4; }} td {{ text-align: right; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: {THUMBNAIL_SIZE}px; font-size: 12px; overflow-wrap: anywhere; }}
figure img {{ max-width: 100%; }}
</style></head><body>
<h1>retrain-ci report</h1>
<table>{facts_rows}</table>
<h2>Confusion matrix</h2>
<img src="{data_uri(confusion_png, "image/png")}" alt="confusion matrix">
<h2>Per class</h2>
{per_class.to_html(border=0)}
{_baseline_html(run.diff)}
<h2>Misclassified test images ({len(evaluation.misclassified())}, most confident first)</h2>
<div class="grid">{"".join(cards) or "<p>None.</p>"}</div>
{f"<p>... and {more} more in misclassified.csv</p>" if more > 0 else ""}
</body></html>
"""
