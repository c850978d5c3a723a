"""``retrain-ci check``: audit an image-folder dataset, for people (a table) or machines (JSON, Markdown, GitHub)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from datacheck.settings import AuditSettings
from retrain.cli.common import (
    ExecutorOption,
    ProgressBars,
    RayAddressOption,
    collect_garbage_rarely,
    console,
    err_console,
    user_errors,
    warn,
)
from retrain.core.outputs import staged_output
from retrain.core.settings import AcceptedFinding, ModuleSettings, SplitSettings

# The defaults --help shows, read off the dataclass: building one would import every check (and pandas) at start-up.
AUDIT = {f.name: f.default for f in dataclasses.fields(AuditSettings) if f.default is not dataclasses.MISSING}
SPLIT, MODULE = SplitSettings(), ModuleSettings()
# What --report-dir holds: file name -> format.
AUDIT_FILES = {"audit.json": "json", "audit.md": "markdown", "audit.html": "html"}
FailOnOption = Annotated[
    str | None,
    typer.Option(
        "--fail-on",
        metavar="LEVEL",
        show_default=AUDIT["fail_on"],
        help="Exit 1 on a finding at or above: error, warning, never.",
        rich_help_panel="Gate",
    ),
]


def check(  # noqa: PLR0913 (a Typer command declares its options)
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one subfolder of images per class.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="table (for people), json, markdown (pull requests), github (annotations) or html (one page with "
            "thumbnails).",
            rich_help_panel="Outputs",
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", metavar="FILE", help="Write the report to FILE instead of stdout.", rich_help_panel="Outputs"
        ),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            metavar="DIR",
            help="Also write audit.json, audit.md and audit.html into DIR (replaced whole): every format of one audit.",
            rich_help_panel="Outputs",
        ),
    ] = None,
    fail_on: FailOnOption = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Settings file (pyproject.toml or retrain-ci.toml); default: the one here, never one inside DIR.",
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="ID", help="Check id to leave out (repeatable).", rich_help_panel="Checks"),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="ID", help="Run only this check id (repeatable).", rich_help_panel="Checks"),
    ] = None,
    min_images: Annotated[
        int | None,
        typer.Option(
            "--min-images",
            metavar="IMAGES",
            help="Error below this many images in a class.",
            show_default=str(AUDIT["min_images"]),
            min=0,
            rich_help_panel="Checks",
        ),
    ] = None,
    recommended_images: Annotated[
        int | None,
        typer.Option(
            "--recommended-images",
            metavar="IMAGES",
            help="Warning below this many images in a class.",
            show_default=str(AUDIT["recommended_images"]),
            min=0,
            rich_help_panel="Checks",
        ),
    ] = None,
    max_imbalance: Annotated[
        float | None,
        typer.Option(
            "--max-imbalance",
            metavar="RATIO",
            help="Warning when the largest class is this many times a class.",
            show_default=f"{AUDIT['max_imbalance']:g}",
            rich_help_panel="Checks",
        ),
    ] = None,
    near_duplicate_bits: Annotated[
        int | None,
        typer.Option(
            "--near-duplicate-bits",
            metavar="BITS",
            help="Perceptual hashes this close (of 64 bits) are one picture.",
            show_default=str(AUDIT["near_duplicate_bits"]),
            rich_help_panel="Checks",
        ),
    ] = None,
    testing_percentage: Annotated[
        float | None,
        typer.Option(
            "--testing-percentage",
            metavar="PERCENT",
            help="As for train.",
            show_default=f"{SPLIT.testing_percentage:g}",
            min=0.0,
            max=100.0,
            rich_help_panel="Data",
        ),
    ] = None,
    validation_percentage: Annotated[
        float | None,
        typer.Option(
            "--validation-percentage",
            metavar="PERCENT",
            help="As for train.",
            show_default=f"{SPLIT.validation_percentage:g}",
            min=0.0,
            max=100.0,
            rich_help_panel="Data",
        ),
    ] = None,
    bottleneck_dir: Annotated[
        Path | None,
        typer.Option(
            "--bottleneck-dir",
            metavar="DIR",
            help="As for train.",
            show_default=str(MODULE.bottleneck_dir),
            rich_help_panel="Cache and executor",
        ),
    ] = None,
    tfhub_module: Annotated[
        str | None,
        typer.Option(
            "--tfhub-module",
            metavar="MODULE",
            help="As for train.",
            show_default=MODULE.tfhub_module,
            rich_help_panel="Checks",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            metavar="OLD.json",
            help="An earlier `check --format json`: report the files added, removed, changed and moved since, and "
            "each finding as caused by the change, shifted (on untouched files) or unchanged.",
            rich_help_panel="Gate",
        ),
    ] = None,
    fail_on_new: Annotated[
        bool | None,
        typer.Option(
            "--fail-on-new/--fail-on-all",
            help="Gate only on findings the change since --baseline caused (the totals still show).",
            show_default=False,
            rich_help_panel="Gate",
        ),
    ] = None,
    accept: Annotated[
        list[str] | None,
        typer.Option(
            "--accept",
            metavar="FINGERPRINT",
            help="Record a reviewed finding as accepted in the settings file: it never fails a gate (repeatable).",
            rich_help_panel="Gate",
        ),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why --accept's findings are fine.", rich_help_panel="Gate")
    ] = "",
    property_cache: Annotated[
        Path | None,
        typer.Option(
            "--property-cache",
            metavar="DIR",
            help="Where each image's measured properties are cached by content, so a re-audit decodes only new files.",
            show_default="the bottleneck dir",
            rich_help_panel="Cache and executor",
        ),
    ] = None,
    use_bottlenecks: Annotated[
        bool | None,
        typer.Option(
            "--bottlenecks/--no-bottlenecks",
            help="Compute bottlenecks for the checks that find more with them (near_duplicates, split_leakage), as "
            "the default audit does; --no-bottlenecks: they compare pixels alone, without TensorFlow.",
            show_default="--bottlenecks",
            rich_help_panel="Cache and executor",
        ),
    ] = None,
    suspects: Annotated[
        str | None,
        typer.Option(
            "--suspects",
            metavar="WHICH",
            help="Suspected mislabels to report: likely (warnings), or all (the less sure ones too, as notes).",
            show_default="likely",
            rich_help_panel="Checks",
        ),
    ] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="In the table, every finding (by default 5 per check).")
    ] = False,
) -> None:
    """Audit a dataset before training: broken files, duplicates, leaks between splits, suspected mislabels, ..."""
    from datacheck.audit_formats import FORMATS

    if output_format not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    from retrain.app.audit import accept_findings, accept_target, audit_settings, check_audit_outputs, settings_file

    collect_garbage_rarely()
    with user_errors():
        source = settings_file(image_dir, config_file, Path.cwd())
        options = dict(
            fail_on=fail_on,
            skip=_ids(skip),
            only=_ids(only),
            min_images=min_images,
            recommended_images=recommended_images,
            max_imbalance=max_imbalance,
            near_duplicate_bits=near_duplicate_bits,
            testing_percentage=testing_percentage,
            validation_percentage=validation_percentage,
            bottleneck_dir=bottleneck_dir,
            tfhub_module=tfhub_module,
            baseline=baseline,
            fail_on_new=fail_on_new,
            property_cache=property_cache,
            use_bottlenecks=use_bottlenecks,
            mislabel_suspects=suspects,
            executor=executor.value if executor else None,
            ray_address=ray_address,
        )
        settings = audit_settings(source.path, options)
        check_audit_outputs(settings, output, report_dir)
        target = accept_target(source, reason) if accept else None
        if accept:
            accepted = tuple(AcceptedFinding(fingerprint, reason) for fingerprint in accept)
            settings = dataclasses.replace(settings, accepted=settings.accepted + accepted)  # no second read
        report = _audit(image_dir, settings)
        warn(report.warnings)
        if target is not None:
            added = accept_findings(report, accept, reason, target)
            if added:
                err_console.print(
                    f"accepted {len(added)} finding{'s' if len(added) != 1 else ''} in {target}", style="dim"
                )
        if report_dir is not None:
            _write_folder(report, report_dir)
        _write(report, output_format, output, verbose)
    for line in source.lines():  # after the report: a run that ends in an error says that one line only
        err_console.print(line, soft_wrap=True, markup=False)
    raise typer.Exit(0 if report.gate.passed else 1)


def _ids(values: list[str] | None) -> tuple[str, ...] | None:
    """Check ids from repeated and comma-separated options; None when none were given."""
    return tuple(i for value in values or () for i in value.split(",")) or None


def _audit(image_dir: Path, settings: AuditSettings):
    """The audit job with progress bars."""
    from retrain.app.audit import audit_job

    bars = ProgressBars()
    try:
        return audit_job(image_dir, settings, bars.hooks())
    finally:
        bars.stop()


def _write_folder(report, report_dir: Path) -> None:
    """The audit for machines (the next audit's baseline), pull requests and people, replaced together."""
    with staged_output(report_dir, "audit folder") as staging:
        staging.mkdir()
        for name, output_format in AUDIT_FILES.items():
            (staging / name).write_text(_rendered(report, output_format), encoding="utf-8")


def _rendered(report, output_format: str) -> str:
    from datacheck.audit_formats import render_github, render_markdown
    from datacheck.audit_json import render_json
    from datacheck.html_report import render_html

    if output_format == "html":
        return render_html(report)
    return {"json": render_json, "markdown": render_markdown, "github": render_github}[output_format](report)


def _write(report, output_format: str, output: Path | None, verbose: bool) -> None:
    """To stdout, or staged into FILE so that a failed write leaves the old file as it was."""
    from datacheck.audit_formats import EXAMPLES, render_table

    if output_format == "table":
        table = render_table(report, None if verbose else EXAMPLES)
        if output is None:
            console.print(table, crop=False)  # a path longer than the console stays whole
            return
        buffer = Console(file=io.StringIO(), width=160)
        buffer.print(table, crop=False)
        text = buffer.file.getvalue()
    else:
        text = _rendered(report, output_format)
    if output is None:
        typer.echo(text, nl=False)
        return
    with staged_output(output, "report") as staging:
        staging.write_text(text, encoding="utf-8")
