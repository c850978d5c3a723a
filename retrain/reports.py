"""Evaluation reports of a run: metrics.json, confusion matrix (CSV + PNG), misclassified.csv, report.html, summary.md.

Everything is derived from one table of predictions (``predictions.csv``), which is kept with the report, so
``retrain-ci report`` can render the same files again later and every number agrees with every other.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, top_k_accuracy_score  # noqa: E402

from retrain.core.display import printable  # noqa: E402
from retrain.core.errors import InputError  # noqa: E402
from retrain.core.gate import GateResult  # noqa: E402
from retrain.core.model_diff import FlippedImage, ModelDiff, model_change_line  # noqa: E402
from retrain.core.outputs import check_replaceable, staged_output  # noqa: E402
from retrain.core.predictions import CONTENT_KEY, check_predictions, read_predictions, write_csv  # noqa: E402
from retrain.core.results import Evaluation  # noqa: E402
from retrain.core.thumbnails import THUMBNAIL_SIZE, data_uri, thumbnail_uri  # noqa: E402

THUMBNAILS_SHOWN = 100


@dataclass
class Report:
    """A rendered report: the metrics document, the confusion matrix and where the files are."""

    directory: Path
    metrics: dict
    confusion: pd.DataFrame

    @property
    def gate(self) -> GateResult:
        return GateResult.from_dict(self.metrics["gate"])

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def gated(self) -> bool:
        """Whether any gate condition was asked for."""
        return self.gate.settings.asked

    def top_confusions(self, count: int = 5) -> list[tuple[str, str, int]]:
        """The most frequent (true, predicted) pairs among wrong predictions."""
        pairs = [
            (true, predicted, int(self.confusion.loc[true, predicted]))
            for true in self.confusion.index
            for predicted in self.confusion.columns
            if true != predicted and self.confusion.loc[true, predicted] > 0
        ]
        return sorted(pairs, key=lambda pair: -pair[2])[:count]

    def worst_classes(self, count: int = 3) -> list[tuple[str, float]]:
        """Lowest recall first, among classes with test images (a class without any has no recall to speak of)."""
        per_class = {label: row for label, row in self.metrics["per_class"].items() if row["support"]}
        ranked = sorted(per_class, key=lambda label: per_class[label]["recall"])
        return [(label, per_class[label]["recall"]) for label in ranked[:count]]


def compute_metrics(evaluation: Evaluation, run_info: dict, gate: GateResult) -> dict:
    """The metrics document: accuracy, per-class precision/recall/F1/support, and what produced them."""
    metrics = {
        "test_accuracy": evaluation.accuracy,
        "test_images": len(evaluation.truths),
        **run_info,
        "per_class": {
            str(row.Index): {
                "precision": float(row.precision),
                "recall": float(row.recall),
                "f1": float(row.f1),
                "support": int(row.images),
            }
            for row in evaluation.per_class(every_label=True).itertuples()
        },
        "gate": gate.to_dict(),
    }
    if len(evaluation.labels) > 5:
        metrics["top5_accuracy"] = float(
            top_k_accuracy_score(
                evaluation.truths, evaluation.probabilities, k=5, labels=list(range(len(evaluation.labels)))
            )
        )
    return metrics


def write_report(directory: Path, evaluation: Evaluation, run_info: dict, gate: GateResult) -> Report:
    """Write every report file into ``directory`` at once (the folder is replaced whole, never half-written)."""
    metrics = compute_metrics(evaluation, run_info, gate)
    confusion = pd.DataFrame(
        confusion_matrix(evaluation.truths, evaluation.predictions, labels=list(range(len(evaluation.labels)))),
        index=pd.Index(evaluation.labels, name="true"),
        columns=pd.Index(evaluation.labels, name="predicted"),
    )
    report = Report(Path(directory), metrics, confusion)
    with staged_output(Path(directory), "report folder") as staging:
        staging.mkdir()
        write_csv(_predictions_table(evaluation), staging / "predictions.csv", index=False)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_csv(confusion, staging / "confusion_matrix.csv")
        png = _confusion_png(confusion)
        (staging / "confusion_matrix.png").write_bytes(png)
        write_csv(_misclassified_table(evaluation), staging / "misclassified.csv", index=False)
        (staging / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
        (staging / "report.html").write_text(_html(report, evaluation, png), encoding="utf-8")
    return report


def rerender(directory: Path, dataset_change: str | None = None) -> Report:
    """Render an earlier run's report again from the predictions and run details it kept; ``dataset_change`` (the
    audit's change line against its baseline) is kept with it, to lead the summary."""
    directory = Path(directory)
    if (directory / "report" / "metrics.json").is_file():
        directory = directory / "report"
    try:
        metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
        table = read_predictions(directory / "predictions.csv")
    except (OSError, ValueError) as error:
        raise InputError(f"{directory} holds no retrain-ci report (metrics.json and predictions.csv)") from error
    check_replaceable(directory, "report folder")
    labels = tuple(metrics["per_class"])
    check_predictions(directory, table, labels, metrics.get("test_images"))
    evaluation = Evaluation(
        labels,
        [Path(p) for p in table["path"]],
        np.array([labels.index(label) for label in table["true_label"]], dtype=np.int64),
        table[[f"p:{label}" for label in labels]].to_numpy(),
        [],
        list(table[CONTENT_KEY]) if CONTENT_KEY in table else [],
    )
    derived = {"test_accuracy", "test_images", "per_class", "gate", "top5_accuracy"}
    run_info = {key: value for key, value in metrics.items() if key not in derived}
    if dataset_change is not None:
        run_info["dataset_change"] = dataset_change
    return write_report(directory, evaluation, run_info, GateResult.from_dict(metrics["gate"]))


def summary_markdown(report: Report) -> str:
    """A short summary for pull requests and GitHub step summaries."""
    metrics = report.metrics
    verdict = report.gate.verdict
    change = change_line(metrics)
    lines = [
        "## retrain-ci report",
        "",
        *([f"**Change:** {change}.", ""] if change else []),
        f"**Test accuracy {metrics['test_accuracy']:.1%}** on {metrics['test_images']} images"
        + (f" (validation {metrics['validation_accuracy']:.1%})" if "validation_accuracy" in metrics else "")
        + f". Gate: {verdict}.",
        "",
        "| class | precision | recall | F1 | images |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, row in metrics["per_class"].items():
        lines.append(f"| {label} | {' | '.join(class_scores(row))} | {row['support']} |")
    worst = ", ".join(f"{label} ({recall:.1%} recall)" for label, recall in report.worst_classes())
    lines += ["", f"Worst classes: {worst}."]
    confusions = report.top_confusions()
    if confusions:
        listed = ", ".join(f"{true} → {predicted} ({count})" for true, predicted, count in confusions)
        lines.append(f"Top confusions: {listed}.")
    return "\n".join(lines) + "\n"


def change_line(metrics: dict) -> str:
    """What a pull request did, data first: "+40 roses, ...; new: 1 error; fixed: 2; accuracy 91.0% -> 91.6%, ..."."""
    return "; ".join(part for part in (metrics.get("dataset_change", ""), model_change_line(metrics)) if part)


def class_scores(row: dict) -> list[str]:
    """Precision, recall and F1 as percentages; "n/a" for a class without test images, rather than a false 0%."""
    if not row["support"]:
        return ["n/a"] * 3
    return [f"{row[key]:.1%}" for key in ("precision", "recall", "f1")]


def _predictions_table(evaluation: Evaluation) -> pd.DataFrame:
    keys = {CONTENT_KEY: evaluation.content_keys} if evaluation.content_keys else {}
    table = pd.DataFrame(
        {
            "path": [str(Path(p).resolve()) for p in evaluation.paths],
            **keys,
            "true_label": [evaluation.labels[i] for i in evaluation.truths],
            "predicted_label": [evaluation.labels[i] for i in evaluation.predictions],
            "confidence": evaluation.probabilities.max(axis=1) if len(evaluation.paths) else [],
        }
    )
    for index, label in enumerate(evaluation.labels):
        table[f"p:{label}"] = evaluation.probabilities[:, index]
    return table


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


def _baseline_html(metrics: dict) -> str:
    """ "Against the baseline": accuracy and per-class deltas, then the photos that flipped, both ways, as pictures."""
    if not metrics.get("baseline"):
        return ""
    diff = ModelDiff.from_dict(metrics["baseline"])
    rows = pd.DataFrame(
        [
            [
                _percent(change.recall_before),
                _percent(change.recall_after),
                "n/a" if change.delta is None else f"{change.delta:+.1%}",
                change.support_before,
                change.support_after,
                "yes" if change.gated(diff.min_class_support) else f"no (under {diff.min_class_support} images)",
            ]
            for change in diff.classes
        ],
        index=[printable(change.label) for change in diff.classes],
        columns=["recall before", "recall after", "change", "images before", "images after", "gated"],
    )
    sections = [
        "<h2>Against the baseline</h2>",
        f"<p>{_html_text(model_change_line(metrics))}.</p>",
        f"<p>Baseline: {_html_text(diff.baseline)} ({diff.images_before} test images; this run {diff.images_after})."
        f" Accuracy {diff.accuracy_before:.2%} &rarr; {diff.accuracy_after:.2%} ({diff.accuracy_delta:+.2%}).</p>",
        rows.to_html(border=0) if diff.classes else "",
    ]
    images = diff.images
    if images is None:
        sections.append(f"<p>{_html_text(diff.note)}.</p>")
        return "\n".join(sections)
    new_accuracy = f", {images.new_right / images.new:.1%} right" if images.new else ""
    sections.append(
        f"<p>Test photos in both runs: {images.unchanged + images.flipped} ({images.flipped} flipped); "
        f"new to the test set: {images.new}{new_accuracy}; gone from it: {images.gone}; "
        f"moved to another class: {images.relabelled}.</p>"
    )
    for title, flipped in (
        ("Now wrong (the baseline had them right)", images.now_wrong),
        ("Now right", images.now_right),
    ):
        cards = "".join(_flipped_card(item) for item in flipped[:THUMBNAILS_SHOWN])
        hidden = len(flipped) - THUMBNAILS_SHOWN
        more = f"<p>... and {hidden} more in metrics.json</p>" if hidden > 0 else ""
        sections.append(f'<h3>{title} ({len(flipped)})</h3><div class="grid">{cards or "<p>None.</p>"}</div>{more}')
    return "\n".join(sections)


def _flipped_card(item: FlippedImage) -> str:
    thumbnail = thumbnail_uri(Path(item.path))  # None: moved or changed since the run
    name = _html_text(Path(item.path).name)
    picture = f'<img src="{thumbnail}" alt="{name}">' if thumbnail else "(missing)"
    return (
        f"<figure>{picture}<figcaption>{name}<br>true <b>{_html_text(item.true_label)}</b>, predicted "
        f"{_html_text(item.predicted_before)} &rarr; <b>{_html_text(item.predicted_after)}</b></figcaption></figure>"
    )


def _html(report: Report, evaluation: Evaluation, confusion_png: bytes) -> str:
    """One page with everything inlined (images as data URIs), so it opens anywhere, offline, as a lone file."""
    metrics = report.metrics
    per_class = pd.DataFrame(
        [[*class_scores(row), row["support"]] for row in metrics["per_class"].values()],
        index=[printable(label) for label in metrics["per_class"]],  # to_html escapes HTML, not control characters
        columns=["precision", "recall", "F1", "images"],
    )
    facts = {
        "test accuracy": f"{metrics['test_accuracy']:.2%} ({metrics['test_images']} images)",
        "gate": report.gate.verdict,
    }
    for key in ("validation_accuracy", "top5_accuracy"):
        if key in metrics:
            facts[key.replace("_", " ")] = f"{metrics[key]:.2%}"
    if metrics.get("dataset_change"):
        facts["dataset change"] = metrics["dataset_change"]
    for key in ("module", "image_size", "steps", "seed", "dataset", "dataset_fingerprint"):
        if key in metrics:
            facts[key.replace("_", " ")] = str(metrics[key])
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
{_baseline_html(metrics)}
<h2>Misclassified test images ({len(evaluation.misclassified())}, most confident first)</h2>
<div class="grid">{"".join(cards) or "<p>None.</p>"}</div>
{f"<p>... and {more} more in misclassified.csv</p>" if more > 0 else ""}
</body></html>
"""
