"""metrics.json, the one file boundary of a ``RunReport``: written here, and read back here, checked before any use.

A baseline run's metrics.json arrives from another branch's CI and may be damaged or hostile, so reading checks every
value against the type the report declares (finite numbers, fractions in [0, 1], strings where strings go) and any
problem is one InputError naming the file, raised before a run starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.core.errors import InputError
from retrain.core.gate import GateResult
from retrain.core.results import EpochResult
from retrain.core.run_report import (
    ClassScores,
    Durations,
    FineTuneFacts,
    ModelDiff,
    RunFacts,
    RunReport,
    TfliteResult,
)
from retrain.core.settings import FineTuneSettings, GateSettings

if TYPE_CHECKING:  # pandas loads with a baseline's predictions: the audit's reader checks by these rules without it
    import pandas as pd

# Fields whose values are fractions: anything outside [0, 1] is a damaged or forged file.
FRACTIONS = {"test_accuracy", "validation_accuracy", "train_accuracy", "top5_accuracy", "precision", "recall", "f1",
             "accuracy_before",
             "accuracy_after", "recall_before", "recall_after", "test_accuracy_interval",
             "recall_interval"}  # fmt: skip
# A metrics.json is a few kilobytes (a hundred with a long training curve); anything far larger is not one.
MAX_BYTES = 64 << 20


def run_report_json(report: RunReport) -> str:
    """The metrics.json text of ``report``."""
    return json.dumps(run_report_document(report), indent=2, allow_nan=False) + "\n"


def run_report_document(report: RunReport) -> dict[str, Any]:
    """The metrics.json document of ``report``, as JSON-ready values (``evaluate --format json`` reuses parts)."""
    facts = {key: value for key, value in _plain(report.facts).items() if value is not None}
    if report.facts.fine_tune is not None:
        facts["fine_tune"] = _fine_tune_plain(report.facts.fine_tune)
    interval = {} if report.accuracy_interval is None else {"test_accuracy_interval": list(report.accuracy_interval)}
    document: dict[str, Any] = {
        "test_accuracy": report.test_accuracy,
        **interval,
        "test_images": report.test_images,
        **facts,
    }
    if report.durations is not None:
        document["durations_seconds"] = {k: v for k, v in _plain(report.durations).items() if v is not None}
    if report.tflite is not None:
        document["tflite"] = _plain(report.tflite)
    if report.diff is not None:
        document["baseline"] = _plain(report.diff)
    if report.dataset_change:
        document["dataset_change"] = report.dataset_change
    document["per_class"] = {label: _plain(scores) for label, scores in report.per_class.items()}
    document["gate"] = {
        **_plain(report.gate.settings),
        "failures": list(report.gate.failures),
        "warnings": list(report.gate.warnings),
    }
    if report.top5_accuracy is not None:
        document["top5_accuracy"] = report.top5_accuracy
    return document


def _plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, mappings as dicts: what JSON holds."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, typing.Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _fine_tune_plain(facts: FineTuneFacts) -> dict[str, Any]:
    """The settings' fields at the top of the section, with the input size the run trained at in place of the asked."""
    return {
        **_plain(facts.settings),
        "image_size": facts.image_size,
        "best_epoch": facts.best_epoch,
        "epochs_run": _plain(facts.epochs_run),
    }


def read_run_report(metrics_file: Path, what: str = "metrics") -> RunReport:
    """A metrics.json, checked; anything else is one InputError."""
    try:
        if metrics_file.stat().st_size > MAX_BYTES:
            raise InputError(f"the {what} {metrics_file} is not a retrain-ci run's metrics.json (too large)")
        text = metrics_file.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read the {what} {metrics_file} ({error.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read the {what} {metrics_file} (it is not UTF-8 text)") from None
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InputError(f"cannot read the {what} {metrics_file} (it is not JSON)") from None
    try:
        return run_report_from_document(document)
    except _Invalid as problem:
        raise InputError(f"the {what} {metrics_file} is not a retrain-ci run's metrics.json ({problem})") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


class _Invalid(Exception):
    """What is wrong with a document, said in a few words."""


def run_report_from_document(document: Any) -> RunReport:
    """The RunReport a metrics.json document holds, or _Invalid."""
    if not isinstance(document, dict) or "test_accuracy" not in document:
        raise _Invalid("no test_accuracy in it")
    per_class = document.get("per_class", {})
    if not isinstance(per_class, dict) or not all(isinstance(row, dict) for row in per_class.values()):
        raise _Invalid("its per_class is not each class's recall and support")
    facts = {f.name: document[f.name] for f in dataclasses.fields(RunFacts) if f.name in document}
    facts.setdefault("dataset", "")
    fine_tune = facts.pop("fine_tune", None)
    gate = document.get("gate", {})
    if not isinstance(gate, dict):
        raise _Invalid("gate is not a table")
    durations = document.get("durations_seconds")
    return RunReport(
        test_accuracy=_typed(float, document["test_accuracy"], "test_accuracy"),
        test_images=_typed(int, document.get("test_images", 0), "test_images"),
        per_class=types.MappingProxyType(
            {_typed(str, label, "a class"): _typed(ClassScores, row, "per_class") for label, row in per_class.items()}
        ),
        facts=dataclasses.replace(
            _typed(RunFacts, facts, "run"), fine_tune=_fine_tune(fine_tune) if fine_tune is not None else None
        ),
        gate=GateResult(
            _typed(GateSettings, {k: v for k, v in gate.items() if k not in ("failures", "warnings")}, "gate"),
            _typed(tuple[str, ...], gate.get("failures", []), "gate failures"),
            _typed(tuple[str, ...], gate.get("warnings", []), "gate warnings"),
        ),
        top5_accuracy=_typed(float | None, document.get("top5_accuracy"), "top5_accuracy"),
        diff=_typed(ModelDiff | None, document.get("baseline") or None, "baseline"),
        durations=_typed(Durations | None, durations, "durations_seconds"),
        tflite=_typed(TfliteResult | None, document.get("tflite"), "tflite"),
        dataset_change=_typed(str, document.get("dataset_change", ""), "dataset_change"),
        accuracy_interval=_typed(
            tuple[float, float] | None, document.get("test_accuracy_interval"), "test_accuracy_interval"
        ),
        labels=tuple(per_class),
    )


def _fine_tune(section: Any) -> FineTuneFacts:
    if not isinstance(section, dict):
        raise _Invalid("fine_tune is not a table")
    names = {f.name for f in dataclasses.fields(FineTuneSettings)} - {"image_size"}
    return FineTuneFacts(
        settings=_typed(FineTuneSettings, {k: v for k, v in section.items() if k in names}, "fine_tune"),
        image_size=_typed(int, section.get("image_size"), "fine_tune image_size"),
        best_epoch=_typed(int, section.get("best_epoch"), "fine_tune best_epoch"),
        epochs_run=_typed(tuple[EpochResult, ...], section.get("epochs_run", []), "fine_tune epochs_run"),
    )


def _typed(kind: Any, value: Any, where: str) -> Any:
    """``value`` as the declared ``kind`` (a type hint), or _Invalid naming where it went wrong."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in arguments:
            return None
        return _typed(next(a for a in arguments if a is not type(None)), value, where)
    if origin is tuple:
        return _tuple(arguments, value, where)
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, where)
    return _SCALARS[kind](value, where)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"{where}: {_shown(value)} is not a finite number")
    if where.rsplit(" ", 1)[-1] in FRACTIONS and not 0 <= value <= 1:
        raise _Invalid(f"{where}: {_shown(value)} is not a fraction between 0 and 1")
    return float(value)


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"{where}: {_shown(value)} is not a whole number")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where}: {_shown(value)} is not text")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{where}: {_shown(value)} is not true or false")
    return value


def _counts(value: Any, where: str) -> types.MappingProxyType:
    if not isinstance(value, dict):
        raise _Invalid(f"{where}: {_shown(value)} is not a table")
    return types.MappingProxyType({_text(k, where): _whole(v, f"{where} {k}") for k, v in value.items()})


def _tuple(arguments: tuple, value: Any, where: str) -> tuple:
    if not isinstance(value, list):
        raise _Invalid(f"{where}: {_shown(value)} is not a list")
    if len(arguments) == 2 and arguments[1] is Ellipsis:
        return tuple(_typed(arguments[0], item, where) for item in value)
    if len(value) != len(arguments):
        raise _Invalid(f"{where}: {_shown(value)} does not hold {len(arguments)} values")
    return tuple(_typed(a, item, where) for a, item in zip(arguments, value, strict=True))


# The reader of each plain type a report declares.
_SCALARS = {float: _number, int: _whole, str: _text, bool: _flag, types.MappingProxyType: _counts}


def _dataclass(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _Invalid(f"{where}: {_shown(value)} is not a table")
    hints = typing.get_type_hints(kind)
    known = {f.name: f for f in dataclasses.fields(kind) if f.init}
    values = {}
    for name, item in value.items():
        if name in known:
            values[name] = _typed(hints[name], item, f"{where} {name}")
    missing = [
        name
        for name, f in known.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _Invalid(f"{where}: no {missing[0]}")
    try:
        return kind(**values)
    except InputError as error:  # a settings section that validates itself
        raise _Invalid(f"{where}: {error}") from None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class BaselineRun:
    """An earlier run's report, read and checked before any work: its report and the predictions kept beside it."""

    metrics_file: Path
    report: RunReport
    predictions: pd.DataFrame | None  # None: a metrics.json alone

    @property
    def accuracy(self) -> float:
        return self.report.test_accuracy


def load_baseline_run(path: Path) -> BaselineRun:
    """An earlier run's ``--output-dir``, its ``report/`` folder, or a metrics.json (predictions.csv beside it is used
    when present); anything else is an InputError, raised before the run starts."""
    metrics_file = _metrics_file(Path(path))
    report = read_run_report(metrics_file, "baseline metrics")
    return BaselineRun(metrics_file, report, _baseline_predictions(metrics_file.parent, report))


def _metrics_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for candidate in (path / "report" / "metrics.json", path / "metrics.json"):
        if candidate.is_file():
            return candidate
    raise InputError(f"the baseline {path} holds no retrain-ci report (metrics.json or report/metrics.json)")


def _baseline_predictions(folder: Path, report: RunReport) -> pd.DataFrame | None:
    from retrain.core.predictions import check_predictions, read_predictions

    file = folder / "predictions.csv"
    if not file.is_file():
        return None
    try:
        table = read_predictions(file)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the baseline predictions {file} ({error})") from None
    check_predictions(folder, table, report.labels, report.test_images)
    return table


def typed_value(kind: Any, value: Any, where: str) -> Any:
    """``value`` as the declared ``kind`` (a type hint), or a ValueError naming where: other files' readers (the audit
    JSON) check by the same rules as metrics.json."""
    try:
        return _typed(kind, value, where)
    except _Invalid as problem:
        raise ValueError(str(problem)) from None
