"""``retrain-ci demo``: the whole flow on the bundled sample of flower photos, in about a minute."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from retrain.cli.common import console, user_errors
from retrain.cli.train import train_and_report
from retrain.core.settings import ModuleSettings, OutputPaths, RunSettings, TrainingSettings

DEMO_DATA = Path(__file__).parents[1] / "demo_data" / "flower_photos"


def demo(
    how_many_training_steps: Annotated[
        int, typer.Option("--how-many-training-steps", help="Training steps.", min=1)
    ] = 1000,
) -> None:
    """Retrain on the bundled sample of flower photos, to see the whole flow work in about a minute."""
    workdir = Path(tempfile.mkdtemp(prefix="retrain-ci-demo-"))
    images = workdir / "flower_photos"
    shutil.copytree(DEMO_DATA, images)
    console.print(f"Demo: {sum(1 for _ in images.rglob('*.jpg'))} flower photos copied to {images}")
    settings = RunSettings(
        images,
        module=ModuleSettings(bottleneck_dir=workdir / "bottleneck"),
        training=TrainingSettings(how_many_training_steps=how_many_training_steps, eval_step_interval=100),
        outputs=OutputPaths.under(workdir / "output"),
    )
    with user_errors():
        train_and_report(settings, print_misclassified=True)
    console.print(
        f"\nNext: retrain-ci label --model {settings.outputs.saved_model_dir} {images / 'daisy'}\n"
        f"      retrain-ci train YOUR_IMAGE_DIR --output-dir ./model",
        soft_wrap=True,
        markup=False,
    )
