"""What every command shares: consoles, the one-line error rule, progress bars from hooks, and the gate's options."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.gate import GateResult
from retrain.core.hooks import Hooks
from retrain.core.settings import ExecutionSettings, GateSettings
from retrain.training.executors import EXECUTORS

if TYPE_CHECKING:  # pandas stays out of the command line's start-up
    from retrain.core.run_report import RunReport
    from retrain.reports import Report

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
GATE = GateSettings()
EXECUTION = ExecutionSettings()
Executor = Enum("Executor", {name: name for name in EXECUTORS}, type=str)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people, json for machines.", rich_help_panel="Outputs")
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input is one line on stderr and exit code 2, never a traceback (names in it escaped, so one line)."""
    try:
        yield
    except InputError as error:
        typer.echo(f"error: {printable(error)}", err=True)
        raise typer.Exit(2) from None


def warn(lines: list[str]) -> None:
    """The library's warnings (e.g. a damaged cache shard it ignored), one ``warning:`` line each on stderr."""
    for line in lines:
        err_console.print(f"warning: {printable(line)}", soft_wrap=True, markup=False)


def warn_skipped(skipped: list[tuple[Path, str]]) -> None:
    """One warning line per file that could not be read; the run goes on without it."""
    for path, reason in skipped:
        err_console.print(
            f"warning: skipped unreadable image {printable(path)}: {printable(reason)}", soft_wrap=True, markup=False
        )


class ProgressBars:
    """Hooks' progress as rich bars on stderr: one bar per pass of a stage, none for a pass with nothing to do."""

    def __init__(self, hidden_stages: tuple[str, ...] = ()) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.hidden_stages = hidden_stages
        self.tasks: dict[str, int] = {}

    def update(self, stage: str, done: int, total: int) -> None:
        if stage in self.hidden_stages:
            return
        if stage not in self.tasks or done == 0:
            if total == 0:
                return  # e.g. every bottleneck already cached: no bar for nothing
            self.progress.start()
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done)
        if done == total:
            self.progress.stop()
            self.progress.remove_task(self.tasks.pop(stage))  # it stays printed; a later pass draws a bar of its own

    def hooks(self, **others) -> Hooks:
        return Hooks(on_progress=self.update, **others)

    def stop(self) -> None:
        if self.progress.live.is_started:  # stopping a bar never started would print an empty line
            self.progress.stop()


MinAccuracyOption = Annotated[
    float | None,
    typer.Option(
        "--min-accuracy",
        metavar="FRACTION",
        help="Exit 1 when accuracy is below this.",
        min=0.0,
        max=1.0,
        rich_help_panel="Gate",
    ),
]
MinClassRecallOption = Annotated[
    float | None,
    typer.Option(
        "--min-class-recall",
        metavar="FRACTION",
        help="Exit 1 when any class's recall is below this.",
        min=0.0,
        max=1.0,
        rich_help_panel="Gate",
    ),
]
BaselineOption = Annotated[
    Path | None,
    typer.Option(
        "--baseline",
        metavar="RUN",
        help="An earlier run to compare with and gate against (e.g. the main branch's): its --output-dir, report "
        "folder or metrics.json (with predictions.csv beside it: flipped test images too).",
        rich_help_panel="Gate",
    ),
]
MaxRegressionOption = Annotated[
    float | None,
    typer.Option(
        "--max-regression",
        metavar="FRACTION",
        help="Largest accuracy drop allowed against --baseline, on the test photos both runs share under one class.",
        min=0.0,
        show_default=str(GATE.max_regression),
        rich_help_panel="Gate",
    ),
]
MaxClassRegressionOption = Annotated[
    float | None,
    typer.Option(
        "--max-class-regression",
        metavar="FRACTION",
        help="Largest drop of any class's recall allowed against --baseline (same photos, as above).",
        min=0.0,
        max=1.0,
        show_default="not gated",
        rich_help_panel="Gate",
    ),
]
MinTestImagesOption = Annotated[
    int | None,
    typer.Option(
        "--min-test-images",
        metavar="IMAGES",
        help="Exit 1 when the test set has fewer images than this (too few to tell a threshold from the score).",
        min=0,
        show_default="no floor",
        rich_help_panel="Gate",
    ),
]
MinClassSupportOption = Annotated[
    int | None,
    typer.Option(
        "--min-class-support",
        metavar="IMAGES",
        help="Classes with fewer test images than this (in either run) are reported, not gated per class.",
        min=0,
        show_default=str(GATE.min_class_support),
        rich_help_panel="Gate",
    ),
]


ExecutorOption = Annotated[
    Executor | None,
    typer.Option(
        "--executor",
        help="Where the per-image work runs: local (this process) or ray (a Ray cluster; pip install "
        "'retrain-ci\\[ray]').",
        show_default=EXECUTION.executor,
        rich_help_panel="Cache and executor",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="With --executor ray: local starts Ray here; auto or ray://HOST:PORT joins a running cluster.",
        show_default=EXECUTION.ray_address,
        rich_help_panel="Cache and executor",
    ),
]


def exit_on_gate(gate: GateResult) -> None:
    """After every output is written: exit 1 with one line when the gate failed."""
    if not gate.passed:
        typer.echo(gate.verdict, err=True)
        raise typer.Exit(1)


def exit_code_of(command: Callable[[], None]) -> int:
    """Run a command that ends by raising ``typer.Exit`` (its gate's verdict), and return its exit code: for a command
    that runs two (``demo``, ``gate``) and exits with the worse."""
    try:
        command()
    except typer.Exit as verdict:
        return verdict.exit_code
    return 0


def print_story(run: RunReport) -> None:
    """The run's closing lines, in the summary's order: what changed in the data, what the model did on the photos it
    had already seen, the test accuracy with its interval, the gate's verdict (warnings on stderr)."""
    from retrain.reports import story

    for key, text in story(run):
        if key == "Warning":
            warn([text])
        elif key != "Gate" or run.gated:
            console.print(f"{key}: {printable(text)}", soft_wrap=True, markup=False)


def print_report_summary(report: Report) -> None:
    """Per-class table, top confusions, the story (``print_story``) and where the report is."""
    from retrain.reports import recall_interval_cell, score_cells

    table = Table("class", "precision", "recall", "95% interval", "F1", "images", title="Test set, per class")
    for label, scores in report.run.per_class.items():
        precision, recall, f1 = score_cells(scores)
        table.add_row(Text(printable(label)), precision, recall, recall_interval_cell(scores), f1, str(scores.support))
    console.print(table)
    confusions = report.top_confusions()
    if confusions:
        listed = ", ".join(f"{true} -> {predicted} ({count})" for true, predicted, count in confusions)
        console.print(f"Top confusions: {printable(listed)}", soft_wrap=True, markup=False)
    print_story(report.run)
    console.print(f"Report: {printable(report.directory / 'report.html')}", soft_wrap=True, markup=False)


def collect_garbage_rarely() -> None:
    """A run or an audit keeps its images, keys and vectors to the end, and the cyclic collector's default thresholds
    re-scanned that heap 17 times in a warm run at 100,000 photos (4.6 s): collect rarely, as mypy does for its own."""
    gc.set_threshold(200_000, 30, 30)
