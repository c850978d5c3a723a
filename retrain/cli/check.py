"""``retrain-ci check``: audit an image-folder dataset, for people (a table) or machines (JSON, Markdown, GitHub)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from datacheck.audit_json import load_audit_baseline
from datacheck.baseline import Baseline
from datacheck.settings import AuditSettings
from retrain.cli.common import (
    ExecutorOption,
    ProgressBars,
    RayAddressOption,
    console,
    err_console,
    import_tensorflow_quietly,
    user_errors,
    warn,
)
from retrain.core.errors import InputError
from retrain.core.outputs import check_replaceable, check_writable, staged_output
from retrain.core.settings import AcceptedFinding
from retrain.core.settings_file import CONFIG_FILE, find_config_file, load_settings, record_accepted

AUDIT = AuditSettings()
# What --report-dir holds: file name -> format.
AUDIT_FILES = {"audit.json": "json", "audit.md": "markdown", "audit.html": "html"}


def check(  # noqa: PLR0913 (a Typer command declares its options)
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one subfolder of images per class.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="table (for people), json, markdown (pull requests), github (annotations) or html (one page with "
            "thumbnails).",
        ),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            metavar="DIR",
            help="Also write audit.json, audit.md and audit.html into DIR (replaced whole): every format of one audit.",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar="LEVEL",
            show_default=AUDIT.fail_on,
            help="Exit 1 on a finding at or above: error, warning, never.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Settings file (pyproject.toml or retrain-ci.toml); default: the first in DIR, then here.",
        ),
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", metavar="ID", help="Check id to leave out (repeatable).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", metavar="ID", help="Run only this check id (repeatable).")
    ] = None,
    min_images: Annotated[
        int | None,
        typer.Option(
            "--min-images", help="Error below this many images in a class.", show_default=str(AUDIT.min_images), min=0
        ),
    ] = None,
    recommended_images: Annotated[
        int | None,
        typer.Option(
            "--recommended-images",
            help="Warning below this many images in a class.",
            show_default=str(AUDIT.recommended_images),
            min=0,
        ),
    ] = None,
    max_imbalance: Annotated[
        float | None,
        typer.Option(
            "--max-imbalance",
            help="Warning when the largest class is this many times a class.",
            show_default=f"{AUDIT.max_imbalance:g}",
        ),
    ] = None,
    near_duplicate_bits: Annotated[
        int | None,
        typer.Option(
            "--near-duplicate-bits",
            help="Perceptual hashes this close (of 64 bits) are one picture.",
            show_default=str(AUDIT.near_duplicate_bits),
        ),
    ] = None,
    testing_percentage: Annotated[
        float | None,
        typer.Option(
            "--testing-percentage",
            help="As for train.",
            show_default=f"{AUDIT.split.testing_percentage:g}",
            min=0.0,
            max=100.0,
        ),
    ] = None,
    validation_percentage: Annotated[
        float | None,
        typer.Option(
            "--validation-percentage",
            help="As for train.",
            show_default=f"{AUDIT.split.validation_percentage:g}",
            min=0.0,
            max=100.0,
        ),
    ] = None,
    bottleneck_dir: Annotated[
        Path | None,
        typer.Option("--bottleneck-dir", help="As for train.", show_default=str(AUDIT.module.bottleneck_dir)),
    ] = None,
    tfhub_module: Annotated[
        str | None, typer.Option("--tfhub-module", help="As for train.", show_default=AUDIT.module.tfhub_module)
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            metavar="OLD.json",
            help="An earlier `check --format json`: report the files added, removed, changed and moved since, and "
            "each finding as new, changed or unchanged.",
        ),
    ] = None,
    fail_on_new: Annotated[
        bool | None,
        typer.Option(
            "--fail-on-new/--fail-on-all",
            help="Gate only on findings new since --baseline (the totals still show).",
            show_default=False,
        ),
    ] = None,
    accept: Annotated[
        list[str] | None,
        typer.Option(
            "--accept",
            metavar="FINGERPRINT",
            help="Record a reviewed finding as accepted in the settings file: it never fails a gate (repeatable).",
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why --accept's findings are fine.")] = "",
    property_cache: Annotated[
        Path | None,
        typer.Option(
            "--property-cache",
            metavar="DIR",
            help="Where each image's measured properties are cached by content, so a re-audit decodes only new files.",
            show_default="the bottleneck dir",
        ),
    ] = None,
    use_bottlenecks: Annotated[
        bool | None,
        typer.Option(
            "--bottlenecks/--no-bottlenecks",
            help="Compute bottlenecks for the checks that find more with them (near_duplicates, split_leakage), as "
            "the default audit does; --no-bottlenecks: they compare pixels alone, without TensorFlow.",
            show_default="--bottlenecks",
        ),
    ] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Audit a dataset before training: broken files, duplicates, leaks between splits, suspected mislabels, ..."""
    from datacheck.audit_formats import FORMATS

    if output_format not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    with user_errors():
        settings_path = config_file or find_config_file(image_dir, Path.cwd())
        settings = load_settings(settings_path).replace(
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
            executor=executor.value if executor else None,
            ray_address=ray_address,
        )
        if settings.fail_on_new and settings.baseline is None:
            raise InputError("--fail-on-new needs --baseline: an earlier `retrain-ci check --format json`")
        old = load_audit_baseline(settings.baseline) if settings.baseline is not None else None
        _check_outputs(settings, output, report_dir)
        _connect_executor(settings)
        if accept:
            settings = settings.replace(
                accepted=settings.accepted + tuple(AcceptedFinding(fingerprint, reason) for fingerprint in accept)
            )
        report = _audit(image_dir, settings, old)
        warn(report.warnings)
        if accept:
            _record(report, accept, reason, settings_path or Path.cwd() / CONFIG_FILE)
        if report_dir is not None:
            _write_folder(report, report_dir)
        _write(report, output_format, output)
    raise typer.Exit(0 if report.gate.passed else 1)


def _record(report, fingerprints: list[str], reason: str, settings_path: Path) -> None:
    """Only fingerprints of this audit's findings are recorded: a typo would otherwise accept nothing, silently."""
    found = {finding.fingerprint for finding in report.findings}
    unknown = [fingerprint for fingerprint in fingerprints if fingerprint not in found]
    if unknown:
        raise InputError(f"no finding of this audit has fingerprint {unknown[0]!r}; `--format json` lists them")
    added = record_accepted(settings_path, fingerprints, reason)
    if added:
        err_console.print(
            f"accepted {len(added)} finding{'s' if len(added) != 1 else ''} in {settings_path}", style="dim"
        )


def _ids(values: list[str] | None) -> tuple[str, ...] | None:
    """Check ids from repeated and comma-separated options; None when none were given."""
    return tuple(i for value in values or () for i in value.split(",")) or None


def _check_outputs(settings: AuditSettings, output: Path | None, report_dir: Path | None) -> None:
    """Before any image is decoded: the report file and folder, the property cache and, when a check needs
    bottlenecks, their cache are writable."""
    from datacheck.properties import property_cache
    from datacheck.registry import wants_bottlenecks

    if output is not None:
        if not output.parent.is_dir():
            raise InputError(f"cannot write the report to {output}: folder {output.parent} does not exist")
        check_writable(output, "report", folder=False)
    if report_dir is not None:
        check_replaceable(report_dir, "audit folder")
    if wants_bottlenecks(settings):
        check_writable(settings.module.bottleneck_dir, "bottleneck cache", folder=True)
    check_writable(property_cache(settings).directory, "property cache", folder=True)  # under it by default


def _connect_executor(settings: AuditSettings) -> None:
    """Before any image is decoded: with --executor ray, Ray is installed and reachable, or one error line says so."""
    if settings.execution.executor == "ray":
        from retrain.training.executors import connect

        connect(settings.execution.ray_address)


def _audit(image_dir: Path, settings: AuditSettings, baseline: Baseline | None):
    """The audit with progress bars; the training engine (and TensorFlow) only when the checks want bottlenecks."""
    from datacheck.audit import audit_dataset
    from datacheck.registry import wants_bottlenecks
    from retrain.training.executors import per_image_map

    source = None
    if wants_bottlenecks(settings):
        import_tensorflow_quietly()
        from retrain.training.bottlenecks import bottleneck_source

        source = bottleneck_source(settings.module, settings.execution)
    bars = ProgressBars()
    try:
        return audit_dataset(
            image_dir,
            settings,
            hooks=bars.hooks(),
            bottlenecks=source,
            baseline=baseline,
            per_image=per_image_map(settings.execution),
        )
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


def _write(report, output_format: str, output: Path | None) -> None:
    """To stdout, or staged into FILE so that a failed write leaves the old file as it was."""
    from datacheck.audit_formats import render_table

    if output_format == "table":
        if output is None:
            console.print(render_table(report), crop=False)  # a path longer than the console stays whole
            return
        buffer = Console(file=io.StringIO(), width=160)
        buffer.print(render_table(report), crop=False)
        text = buffer.file.getvalue()
    else:
        text = _rendered(report, output_format)
    if output is None:
        typer.echo(text, nl=False)
        return
    with staged_output(output, "report") as staging:
        staging.write_text(text, encoding="utf-8")
