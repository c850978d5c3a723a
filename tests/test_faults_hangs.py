"""Inputs that used to wait forever: a Ray address where nothing listens, and a FIFO given as an image. Each now stops
within seconds with one ``error:`` line and exit code 2, or is skipped with its reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from retrain.core.errors import InputError
from retrain.core.images import ImageDecodeError, decode_image, is_lfs_pointer
from retrain.training.ray_executor import _check_answers
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

REPO = Path(__file__).resolve().parents[1]
# Port 1 (tcpmux) needs root to listen on: nothing answers there.
NOTHING_LISTENS = "127.0.0.1:1"
# Seconds after which a test opens the writing end of its FIFO, so a reader stuck on it fails the test, not hangs it.
FIFO_WATCHDOG = 10.0


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_train_with_nothing_at_the_ray_address_stops_in_seconds(flowers_sample: Path, tmp_path: Path) -> None:
    """Ray's own ``ray.init`` retries such an address forever, a warning every 40 s; a new process, so a hang fails."""
    command = [sys.executable, "-m", "retrain", "train", str(flowers_sample), "--executor", "ray"]
    command += ["--ray-address", NOTHING_LISTENS, "--output-dir", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert _error_lines(completed.stderr) == [
        f"error: cannot reach Ray at '{NOTHING_LISTENS}': nothing answers there within 5 s (Connection refused); "
        "is the cluster started (`ray start --head`) and the address its GCS or ray:// client port?"
    ]
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", [NOTHING_LISTENS, f"ray://{NOTHING_LISTENS}", "[::1]:1", "no-such-host.invalid:1"])
def test_every_form_of_cluster_address_is_tried_before_ray_waits_on_it(address: str) -> None:
    with pytest.raises(InputError, match="cannot reach Ray at"):
        _check_answers(address)


@contextmanager
def _server_at(answer: bytes | None) -> Iterator[str]:
    """A TCP server on a free port that accepts, sends ``answer`` (None: sends nothing) and holds the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            if answer is not None:
                connection.sendall(answer)
            stop.wait(30)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.0 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", None],
    ids=["web server", "ssh", "silent"],
)
def test_a_service_that_is_not_ray_at_the_address_stops_in_seconds(answer: bytes | None) -> None:
    """Ray's ray.init retries any address that accepts a connection, forever; only a gRPC server is let through."""
    with _server_at(answer) as address, pytest.raises(InputError, match="it is not a Ray cluster") as refused:
        started = time.monotonic()
        _check_answers(address)
    assert time.monotonic() - started < 10
    assert str(refused.value).count("\n") == 0


def test_a_grpc_server_at_the_address_is_let_through_to_ray() -> None:
    """The first frame a gRPC server sends is SETTINGS (a real Ray GCS: tests/test_ray_executor.py joins one)."""
    with _server_at(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])) as address:
        _check_answers(address)


@pytest.mark.parametrize("address", ["local", "auto"])
def test_local_and_auto_are_left_to_ray(address: str) -> None:
    _check_answers(address)


@contextmanager
def _stuck_readers_released(fifo: Path) -> Iterator[list[bool]]:
    """Yields a list that gets an entry each time, after FIFO_WATCHDOG seconds, a reader had to be released."""
    released: list[bool] = []
    done = threading.Event()

    def release() -> None:
        if done.wait(FIFO_WATCHDOG):
            return
        while not done.wait(0.1):
            try:  # opening the writing end without blocking succeeds only while a reader waits on the FIFO
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                released.append(True)
            except OSError:
                pass

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield released
    finally:
        done.set()
        watchdog.join()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    os.mkfifo(path)
    return path


def _label(trained_run: CliRun, *inputs: Path, fifo: Path) -> CliRun:
    with _stuck_readers_released(fifo) as released:
        run = run_cli("label", "--model", trained_run.output_dir / "saved_model", "--format", "json", *inputs)
    assert not released, "label opened the FIFO and waited for a writer"
    return run


def test_label_refuses_a_fifo_named_as_an_image(trained_run: CliRun, fifo: Path) -> None:
    run = _label(trained_run, fifo, fifo=fifo)
    assert run.exit_code == 2
    assert _error_lines(run.stderr) == [
        f"error: {fifo} is not a regular file (a FIFO, device or socket); name image files or folders"
    ]


def test_label_skips_a_fifo_in_a_folder_with_its_reason(trained_run: CliRun, flowers_sample: Path, fifo: Path) -> None:
    photo = sample_photos(flowers_sample, "daisy", 1)[0]
    (fifo.parent / photo.name).write_bytes(photo.read_bytes())
    run = _label(trained_run, fifo.parent, fifo=fifo)
    assert run.exit_code == 0, run.stderr
    assert [Path(row["path"]).name for row in json.loads(run.stdout)] == [photo.name]
    assert "warning: skipped unreadable image" in run.stderr
    assert "photo.jpg: not a regular file (a FIFO, device or socket), so it is not read" in run.stderr


def test_decoding_never_opens_a_fifo(fifo: Path) -> None:
    """Training, evaluation and the audit decode through the same function: a FIFO in their way is skipped."""
    with _stuck_readers_released(fifo) as released:
        with pytest.raises(ImageDecodeError, match="not a regular file"):
            decode_image(fifo, (224, 224))
        assert not is_lfs_pointer(fifo)
    assert not released


@pytest.fixture
def dataset_with_a_fifo(flowers_sample: Path, tmp_path: Path) -> Path:
    root = copy_dataset(
        tmp_path / "photos", {label: sample_photos(flowers_sample, label, 10) for label in ("daisy", "roses")}
    )
    os.mkfifo(root / "daisy" / "pipe.jpg")
    os.mkfifo(root / "roses" / "notes")
    return root


def test_train_skips_a_fifo_in_a_class_folder_and_says_so(
    dataset_with_a_fifo: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    fifo = dataset_with_a_fifo / "daisy" / "pipe.jpg"
    with _stuck_readers_released(fifo) as released:
        run = run_cli(
            "train", dataset_with_a_fifo, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out",
            "--how-many-training-steps", "5", "--testing-percentage", "20", "--validation-percentage", "20",
        )  # fmt: skip
    assert not released, "train opened the FIFO and waited for a writer"
    assert run.exit_code == 0, run.stdout + run.stderr
    for name in ("daisy/pipe.jpg", "roses/notes"):
        assert f"{dataset_with_a_fifo / name}: not a regular file (a FIFO, device or socket)" in run.stderr
    assert "20 images in 2 classes" in run.stdout


def test_check_names_every_fifo_in_a_class_folder(dataset_with_a_fifo: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    with _stuck_readers_released(dataset_with_a_fifo / "daisy" / "pipe.jpg") as released:
        run = run_cli("check", dataset_with_a_fifo, "--no-bottlenecks", "--format", "json", "--output", report)
    assert not released
    assert run.exit_code == 1, run.stdout + run.stderr
    special = [f for f in json.loads(report.read_text())["findings"] if f["check"] == "special_file"]
    assert sorted(f["paths"][0] for f in special) == ["daisy/pipe.jpg", "roses/notes"]
    assert all(f["severity"] == "error" and "not a regular file" in f["message"] for f in special)
