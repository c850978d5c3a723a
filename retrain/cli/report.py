"""``retrain-ci report``: render an earlier run's report again, for people or a GitHub step summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from retrain.cli.common import print_report_summary, user_errors
from retrain.core.errors import InputError


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="An earlier run's --output-dir or --report-dir.")],
    print_summary: Annotated[bool, typer.Option("--print-summary", help="Print summary.md to stdout.")] = False,
    github_step_summary: Annotated[
        bool, typer.Option("--github-step-summary", help="Append summary.md to the file $GITHUB_STEP_SUMMARY names.")
    ] = False,
    audit: Annotated[
        Path | None,
        typer.Option(
            "--audit",
            metavar="AUDIT.json",
            help="A `check --baseline ... --format json` of the run's dataset: its change line leads the summary.",
        ),
    ] = None,
) -> None:
    """Render an earlier run's report again (HTML, Markdown, CSV, PNG) from the predictions it kept."""
    from retrain.app.audit import audit_links
    from retrain.reports import rerender

    with user_errors():
        rendered = rerender(run_dir, audit_links(audit) if audit is not None else None)
        summary = (rendered.directory / "summary.md").read_text(encoding="utf-8")
        if github_step_summary:
            target = os.environ.get("GITHUB_STEP_SUMMARY")
            if not target:
                raise InputError("--github-step-summary: GITHUB_STEP_SUMMARY is not set (it is, inside GitHub Actions)")
            try:
                with open(target, "a", encoding="utf-8") as f:
                    f.write(summary)
            except OSError as error:
                raise InputError(f"cannot append to $GITHUB_STEP_SUMMARY {target} ({error.strerror})") from None
    if print_summary:
        typer.echo(summary, nl=False)
    else:
        print_report_summary(rendered)
