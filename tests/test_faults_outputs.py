"""A run's outputs under faults: killed mid-export, two runs on one folder, a full disk, another model's labels.

Whatever happens, a reader finds one run's complete set of outputs (the previous run's or the new one's), and a model
is never read with labels that are not its own.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from retrain.core import outputs
from retrain.core.errors import InputError
from retrain.core.outputs import OWNED_MARKER, OutputSet
from retrain.training.export import LABELS_NODE
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

REPO = Path(__file__).resolve().parents[1]
MODELS = ("saved_model", "output_graph.pb", "model.tflite")
CLASSES = {"old": ["daisy", "dandelion"], "new": ["dandelion", "roses"]}
# Where a killed export can be: each staging file appears when its output is being (or has been) written.
EXPORT_POINTS = (
    ".output_labels.*.staging.txt",
    ".saved_model.*.staging",
    ".model.*.staging.tflite",
    ".report.*.staging",
)


def _tiny_run(dataset: Path, output_dir: Path, bottleneck_dir: Path) -> list[str]:
    return [
        "train", str(dataset), "--output-dir", str(output_dir), "--bottleneck-dir", str(bottleneck_dir),
        "--how-many-training-steps", "20", "--random-seed", "3", "--tflite", str(output_dir / "model.tflite"),
    ]  # fmt: skip


def _start(arguments: list[str]) -> subprocess.Popen:
    """``retrain-ci`` in its own process, with this session's module cache (RETRAIN_CI_CACHE), so it can be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "retrain", *arguments],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def datasets(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two datasets with as many classes, named differently: one run's labels would misname the other's classes."""
    root = tmp_path_factory.mktemp("datasets")
    return {
        name: copy_dataset(root / name, {label: sample_photos(flowers_sample, label, 10) for label in labels})
        for name, labels in CLASSES.items()
    }


@pytest.fixture(scope="module")
def finished(datasets: dict[str, Path], bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Each dataset's complete run, and what ``label`` says with each of its models: what a reader may find."""
    runs = {}
    for name, dataset in datasets.items():
        output_dir = tmp_path_factory.mktemp(f"finished-{name}")
        run = run_cli(*_tiny_run(dataset, output_dir, bottleneck_dir))
        assert run.exit_code == 0, run.stdout + run.stderr
        runs[name] = (output_dir, {model: _labelled(output_dir / model, datasets["old"]) for model in MODELS})
    return runs


def _labelled(model: Path, dataset: Path, *extra: str | Path) -> list[tuple[str, list[str], list[float]]] | str:
    """``label --format json`` on the daisies: (image, labels ranked, scores) per image, or the error line."""
    run = run_cli("label", "--model", model, "--format", "json", *extra, dataset / "daisy")
    if run.exit_code:
        return run.stderr.strip()
    return [
        (Path(item["path"]).name, [p["label"] for p in item["predictions"]], [p["score"] for p in item["predictions"]])
        for item in json.loads(run.stdout)
    ]


def _same(found, expected) -> bool:
    if isinstance(found, str) or isinstance(expected, str) or len(found) != len(expected):
        return False
    return all(
        name == other_name and labels == other_labels and np.allclose(scores, other_scores, atol=1e-4)
        for (name, labels, scores), (other_name, other_labels, other_scores) in zip(found, expected, strict=True)
    )


def _which_run(found, finished, model: str) -> str:
    """The finished run whose model answers exactly as ``found``; a mix of two runs matches neither."""
    matches = [name for name, (_, answers) in finished.items() if _same(found, answers[model])]
    assert matches, f"{model} answered as no finished run: {found}"
    return matches[0]


def _assert_one_set(output_dir: Path, finished, datasets) -> str:
    """Every model, read with the labels file beside it, answers as one and the same finished run; its name."""
    labels_file = output_dir / "output_labels.txt"
    runs = {_which_run(_labelled(output_dir / model, datasets["old"], "--labels", labels_file), finished, model)
            for model in MODELS}  # fmt: skip
    assert len(runs) == 1, f"the models come from different runs: {runs}"
    (run,) = runs
    assert labels_file.read_text().splitlines() == CLASSES[run]
    metrics = json.loads((output_dir / "report" / "metrics.json").read_text())
    assert list(metrics["per_class"]) == CLASSES[run]
    return run


def _strays(folder: Path) -> list[str]:
    """Hidden files a run leaves behind (staging files, journals, the set's lock)."""
    return sorted(p.name for p in folder.glob(".*"))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


def _assert_one_line_error(run: CliRun, *fragments: str) -> str:
    assert run.exit_code == 2, run.stdout + run.stderr
    errors = [line for line in (run.stdout + run.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: "), run.stdout + run.stderr
    assert run.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in run.stdout + run.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_run_killed_during_export_leaves_the_previous_set_or_the_new_one(
    point: str, finished, datasets: dict[str, Path], bottleneck_dir: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "out"
    shutil.copytree(finished["old"][0], output_dir)
    run = _start(_tiny_run(datasets["new"], output_dir, bottleneck_dir))
    deadline = time.monotonic() + 300
    while not list(output_dir.glob(point)):
        assert run.poll() is None, f"the run ended before {point} appeared: {run.stderr.read()}"
        assert time.monotonic() < deadline, f"{point} did not appear in time"
        time.sleep(0.002)
    run.send_signal(signal.SIGKILL)
    run.wait()

    # Each model answers as one finished run, with its own labels: never old weights under the new names.
    for model in MODELS:
        _which_run(_labelled(output_dir / model, datasets["old"]), finished, model)
    # The files on disk are one run's set (the next run completes a commit cut short, as here).
    with OutputSet(output_dir / "output_labels.txt"):
        pass
    # Only a kill after the last output was staged can find the commit begun, and then it is completed.
    assert _assert_one_set(output_dir, finished, datasets) in (("old", "new") if "report" in point else ("old",))
    if point == EXPORT_POINTS[0]:  # once: the next run replaces the set whole and sweeps what the killed one left
        assert run_cli(*_tiny_run(datasets["new"], output_dir, bottleneck_dir)).exit_code == 0
        assert _assert_one_set(output_dir, finished, datasets) == "new"
        assert _strays(output_dir) == []


def test_a_finished_run_leaves_no_lock_file(finished) -> None:
    for output_dir, _ in finished.values():
        assert [path.name for path in output_dir.rglob("*.lock")] == []
        assert _strays(output_dir) == []


def test_a_run_that_opened_the_lock_as_its_holder_ended_locks_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder deletes the lock file as it ends; a run that opened that file just before must not take the lock on
    it, or a third run would lock a new file under the same name and two runs would write one set."""
    labels, lock = tmp_path / "labels.txt", tmp_path / ".labels.txt.lock"
    with OutputSet(labels):
        assert lock.is_file()
        opened_before = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 (the racing run's handle)
    assert not lock.exists()
    handles = iter([opened_before])

    def racing_open(*args, **kwargs):
        return next(handles, None) or open(*args, **kwargs)  # noqa: SIM115 (the lock stays open while held)

    monkeypatch.setattr(outputs, "open", racing_open, raising=False)
    with OutputSet(labels):
        assert opened_before.closed and lock.is_file()
        with pytest.raises(InputError, match=rf"another retrain-ci run \(pid {os.getpid()} on .*\) is writing"):
            OutputSet(labels).__enter__()
    assert not lock.exists()


def test_commit_killed_halfway_is_completed_by_the_next_run(tmp_path: Path) -> None:
    """A commit renames many outputs; killed between two renames, the journal lets the next run finish it."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for i in range(1500):
        (outputs / f"file-{i}.txt").write_text("old")
    for i in range(20):
        (outputs / f"folder-{i}").mkdir()
        (outputs / f"folder-{i}" / "content.txt").write_text("old")
        (outputs / f"folder-{i}" / OWNED_MARKER).write_text('["content.txt"]')  # the previous run wrote it
    writer = subprocess.Popen([sys.executable, "-c", COMMITTER, str(outputs)], cwd=REPO, stdout=subprocess.PIPE)
    journal = outputs / ".labels.txt.commit"
    assert writer.stdout.readline() == b"staged\n"
    while not journal.exists():
        assert writer.poll() is None, "the commit ended before it could be killed"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    contents = [p.read_text() for p in sorted(outputs.glob("file-*.txt"))]
    assert journal.exists() and "old" in contents, "the kill did not land in the middle of the commit"

    with OutputSet(outputs / "labels.txt"):
        pass
    assert {p.read_text() for p in outputs.glob("file-*.txt")} == {"new"}
    assert {(p / "content.txt").read_text() for p in outputs.glob("folder-*")} == {"new"}
    assert (outputs / "labels.txt").read_text() == "new"
    assert len(list(outputs.iterdir())) == 1500 + 20 + 1  # the outputs and labels.txt, no lock left
    assert _strays(outputs) == []


COMMITTER = """
import sys
from pathlib import Path
from retrain.core.outputs import OutputSet

outputs = Path(sys.argv[1])
with OutputSet(outputs / "labels.txt") as staged:
    for target in [outputs / "labels.txt", *sorted(outputs.glob("file-*.txt"))]:
        with staged.staging(target, "file") as staging:
            staging.write_text("new")
    for target in sorted(outputs.glob("folder-*")):
        with staged.staging(target, "folder") as staging:
            staging.mkdir()
            (staging / "content.txt").write_text("new")
    print("staged", flush=True)
    staged.commit()
"""


def test_two_runs_on_one_output_dir_end_with_one_complete_set(
    finished, datasets: dict[str, Path], bottleneck_dir: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "out"
    runs = {name: _start(_tiny_run(datasets[name], output_dir, bottleneck_dir)) for name in ("old", "new")}
    results = {name: (run.communicate(timeout=600)[1], run.returncode, run.pid) for name, run in runs.items()}
    results = {name: (code, stderr, pid) for name, (stderr, code, pid) in results.items()}
    winners = [name for name, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (winner,) = winners
    (loser,) = set(results) - {winner}
    code, stderr, _ = results[loser]
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in stderr
    assert last.startswith(f"error: another retrain-ci run (pid {results[winner][2]} on ")
    assert _assert_one_set(output_dir, finished, datasets) == winner
    assert _strays(output_dir) == []


@pytest.fixture
def small_disk(tmp_path: Path):
    """Mount a tmpfs of the given size (root only), unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode:
            pytest.skip(f"cannot mount a small tmpfs to fill: {result.stderr.strip() or 'mount failed'}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill the disk, then free ``leave`` bytes: enough for small files, not for a model or a report."""
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    os.ftruncate(descriptor, os.fstat(descriptor).st_size - leave)
    os.close(descriptor)


def _previous_set(finished, output_dir: Path) -> None:
    """The earlier run's models, labels and report (without the TensorFlow Lite model and the logs, to fit)."""
    shutil.copytree(finished["old"][0], output_dir, ignore=shutil.ignore_patterns("retrain_logs", "model.tflite"))


def test_full_disk_at_export_is_one_line_and_keeps_the_previous_set(
    small_disk, finished, datasets: dict[str, Path], bottleneck_dir: Path, tmp_path: Path
) -> None:
    output_dir = small_disk("64m") / "out"
    _previous_set(finished, output_dir)
    before = _digests(output_dir)
    _fill(output_dir.parent, leave=1 << 20)
    run = run_cli(
        "train", datasets["new"], "--output-dir", output_dir, "--bottleneck-dir", bottleneck_dir,
        "--summaries-dir", tmp_path / "logs", "--how-many-training-steps", "20",
    )  # fmt: skip
    _assert_one_line_error(run, "cannot write the SavedModel folder", "No space left on device")
    assert _digests(output_dir) == before
    assert _strays(output_dir) == []


def test_full_disk_at_report_is_one_line_and_keeps_the_previous_set(
    small_disk, finished, datasets: dict[str, Path], bottleneck_dir: Path, tmp_path: Path
) -> None:
    output_dir, report_dir = tmp_path / "out", small_disk("3m") / "report"
    _previous_set(finished, output_dir)
    shutil.copytree(output_dir / "report", report_dir)
    before = _digests(output_dir), _digests(report_dir)
    _fill(report_dir.parent, leave=16 << 10)
    run = run_cli(
        "train", datasets["new"], "--output-dir", output_dir, "--report-dir", report_dir,
        "--summaries-dir", tmp_path / "logs", "--bottleneck-dir", bottleneck_dir, "--how-many-training-steps", "20",
    )  # fmt: skip
    _assert_one_line_error(run, f"cannot write the report folder {report_dir} (No space left on device)")
    assert (_digests(output_dir), _digests(report_dir)) == before
    assert _strays(output_dir) == [] and _strays(report_dir.parent) == []

    # Rendering the report again, or the audit's report, on the full disk: the same, and the old files stay.
    _assert_one_line_error(run_cli("report", report_dir), "No space left on device")
    assert _digests(report_dir) == before[1]
    audit = report_dir.parent / "audit.json"
    audit.write_text("the previous audit")
    _fill(report_dir.parent, leave=0)
    run = run_cli("check", datasets["new"], "--only", "too_few_images", "--format", "json", "--output", audit)
    _assert_one_line_error(run, f"cannot write the report {audit} (No space left on device)")
    assert audit.read_text() == "the previous audit"
    assert _strays(report_dir.parent) == []


def test_check_fails_on_an_unwritable_cache_before_decoding_any_image(datasets: dict[str, Path], tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = run_cli("check", datasets["new"], "--bottleneck-dir", blocker / "cache")
    assert run.stderr.strip().splitlines() == [
        f"error: cannot write the bottleneck cache {blocker / 'cache'}: {blocker} is not a writable folder"
    ], "the cache must be checked before any image is decoded (no progress bar, no later error)"
    assert run.exit_code == 2
    # A check without bottlenecks still caches image properties, by default under the bottleneck dir, checked first too;
    only = ("--only", "too_few_images", "--bottleneck-dir", blocker / "cache")
    run = run_cli("check", datasets["new"], *only)
    assert run.exit_code == 2 and run.stderr.startswith("error: cannot write the property cache"), run.stderr
    # with the properties cached elsewhere, it needs nothing from the bottleneck cache.
    run = run_cli("check", datasets["new"], *only, "--property-cache", tmp_path / "properties")
    assert run.exit_code == 1, run.stderr


@pytest.mark.parametrize("model", MODELS)
def test_another_models_labels_file_is_refused(model: str, finished, datasets: dict[str, Path]) -> None:
    output_dir = finished["old"][0]
    for labels in ("dandelion\ndaisy\n", "daisy\ndandelion\nroses\n"):
        wrong = output_dir.parent / "wrong-labels.txt"
        wrong.write_text(labels)
        run = run_cli("label", "--model", output_dir / model, "--labels", wrong, datasets["old"] / "daisy")
        _assert_one_line_error(run, f"labels file {wrong} does not match the model", "trained on 2 classes (daisy, ")
        run = run_cli("evaluate", output_dir / model, datasets["old"], "--labels", wrong)
        _assert_one_line_error(run, "does not match the model")


def test_a_graph_without_labels_of_its_own_is_checked_for_width(
    finished, datasets: dict[str, Path], tmp_path: Path
) -> None:
    """A frozen graph exported elsewhere carries no labels; a labels file of another width is refused, not indexed."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((finished["old"][0] / "output_graph.pb").read_bytes())
    kept = [node for node in graph_def.node if node.name != LABELS_NODE]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    (tmp_path / "output_graph.pb").write_bytes(graph_def.SerializeToString())
    (tmp_path / "output_labels.txt").write_text("daisy\ndandelion\nroses\n")
    run = run_cli("label", "--model", tmp_path / "output_graph.pb", datasets["old"] / "daisy")
    _assert_one_line_error(run, "scores 2 classes but its labels file lists 3")
    (tmp_path / "output_labels.txt").write_text("daisy\ndandelion\n")
    found = _labelled(tmp_path / "output_graph.pb", datasets["old"])
    assert _same(found, finished["old"][1]["output_graph.pb"])


def test_report_refuses_predictions_from_another_run(finished, tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    shutil.copytree(finished["old"][0] / "report", report_dir)
    table = pd.read_csv(report_dir / "predictions.csv")
    table.rename(columns={"p:daisy": "p:cats"}).to_csv(report_dir / "predictions.csv", index=False)
    _assert_one_line_error(run_cli("report", report_dir), "predictions.csv does not match", "p:cats")
    table.replace({"daisy": "cats"}).to_csv(report_dir / "predictions.csv", index=False)
    _assert_one_line_error(run_cli("report", report_dir), "names classes metrics.json does not have (cats)")
    pd.concat([table, table]).to_csv(report_dir / "predictions.csv", index=False)
    _assert_one_line_error(run_cli("report", report_dir), f"has {2 * len(table)} rows for {len(table)} test images")
    table.to_csv(report_dir / "predictions.csv", index=False)
    assert run_cli("report", report_dir).exit_code == 0


def test_full_disk_for_the_tensorboard_logs_is_one_line(
    small_disk, datasets: dict[str, Path], bottleneck_dir: Path, tmp_path: Path
) -> None:
    logs = small_disk("1m") / "logs"
    _fill(logs.parent, leave=0)
    run = run_cli(
        "train", datasets["new"], "--output-dir", tmp_path / "out", "--summaries-dir", logs,
        "--bottleneck-dir", bottleneck_dir, "--how-many-training-steps", "20",
    )  # fmt: skip
    _assert_one_line_error(run, f"cannot write the TensorBoard logs {logs} (No space left on device)")
    assert not (tmp_path / "out" / "saved_model").exists()
