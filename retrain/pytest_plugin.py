"""pytest plugin: ``pytest --retrain-data DIR`` runs each dataset check as its own test, plus an accuracy gate.

Registered through the ``pytest11`` entry point. Without ``--retrain-data`` (or ``retrain_data`` in the ini file) it
adds nothing, and it never imports TensorFlow while collecting: only an item or fixture that needs it does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from retrain.core.settings import EXECUTORS

_STATE = pytest.StashKey[dict[str, Any]]()


class DatasetFindingWarning(UserWarning):
    """A dataset finding below the severity that fails its check."""


class DatasetCheckFailed(Exception):
    """A check found something at or above the fail-on severity; the message lists the findings."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("retrain-ci", "dataset checks and the accuracy gate of retrain-ci")
    group.addoption("--retrain-data", metavar="DIR", help="image folder to audit; each dataset check becomes a test")
    group.addoption(
        "--retrain-min-accuracy",
        type=float,
        metavar="X",
        help="also retrain on the dataset (reusing the bottleneck cache) and fail below this test accuracy",
    )
    group.addoption(
        "--retrain-fail-on",
        choices=("error", "warning", "never"),
        help="severity at which a check's test fails (default: the audit settings' fail-on, error)",
    )
    group.addoption(
        "--retrain-baseline",
        metavar="OLD.json",
        help="an earlier `retrain-ci check --format json`: only findings new since then become items; "
        "each unchanged one is reported once as skipped, with its fingerprint",
    )
    group.addoption(
        "--retrain-executor",
        choices=tuple(EXECUTORS),
        help="where the per-image work runs (default: the settings file's executor, local)",
    )
    group.addoption(
        "--retrain-ray-address",
        metavar="ADDRESS",
        help="with --retrain-executor ray: local starts Ray here; auto or ray://HOST:PORT joins a cluster",
    )
    parser.addini("retrain_baseline", "as --retrain-baseline (relative to the ini file's folder)")
    parser.addini("retrain_data", "image folder to audit, as --retrain-data (relative to the ini file's folder)")
    parser.addini("retrain_min_accuracy", "as --retrain-min-accuracy")


def _data_dir(config: pytest.Config) -> Path | None:
    if config.getoption("retrain_data"):
        return Path(config.getoption("retrain_data"))
    value = config.getini("retrain_data")
    return config.rootpath / value if value else None


def _min_accuracy(config: pytest.Config) -> float | None:
    value = config.getoption("retrain_min_accuracy") or config.getini("retrain_min_accuracy")
    return float(value) if value else None


def _state(config: pytest.Config) -> dict[str, Any]:
    """Per-session memo: settings, the audit and the trained run are each computed once."""
    if _STATE not in config.stash:
        config.stash[_STATE] = {}
    return config.stash[_STATE]


def _settings_file(config: pytest.Config) -> Path | None:
    """As ``retrain-ci check`` finds it, with the rootdir as the working directory: never one inside the dataset."""
    from retrain.app.audit import settings_file

    state = _state(config)
    if "source" not in state:
        state["source"] = settings_file(_data_dir(config), None, config.rootpath)
    return state["source"].path


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which settings file the dataset's items read (and those inside the dataset they ignore), in the header."""
    from retrain.core.display import printable
    from retrain.core.errors import InputError

    if _data_dir(config) is None:
        return []
    try:
        _settings_file(config)
    except InputError as error:  # the items' collection reports it too, as one line
        return [f"retrain-ci error: {printable(error)}"]
    return [f"retrain-ci {line}" for line in _state(config)["source"].lines()]


def _settings(config: pytest.Config):
    """The audit's settings, resolved as ``retrain-ci check`` resolves them, with this plugin's options."""
    state = _state(config)
    if "settings" not in state:
        from retrain.app.audit import audit_settings

        options = {
            "fail_on": config.getoption("retrain_fail_on"),
            "baseline": _baseline(config),
            "executor": config.getoption("retrain_executor"),
            "ray_address": config.getoption("retrain_ray_address"),
        }
        state["settings"] = audit_settings(_settings_file(config), options)
    return state["settings"]


def _baseline(config: pytest.Config) -> Path | None:
    if config.getoption("retrain_baseline"):
        return Path(config.getoption("retrain_baseline"))
    value = config.getini("retrain_baseline")
    return config.rootpath / value if value else None


def _audit(config: pytest.Config):
    state = _state(config)
    if "audit" not in state:
        from retrain.app.audit import audit_job

        state["audit"] = audit_job(_data_dir(config), _settings(config))
    return state["audit"]


def _trained_run(config: pytest.Config):
    """Train once per session on the dataset, with the audit's splits, module and bottleneck cache."""
    state = _state(config)
    if "run" not in state:
        from retrain.app.training import gate_settings, train_job
        from retrain.core.settings import OutputPaths, RunSettings

        settings = _settings(config)
        output_dir = config.cache.mkdir("retrain-ci-run") if config.cache else Path(".retrain-ci-run")
        state["run"] = train_job(
            RunSettings(
                _data_dir(config),
                module=settings.module,
                split=settings.split,
                execution=settings.execution,
                outputs=OutputPaths.under(output_dir),
                gate=gate_settings(_settings_file(config), None, min_accuracy=_min_accuracy(config)),
            )
        )
    return state["run"]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Next to the test files, collect the dataset: its items then count, select (-k, -m) and report like tests."""
    report = yield
    if isinstance(collector, pytest.Session) and _data_dir(collector.config) is not None and report.passed:
        report.result.append(DatasetCollector.from_parent(collector, name="datacheck", nodeid="datacheck"))
    return report


class DatasetCollector(pytest.Collector):
    """``datacheck::<check id>`` for every selected check, and ``datacheck::min_accuracy`` when asked for.

    With a baseline, ``datacheck::<fingerprint>`` for each finding instead: new ones run, the others are skipped, so
    the items agree with ``retrain-ci check --baseline OLD.json --fail-on-new`` (this audits while collecting).
    """

    def collect(self) -> list[pytest.Item]:
        from datacheck.registry import selected_checks
        from retrain.core.errors import InputError

        try:
            settings = _settings(self.config)
        except InputError as error:  # one line, as the CLI says it
            raise self.CollectError(f"error: {error}") from None
        if settings.baseline is not None:
            try:
                findings = _audit(self.config).findings
            except InputError as error:  # one failing item with the CLI's one line; the user's own tests still run
                return [BadInputItem.from_parent(self, name="baseline", error=f"error: {error}")]
            items: list[pytest.Item] = [
                FindingItem.from_parent(self, name=finding.fingerprint, finding=finding) for finding in findings
            ]
        else:
            items = [
                DatasetCheckItem.from_parent(self, name=check.id)
                for check in selected_checks(settings.only, settings.skip)
            ]
        if _min_accuracy(self.config) is not None:
            items.append(AccuracyItem.from_parent(self, name="min_accuracy"))
        return items


class _DatasetItem(pytest.Item):
    """An item whose failure is a list of findings (or a gate message), shown as is rather than as a traceback."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, DatasetCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.nodeid


class DatasetCheckItem(_DatasetItem):
    """One registered check: fails on findings at or above fail-on, warns about the others."""

    def runtest(self) -> None:
        report = _audit(self.config)
        findings = [finding for finding in report.findings if finding.check == self.name]
        failing = [finding for finding in report.gate.failing if finding.check == self.name]
        for finding in findings:
            if finding not in failing:
                warnings.warn(DatasetFindingWarning(_describe(finding)), stacklevel=1)
        if failing:
            raise DatasetCheckFailed("\n".join(_describe(finding) for finding in failing))


class FindingItem(_DatasetItem):
    """One finding against the baseline: one the change caused fails at or above fail-on; any other (old, or shifted on
    untouched files) is skipped, by fingerprint."""

    def __init__(self, *, finding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finding = finding

    def runtest(self) -> None:
        report = _audit(self.config)
        if self.finding.fingerprint in report.accepted:
            pytest.skip(f"accepted {self.finding.fingerprint}: {report.accepted[self.finding.fingerprint]}")
        status = report.comparison.status(self.finding).status
        if status != "caused":
            pytest.skip(f"{status} since the baseline: {self.finding.fingerprint}")
        if self.finding in report.gate.failing:
            raise DatasetCheckFailed(_describe(self.finding))
        warnings.warn(DatasetFindingWarning(_describe(self.finding)), stacklevel=1)


class BadInputItem(_DatasetItem):
    """A baseline that cannot be read: this one item fails with the error line, rather than the whole collection."""

    def __init__(self, *, error: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise DatasetCheckFailed(self.error)


class AccuracyItem(_DatasetItem):
    """Retrain on the dataset and fail when the test accuracy is below --retrain-min-accuracy."""

    def runtest(self) -> None:
        report = _trained_run(self.config).report
        if not report.run.passed:
            summary = (report.directory / "summary.md").read_text(encoding="utf-8")
            raise DatasetCheckFailed(f"{report.run.gate.verdict}\n\n{summary}")


def _describe(finding) -> str:
    from retrain.core.display import printable

    shown = ", ".join(finding.paths[:5]) + (f" and {len(finding.paths) - 5} more" if len(finding.paths) > 5 else "")
    return printable(f"{finding.severity.value}: {finding.message} [{shown}]")


def _require_data(request: pytest.FixtureRequest) -> Path:
    data = _data_dir(request.config)
    if data is None:
        pytest.skip("needs a dataset: pytest --retrain-data DIR (or retrain_data in the ini file)")
    return data


@pytest.fixture(scope="session")
def retrain_dataset(request: pytest.FixtureRequest):
    """The dataset under test, listed as training lists it, with every image's split."""
    from retrain.core.dataset import list_dataset

    data = _require_data(request)
    settings = _settings(request.config)
    return list_dataset(data, settings.split)


@pytest.fixture(scope="session")
def retrain_audit(request: pytest.FixtureRequest):
    """The audit of the dataset (datacheck.findings.AuditReport), shared with the check items."""
    _require_data(request)
    return _audit(request.config)


@pytest.fixture(scope="session")
def retrain_run(request: pytest.FixtureRequest):
    """A run trained on the dataset (retrain.training.run.RunResult), shared with the accuracy item."""
    _require_data(request)
    return _trained_run(request.config)
