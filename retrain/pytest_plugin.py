"""pytest plugin: ``pytest --retrain-data DIR`` makes each dataset finding a test of its own, plus an accuracy gate.

Registered through the ``pytest11`` entry point. Without ``--retrain-data`` (or ``retrain_data`` in the ini file) it
adds nothing, and it never imports TensorFlow while collecting unless the audit's checks need bottlenecks.

The audit runs while collecting, since each finding must be known to be its own test (and its own junit testcase);
training runs in the setup of ``datacheck::min_accuracy``, through the ``retrain_run`` fixture. The datacheck items run
before the user's tests, so a user's test that asks for ``retrain_audit`` or ``retrain_run`` finds them done.
docs/pytest.md is the reference.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from retrain.core.settings import EXECUTORS

if TYPE_CHECKING:
    from datacheck.findings import AuditReport, Finding
    from datacheck.settings import AuditSettings
    from retrain.core.run_report import RunReport

_STATE = pytest.StashKey[dict[str, Any]]()
# A finding names at most this many of its files in its test's report (a group of copies can name dozens).
SHOWN_PATHS = 5


class DatasetCheckFailed(Exception):
    """A finding at or above the fail-on severity, or a gate that failed; the message says what and what to do."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("retrain-ci", "dataset checks and the accuracy gate of retrain-ci")
    group.addoption("--retrain-data", metavar="DIR", help="image folder to audit; each finding becomes a test")
    group.addoption(
        "--retrain-min-accuracy",
        type=float,
        metavar="X",
        help="also retrain on the dataset (reusing the bottleneck cache) and fail below this test accuracy",
    )
    group.addoption(
        "--retrain-fail-on",
        choices=("error", "warning", "never"),
        help="severity at which a finding's test fails; those below are xfailed "
        "(default: the audit settings' fail-on, error)",
    )
    group.addoption(
        "--retrain-baseline",
        metavar="OLD.json",
        help="an earlier `retrain-ci check --format json`: only findings new since then are judged; "
        "each unchanged one is reported once as skipped, with its fingerprint",
    )
    group.addoption(
        "--retrain-output",
        metavar="DIR",
        help="folder for the trained model and its report (default: retrain-ci under pytest's basetemp)",
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
    parser.addini("retrain_output", "as --retrain-output (relative to the ini file's folder)")


def _path_option(config: pytest.Config, name: str) -> Path | None:
    """An option as given, else the ini value relative to the ini file's folder (the rootdir)."""
    if config.getoption(name):
        return Path(config.getoption(name))
    value = config.getini(name)
    return config.rootpath / value if value else None


def _data_dir(config: pytest.Config) -> Path | None:
    return _path_option(config, "retrain_data")


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


def _settings(config: pytest.Config) -> AuditSettings:
    """The audit's settings, resolved as ``retrain-ci check`` resolves them, with this plugin's options."""
    state = _state(config)
    if "settings" not in state:
        from retrain.app.audit import audit_settings

        options = {
            "fail_on": config.getoption("retrain_fail_on"),
            "baseline": _path_option(config, "retrain_baseline"),
            "executor": config.getoption("retrain_executor"),
            "ray_address": config.getoption("retrain_ray_address"),
        }
        state["settings"] = audit_settings(_settings_file(config), options)
    return state["settings"]


def _audit(config: pytest.Config) -> AuditReport:
    state = _state(config)
    if "audit" not in state:
        from retrain.app.audit import audit_job

        state["audit"] = audit_job(_data_dir(config), _settings(config))
    return state["audit"]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Before the test files, collect the dataset: its items then count, select (-k, -m) and report like tests, and
    run first, so that the audit and the run they share are done before any user's test asks for them."""
    report = yield
    if isinstance(collector, pytest.Session) and _data_dir(collector.config) is not None and report.passed:
        # At the rootdir, not the dataset: pytest loads the conftest.py files of a node's folders, and a dataset (a pull
        # request's) is data, never code.
        dataset = DatasetCollector.from_parent(collector, path=collector.path, name="datacheck", nodeid="datacheck")
        report.result.insert(0, dataset)
    return report


class DatasetCollector(pytest.Module):
    """``datacheck::<fingerprint>`` for every finding, ``datacheck::<check id>`` for every check that found nothing,
    and ``datacheck::min_accuracy`` when asked for. Audits the dataset (once per session) to know the findings.

    With a baseline, only the findings the change caused are judged; the others are skipped, by fingerprint, so the
    items agree with ``retrain-ci check --baseline OLD.json --fail-on-new``.

    A module with no Python in it, as pytest's doctest text files are: so that fixtures of every scope reach its items
    (a user's module-scoped autouse fixture too).
    """

    obj = None

    def collect(self) -> list[pytest.Item]:
        from retrain.core.errors import InputError

        try:
            _settings(self.config)
        except InputError as error:  # one line, as the CLI says it
            raise self.CollectError(f"error: {error}") from None
        try:
            report = _audit(self.config)
        except InputError as error:  # one failing item with the CLI's one line; the user's own tests still run
            items: list[pytest.Item] = [BadInputItem.from_parent(self, name="audit", error=f"error: {error}")]
        else:
            items = _dataset_items(self, report)
        if _min_accuracy(self.config) is not None:
            items.append(AccuracyItem.from_parent(self, name="min_accuracy", callobj=_judge_run))
        return items


def _dataset_items(parent: DatasetCollector, report: AuditReport) -> list[pytest.Item]:
    """Check by check, in report order: an item per finding, or one passing item for a check that found nothing."""
    by_check: dict[str, list[Finding]] = {check: [] for check in report.checks_run}
    for finding in report.findings:
        by_check.setdefault(finding.check, []).append(finding)
    items: list[pytest.Item] = []
    for check, findings in by_check.items():
        if not findings:
            items.append(CleanCheckItem.from_parent(parent, name=check, callobj=_judge_clean))
        for finding in findings:
            judge = functools.partial(_judge_finding, finding)
            items.append(FindingItem.from_parent(parent, name=finding.fingerprint, callobj=judge, finding=finding))
    return items


class _DatasetItem(pytest.Function):
    """An item of the dataset: a test function the plugin defines (so that it asks for the session's fixtures, and
    their time is its setup's), reported by what it judges rather than by where that function is."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]):
        if isinstance(excinfo.value, DatasetCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.location_path(), None, self.nodeid

    def location_path(self) -> Path:
        """The file (or folder) that a report of this item points at: the dataset's."""
        return _data_dir(self.config)


class CleanCheckItem(_DatasetItem):
    """A check that found nothing: it passes."""


class FindingItem(_DatasetItem):
    """One finding: fails at or above fail-on, is xfailed below it; with a baseline, one the change did not cause (or
    one accepted in the settings) is skipped. junit XML records its check, fingerprint, severity and files."""

    def __init__(self, *, finding: Finding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finding = finding
        self.user_properties.extend(
            [("check", finding.check), ("fingerprint", finding.fingerprint), ("severity", finding.severity.value)]
        )
        self.user_properties.extend(("path", path) for path in finding.paths)

    def location_path(self) -> Path:
        return super().location_path() / self.finding.paths[0] if self.finding.paths else super().location_path()


class BadInputItem(_DatasetItem):
    """An audit that cannot run (a baseline that cannot be read): this one item fails with the error line, rather
    than the whole collection."""

    def __init__(self, *, error: str, **kwargs: Any) -> None:
        super().__init__(callobj=functools.partial(_fail, error), **kwargs)


class AccuracyItem(_DatasetItem):
    """Retrain on the dataset (in this item's setup, through ``retrain_run``) and fail when the gate fails."""


def _judge_clean() -> None:
    """A check without findings passes."""


def _fail(error: str) -> None:
    raise DatasetCheckFailed(error)


def _judge_finding(finding: Finding, retrain_audit: AuditReport) -> None:
    if finding.fingerprint in retrain_audit.accepted:
        pytest.skip(f"{_files(finding)}: accepted in the settings: {retrain_audit.accepted[finding.fingerprint]}")
    if retrain_audit.comparison is not None:
        status = retrain_audit.comparison.status(finding).status
        if status != "caused":
            pytest.skip(f"{status} since the baseline: {finding.fingerprint}")
    if finding in retrain_audit.gate.failing:
        raise DatasetCheckFailed(_failure_text(finding, retrain_audit))
    pytest.xfail(
        f"{_files(finding)}: {finding.severity.noun}, below --fail-on {retrain_audit.fail_on}: {_message(finding)}"
    )


def _judge_run(retrain_run: RunReport, retrain_output: Path) -> None:
    if not retrain_run.passed:
        raise DatasetCheckFailed(_gate_text(retrain_run, retrain_output))


def _files(finding: Finding) -> str:
    from retrain.core.display import printable

    shown = ", ".join(finding.paths[:SHOWN_PATHS]) or "the dataset"
    more = len(finding.paths) - SHOWN_PATHS
    return printable(shown + (f" and {more} more" if more > 0 else ""))


def _message(finding: Finding) -> str:
    from retrain.core.display import printable

    return printable(finding.message)


def _failure_text(finding: Finding, report: AuditReport) -> str:
    """The files and the advice first (the line the short summary and junit's message show), then how to accept it."""
    from retrain.core.display import printable

    return "\n".join(
        [
            f"{_files(finding)}: {_message(finding)}",
            f"{finding.severity.noun} of {finding.check}, failing --fail-on {report.fail_on}",
            f"to accept it: retrain-ci check {shlex.quote(printable(report.dataset))} --accept {finding.fingerprint} "
            "--reason WHY",
        ]
    )


def _gate_text(run: RunReport, output: Path) -> str:
    """The gate's verdict, the counts behind it and where the report is: a few lines, not the report itself."""
    right = round(run.test_accuracy * run.test_images)
    lines = [
        f"accuracy gate {run.gate.verdict}",
        f"test accuracy {run.test_accuracy:.1%}: {right} of {run.test_images} test images right, "
        f"{len(run.per_class)} classes",
    ]
    worst = run.worst_classes()
    if worst:
        lines.append("lowest recall: " + ", ".join(f"{label} {recall:.1%}" for label, recall in worst))
    lines.extend(f"note: {warning}" for warning in run.gate.warnings)
    lines.append(f"report: {output / 'report' / 'report.html'}")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A skipped finding points at its file (at line 1: junit XML writes the line even when there is none), not at the
    line of this plugin that skipped it."""
    report = yield
    if isinstance(item, FindingItem) and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.location_path()), 1, report.longrepr[2])
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Which test's setup is running, for the summary to say whose setup the training took."""
    _state(item.config)["setting_up"] = item.nodeid
    return (yield)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Where the time went and where the model and its report are."""
    state = config.stash.get(_STATE, {})
    audit, run = state.get("audit"), state.get("run")
    if audit is None and run is None:
        return
    from datacheck.findings import Severity

    terminalreporter.write_sep("-", "retrain-ci")
    if audit is not None:
        counts = ", ".join(_counted(n, Severity(severity).noun) for severity, n in audit.counts().items() if n)
        terminalreporter.write_line(
            f"audit of {audit.dataset}: {audit.images} images, {counts or 'no findings'}, {audit.seconds:.1f} s "
            "(while collecting: each finding is a test)"
        )
    if run is not None:
        report, output, trained_in = run
        took = f", {report.durations.total:.1f} s" if report.durations else ""
        terminalreporter.write_line(
            f"training: test accuracy {report.test_accuracy:.1%}, gate {report.gate.verdict}{took} "
            f"(in the setup of {trained_in})"
        )
        terminalreporter.write_line(f"model and report: {output} (open {output / 'report' / 'report.html'})")


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _require_data(request: pytest.FixtureRequest) -> Path:
    data = _data_dir(request.config)
    if data is None:
        pytest.skip("needs a dataset: pytest --retrain-data DIR (or retrain_data in the ini file)")
    return data


@pytest.fixture(scope="session")
def retrain_dataset(request: pytest.FixtureRequest):
    """The dataset under test (retrain.core.dataset.Dataset), listed as training lists it: ``labels``, and
    ``split("training" | "validation" | "testing")`` for the images of each split."""
    from retrain.core.dataset import list_dataset

    data = _require_data(request)
    return list_dataset(data, _settings(request.config).split)


@pytest.fixture(scope="session")
def retrain_audit(request: pytest.FixtureRequest) -> AuditReport:
    """The audit of --retrain-data (datacheck.findings.AuditReport), the one the datacheck items judge: ``findings``
    (each with check, severity, paths, message, fingerprint), ``counts()`` by severity, ``by_check()``, ``gate``
    (passed, verdict, failing) and, with --retrain-baseline, ``comparison``. Done once per session, while collecting."""
    _require_data(request)
    return _audit(request.config)


@pytest.fixture(scope="session")
def retrain_output(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``retrain_run`` writes the model and its report to: --retrain-output, else the ini's
    retrain_output, else retrain-ci under pytest's basetemp (printed at the end of the session)."""
    return _path_option(request.config, "retrain_output") or tmp_path_factory.getbasetemp() / "retrain-ci"


@pytest.fixture(scope="session")
def retrain_run(request: pytest.FixtureRequest, retrain_output: Path) -> RunReport:
    """Train once per session on --retrain-data, with the audit's splits, module and bottleneck cache, and return the
    run's report (retrain.core.run_report.RunReport): ``test_accuracy``, ``test_images``, ``per_class`` (precision,
    recall, f1, support), ``gate`` (passed, failures) and ``durations``. The saved model, report.html and
    metrics.json are in ``retrain_output``."""
    from retrain.app.training import gate_settings, train_job
    from retrain.core.settings import OutputPaths, RunSettings

    data = _require_data(request)
    settings = _settings(request.config)
    result = train_job(
        RunSettings(
            data,
            module=settings.module,
            split=settings.split,
            execution=settings.execution,
            outputs=OutputPaths.under(retrain_output),
            gate=gate_settings(_settings_file(request.config), None, min_accuracy=_min_accuracy(request.config)),
        )
    )
    state = _state(request.config)
    state["run"] = (result.run, retrain_output, state.get("setting_up", "a fixture"))
    return result.run
