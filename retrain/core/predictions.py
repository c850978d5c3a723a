"""predictions.csv, the one table a report is derived from: its columns, its spreadsheet-safe cells, and its check.

A run's report and a later run's baseline both read it, so it lives in the core (no TensorFlow, no plotting).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.core.errors import InputError
from retrain.core.results import Evaluation

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# The cache's SHA-1 of each file: matches a test photo across runs whatever its path. Older reports lack it.
CONTENT_KEY = "content_key"


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.csv as written: every label a string (``0``, ``NaN`` and ``true`` are class names, not values)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    numeric = [column for column in table.columns if column == "confidence" or column.startswith("p:")]
    text = [column for column in table.columns if column not in numeric]
    table[text] = table[text].map(_from_csv_cell)
    table[numeric] = table[numeric].astype(np.float64)
    return table


def write_csv(table: pd.DataFrame, path: Path, index: bool = True) -> None:
    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(_csv_cell)
    safe.index = safe.index.map(_csv_cell)
    safe.columns = safe.columns.map(_csv_cell)
    safe.to_csv(path, index=index)


def _csv_cell(value: object) -> object:
    """A text cell a spreadsheet cannot run: a leading quote before a formula character, as OWASP advises."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _from_csv_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


def check_predictions(directory: Path, table: pd.DataFrame, labels: tuple[str, ...], images: int | None) -> None:
    """predictions.csv must be the table metrics.json was computed from: a copy from another run renders wrong names.

    Reports from before content keys have no ``content_key`` column; both shapes are valid.
    """
    probabilities = [f"p:{label}" for label in labels]
    shapes = [
        ["path", CONTENT_KEY, "true_label", "predicted_label", "confidence", *probabilities],
        ["path", "true_label", "predicted_label", "confidence", *probabilities],
    ]
    named = set(table.get("true_label", pd.Series(dtype=str)).astype(str))
    named |= set(table.get("predicted_label", pd.Series(dtype=str)).astype(str))
    problem = None
    if list(table.columns) not in shapes:
        problem = f"its columns are {', '.join(map(str, table.columns))}, not {', '.join(shapes[0])}"
    elif not named <= set(labels):
        problem = f"it names classes metrics.json does not have ({', '.join(sorted(named - set(labels)))})"
    elif images is not None and len(table) != images:
        problem = f"it has {len(table)} rows for {images} test images"
    if problem:
        raise InputError(f"{directory / 'predictions.csv'} does not match {directory / 'metrics.json'}: {problem}")


def predictions_table(evaluation: Evaluation) -> pd.DataFrame:
    """The table of an evaluation: each photo's path, content key (when known), true and predicted label, confidence
    and every class's probability."""
    keys = {CONTENT_KEY: evaluation.content_keys} if evaluation.content_keys else {}
    table = pd.DataFrame(
        {
            "path": resolved(evaluation.paths),
            **keys,
            "true_label": [evaluation.labels[i] for i in evaluation.truths],
            "predicted_label": [evaluation.labels[i] for i in evaluation.predictions],
            "confidence": evaluation.probabilities.max(axis=1) if len(evaluation.paths) else [],
        }
    )
    for index, label in enumerate(evaluation.labels):
        table[f"p:{label}"] = evaluation.probabilities[:, index]
    return table


def resolved(paths: Iterable[os.PathLike | str]) -> list[str]:
    """Each path as ``str(Path(path).resolve())`` gives it, each folder resolved once: resolving every path of a
    10,000-photo test set component by component took a second, twice a run. A path that is itself a link is
    resolved whole."""
    folders: dict[str, str] = {}
    found = []
    for path in map(os.fspath, paths):
        folder, name = os.path.split(path)
        if name in ("", ".", "..") or os.path.islink(path):
            found.append(os.path.realpath(path))
            continue
        if folder not in folders:
            folders[folder] = os.path.realpath(folder or ".")
        found.append(os.path.join(folders[folder], name))
    return found
