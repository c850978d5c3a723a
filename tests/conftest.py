"""Shared fixtures: real photos from ../shared/data, the real bundled backbone, and one trained run per session."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import tensorflow as tf
from typer.testing import CliRunner

from retrain.cli import app
from tests.defects import add_valid_unusual_files, build_defective_dataset

DATA_ROOT = Path(os.environ.get("RETRAIN_CI_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FLOWERS_SAMPLE = DATA_ROOT / "flowers-sample"


@pytest.fixture(scope="session", autouse=True)
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert the bundled backbone into a fresh cache, as on a new machine, once per session."""
    cache = tmp_path_factory.mktemp("module-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETRAIN_CI_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def flowers_sample() -> Path:
    if not FLOWERS_SAMPLE.is_dir():
        pytest.fail(f"test photos not found at {FLOWERS_SAMPLE}; set RETRAIN_CI_DATA to the shared data folder")
    return FLOWERS_SAMPLE


@pytest.fixture(scope="session")
def bottleneck_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bottleneck cache for the session: photos copied into temp datasets hit it by content."""
    return tmp_path_factory.mktemp("bottlenecks")


@dataclass
class CliRun:
    exit_code: int
    stdout: str
    stderr: str
    output_dir: Path


def run_cli(*args: str | Path) -> CliRun:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    output_dir = Path(args[args.index("--output-dir") + 1]) if "--output-dir" in args else Path()
    return CliRun(result.exit_code, result.stdout, result.stderr, output_dir)


@pytest.fixture(scope="session")
def trained_run(flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """``retrain-ci train`` on the 200-photo sample with the tutorial's defaults, shared by the tests that read it."""
    output_dir = tmp_path_factory.mktemp("trained")
    run = run_cli(
        "train", flowers_sample,
        "--bottleneck-dir", bottleneck_dir,
        "--output-dir", output_dir,
        "--random-seed", "7",
        "--eval-step-interval", "100",
        "--print-misclassified-test-images",
        "--intermediate-store-frequency", "500",
        "--tflite", output_dir / "model.tflite",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    return run


def copy_dataset(root: Path, photos: dict[str, list[Path]]) -> Path:
    """A temp dataset: class name -> photos to copy into that class folder."""
    for label, files in photos.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, root / label / file.name)
    return root


def sample_photos(flowers_sample: Path, label: str, count: int) -> list[Path]:
    return sorted((flowers_sample / label).glob("*.jpg"))[:count]


def tensorboard_events(folder: Path) -> dict[str, list[tuple[int, object]]]:
    """Summaries in a TensorBoard log folder: tag -> [(step, value)], the graph under ``__graph__``."""
    found: dict[str, list[tuple[int, object]]] = {}
    for file in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            if event.HasField("graph_def"):
                found.setdefault("__graph__", []).append((event.step, event.graph_def))
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


@dataclass
class DefectiveDataset:
    root: Path
    planted: dict[str, list[str]]  # check id -> paths it must report
    unusual: list[str]  # valid but unusual files, which must raise nothing


@pytest.fixture(scope="session")
def defective_dataset(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> DefectiveDataset:
    """One dataset with every defect the audit looks for, plus valid files in unusual formats, shared read-only."""
    root = tmp_path_factory.mktemp("defective") / "photos"
    planted = build_defective_dataset(flowers_sample, root)
    unusual = add_valid_unusual_files(sorted((flowers_sample / "roses").glob("*.jpg"))[25:32], root / "roses")
    return DefectiveDataset(root, planted, [path.relative_to(root).as_posix() for path in unusual])
