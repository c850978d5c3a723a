"""``retrain-ci gate``: CI's whole job in one process: ``check`` then ``train``, each gated, against a baseline folder.

One process rather than two: the two commands import the same libraries (scikit-learn and SciPy alone take about two
seconds) and read the same listing and caches, which on a pull request's warm caches is most of what a second
process costs (issue 29).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retrain.cli.check import FailOnOption, check
from retrain.cli.common import (
    ExecutorOption,
    MaxClassRegressionOption,
    MaxRegressionOption,
    MinAccuracyOption,
    MinClassRecallOption,
    RayAddressOption,
    console,
    exit_code_of,
)
from retrain.cli.train import MODULE, train
from retrain.core.display import printable
from retrain.core.settings import FINE_TUNE_MODULE

# Where each output goes under --output-dir; the baseline folder is laid out alike (the main branch's outputs, kept).
AUDIT_FILE, AUDIT_FOLDER, REPORT_FOLDER = "audit.json", "audit", "report"


def gate(  # noqa: PLR0913 (a Typer command declares its options)
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one subfolder of images per class.")],
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            metavar="DIR",
            help="The main branch's gate outputs: audit.json (its audit) and report/ (its run), each used when there.",
            rich_help_panel="Gate",
        ),
    ] = None,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            metavar="DIR",
            help="Where the audit (audit/) and the run's report (report/) go, and any model --export asks for.",
            rich_help_panel="Outputs",
        ),
    ] = Path("retrain-ci-run"),
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="The audit's findings as a table (for people) or github (annotations on the files).",
            rich_help_panel="Outputs",
        ),
    ] = "table",
    export: Annotated[
        str,
        typer.Option(
            "--export",
            metavar="FORMATS",
            help="Models to write: none (a gate needs the numbers) or saved_model,frozen_graph.",
            rich_help_panel="Outputs",
        ),
    ] = "none",
    fail_on: FailOnOption = None,
    fail_on_new: Annotated[
        bool | None,
        typer.Option(
            "--fail-on-new/--fail-on-all",
            help="Gate only on the findings the change since the baseline's audit caused (the totals still show).",
            show_default="--fail-on-new with a baseline audit",
            rich_help_panel="Gate",
        ),
    ] = None,
    min_accuracy: MinAccuracyOption = None,
    min_class_recall: MinClassRecallOption = None,
    max_regression: MaxRegressionOption = None,
    max_class_regression: MaxClassRegressionOption = None,
    tfhub_module: Annotated[
        str | None,
        typer.Option(
            "--tfhub-module",
            metavar="MODULE",
            help="As for train (the audit uses the bundled default unless one is named).",
            show_default=f"{MODULE.tfhub_module}; {FINE_TUNE_MODULE} with --fine-tune",
            rich_help_panel="Training",
        ),
    ] = None,
    fine_tune: Annotated[bool, typer.Option("--fine-tune", help="As for train.", rich_help_panel="Training")] = False,
    random_seed: Annotated[
        int,
        typer.Option("--random-seed", metavar="SEED", help="As for train.", min=0, rich_help_panel="Training"),
    ] = 0,
    bottleneck_dir: Annotated[
        Path,
        typer.Option("--bottleneck-dir", metavar="DIR", help="As for train.", rich_help_panel="Cache and executor"),
    ] = MODULE.bottleneck_dir,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Audit the dataset, retrain on it and gate on both, against the main branch's outputs: a pull request's check."""

    def say(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False)

    if output_format not in ("table", "github"):
        raise typer.BadParameter("must be table or github", param_hint="--format")
    baseline_audit = baseline / AUDIT_FILE if baseline is not None else None
    baseline_run = baseline / REPORT_FOLDER if baseline is not None else None
    notice = "::notice::" if output_format == "github" else ""
    if baseline is not None and not baseline_audit.is_file():
        say(f"{notice}no baseline audit at {printable(baseline_audit)}; every finding is judged")
        baseline_audit = None
    if baseline is not None and not (baseline_run / "metrics.json").is_file():
        say(f"{notice}no baseline report at {printable(baseline_run)}; no regression gate")
        baseline_run = None
    audit_folder = output_dir / AUDIT_FOLDER
    shared = {"bottleneck_dir": bottleneck_dir, "executor": executor, "ray_address": ray_address}
    audited = exit_code_of(
        lambda: check(
            image_dir,
            output_format=output_format,
            report_dir=audit_folder,
            fail_on=fail_on,
            tfhub_module=tfhub_module,
            baseline=baseline_audit,
            fail_on_new=fail_on_new if fail_on_new is not None or baseline_audit is None else True,
            **shared,
        )
    )
    if audited == 2:  # bad input: nothing to train on
        raise typer.Exit(2)
    console.print()
    trained = exit_code_of(
        lambda: train(
            image_dir,
            tfhub_module=tfhub_module,
            fine_tune=fine_tune,
            random_seed=random_seed,
            output_dir=output_dir,
            export=export,
            min_accuracy=min_accuracy,
            min_class_recall=min_class_recall,
            baseline=baseline_run,
            audit=audit_folder / AUDIT_FILE,
            max_regression=max_regression,
            max_class_regression=max_class_regression,
            **shared,
        )
    )
    raise typer.Exit(max(audited, trained))
