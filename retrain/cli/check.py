"""``retrain-ci check``: audit an image-folder dataset, for people (a table) or machines (JSON, Markdown, GitHub)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from retrain.cli.common import ProgressBars, console, import_tensorflow_quietly, user_errors, warn
from retrain.core.errors import InputError
from retrain.core.outputs import check_writable, staged_output
from retrain.core.settings import AuditSettings
from retrain.core.settings_file import find_config_file, load_settings

AUDIT = AuditSettings()


def check(  # noqa: PLR0913 (a Typer command declares its options)
    image_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one subfolder of images per class.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="table (for people), json, markdown (pull requests) or github (annotations).",
        ),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
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
    property_cache: Annotated[
        Path | None,
        typer.Option(
            "--property-cache",
            metavar="DIR",
            help="Where each image's measured properties are cached by content, so a re-audit decodes only new files.",
            show_default="the bottleneck dir",
        ),
    ] = None,
) -> None:
    """Audit a dataset before training: broken files, duplicates, leaks between splits, suspected mislabels, ..."""
    from datacheck.reports import FORMATS

    if output_format not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    with user_errors():
        settings = load_settings(config_file or find_config_file(image_dir, Path.cwd())).replace(
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
            property_cache=property_cache,
        )
        _check_outputs(settings, output)
        report = _audit(image_dir, settings)
        warn(report.warnings)
        _write(report, output_format, output)
    raise typer.Exit(1 if report.fails(settings.fail_on) else 0)


def _ids(values: list[str] | None) -> tuple[str, ...] | None:
    """Check ids from repeated and comma-separated options; None when none were given."""
    return tuple(i for value in values or () for i in value.split(",")) or None


def _check_outputs(settings: AuditSettings, output: Path | None) -> None:
    """Before any image is decoded: the report file, the property cache and, when a check needs bottlenecks, their
    cache are writable."""
    from datacheck.properties import property_cache
    from datacheck.registry import selected_checks

    if output is not None:
        if not output.parent.is_dir():
            raise InputError(f"cannot write the report to {output}: folder {output.parent} does not exist")
        check_writable(output, "report", folder=False)
    check_writable(property_cache(settings).directory, "property cache", folder=True)
    if any(check.needs_bottlenecks for check in selected_checks(settings.only, settings.skip)):
        check_writable(settings.module.bottleneck_dir, "bottleneck cache", folder=True)


def _audit(image_dir: Path, settings: AuditSettings):
    """The audit with progress bars; the training engine (and TensorFlow) only when a check needs bottlenecks."""
    from datacheck.audit import audit_dataset
    from datacheck.registry import selected_checks

    source = None
    if any(check.needs_bottlenecks for check in selected_checks(settings.only, settings.skip)):
        import_tensorflow_quietly()
        from retrain.training.bottlenecks import bottleneck_source

        source = bottleneck_source(settings.module)
    bars = ProgressBars()
    try:
        return audit_dataset(image_dir, settings, hooks=bars.hooks(), bottlenecks=source)
    finally:
        bars.stop()


def _write(report, output_format: str, output: Path | None) -> None:
    """To stdout, or staged into FILE so that a failed write leaves the old file as it was."""
    from datacheck.reports import render_github, render_json, render_markdown, render_table

    if output_format == "table":
        if output is None:
            console.print(render_table(report))
            return
        buffer = Console(file=io.StringIO(), width=160)
        buffer.print(render_table(report))
        text = buffer.file.getvalue()
    else:
        text = {"json": render_json, "markdown": render_markdown, "github": render_github}[output_format](report)
    if output is None:
        typer.echo(text, nl=False)
        return
    with staged_output(output, "report") as staging:
        staging.write_text(text, encoding="utf-8")
