"""``retrain-ci demo``: the README's two commands, ``check`` then ``train`` with the gate, on the bundled photos."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from retrain.cli.check import check
from retrain.cli.common import console, exit_code_of, user_errors
from retrain.cli.train import train_and_report
from retrain.core.settings import GateSettings, ModuleSettings, OutputPaths, RunSettings, TrainingSettings

DEMO_DATA = Path(__file__).parents[1] / "demo_data" / "flower_photos"
# The demo's gate: 100 photos leave 10 test images, 8 of which the demo's model gets right.
DEMO_MIN_ACCURACY = 0.7


def demo(
    how_many_training_steps: Annotated[
        int, typer.Option("--how-many-training-steps", help="Training steps.", min=1)
    ] = 1000,
) -> None:
    """Audit the bundled flower photos, retrain on them with the accuracy gate, and say where the two pages are."""
    workdir = Path(tempfile.mkdtemp(prefix="retrain-ci-demo-"))
    images = workdir / "flower_photos"
    shutil.copytree(DEMO_DATA, images)
    bottleneck_dir = workdir / "bottleneck"  # shared: the audit computes the bottlenecks, training reuses them
    audit_dir = workdir / "audit"
    console.print(f"Demo: {sum(1 for _ in images.rglob('*.jpg'))} flower photos copied to {images}")

    console.print(f"\n$ retrain-ci check {images} --report-dir {audit_dir}", soft_wrap=True, markup=False)
    audit_exit = exit_code_of(lambda: check(images, report_dir=audit_dir, bottleneck_dir=bottleneck_dir))

    settings = RunSettings(
        images,
        module=ModuleSettings(bottleneck_dir=bottleneck_dir),
        training=TrainingSettings(how_many_training_steps=how_many_training_steps, eval_step_interval=100),
        outputs=OutputPaths.under(workdir / "output"),
        gate=GateSettings(min_accuracy=DEMO_MIN_ACCURACY),
    )
    console.print(
        f"\n$ retrain-ci train {images} --output-dir {workdir / 'output'} --min-accuracy {DEMO_MIN_ACCURACY}",
        soft_wrap=True,
        markup=False,
    )
    with user_errors():
        train_exit = exit_code_of(lambda: train_and_report(settings, print_misclassified=True))

    console.print(
        f"\nThe audit, one page:  {audit_dir / 'audit.html'}\n"
        f"The model's report:   {settings.outputs.report_dir / 'report.html'}\n"
        f"\nNext: retrain-ci label --model {settings.outputs.saved_model_dir} {images / 'daisy'}\n"
        f"      retrain-ci check YOUR_IMAGE_DIR\n"
        f"      retrain-ci train YOUR_IMAGE_DIR --output-dir ./model --min-accuracy 0.9",
        soft_wrap=True,
        markup=False,
    )
    raise typer.Exit(max(audit_exit, train_exit))
