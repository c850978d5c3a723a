"""--executor ray: bottlenecks computed by Ray Data actors and cached by this process; the same numbers as local."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datacheck.audit import audit_dataset
from datacheck.settings import AuditSettings
from retrain.app.audit import audit_settings
from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.dataset import LabeledImage, list_dataset
from retrain.core.errors import ExecutorStopped, InputError
from retrain.core.hooks import Hooks
from retrain.core.per_image import thread_map
from retrain.core.settings import ExecutionSettings, SplitSettings
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.modules import load_image_module
from retrain.training.ray_executor import ray_map
from tests.conftest import copy_dataset, run_cli, sample_photos

ray = pytest.importorskip("ray")
pytest_plugins = ["pytester"]
RAY = ExecutionSettings("ray")
LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@pytest.fixture(scope="module")
def ray_cluster():
    """One in-process Ray of 2 CPUs for the module (starting one costs seconds), shut down after; without token
    authentication, so that the pytest plugin's own process can join it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def module():
    return load_image_module("efficientnet_lite0")


@pytest.fixture(scope="module")
def small_dataset(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 photos of each class: enough for three splits, few enough that a Ray run takes seconds."""
    photos = {label: sample_photos(flowers_sample, label, 12) for label in LABELS}
    return copy_dataset(tmp_path_factory.mktemp("small") / "photos", photos)


def bottleneck_actors() -> int:
    """Actors Ray has started for bottlenecks (the public state API needs the dashboard, left out of the test's Ray)."""
    return sum("BottleneckActor" in actor["ActorClassName"] for actor in ray._private.state.actors().values())


def test_executor_is_a_setting_of_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "retrain-ci.toml"
    config.write_text('executor = "ray"\nray-address = "auto"\n')
    assert audit_settings(config, {}).execution == ExecutionSettings("ray", "auto")
    config.write_text('executor = "spark"\n')
    with pytest.raises(InputError, match="executor must be one of local, ray"):
        audit_settings(config, {})


@pytest.mark.parametrize("command", ["train", "check"])
def test_executor_ray_without_ray_installed_is_one_error_line(command: str, small_dataset: Path, tmp_path: Path):
    args = [command, str(small_dataset), "--executor", "ray", "--bottleneck-dir", str(tmp_path / "bottlenecks")]
    if command == "train":
        args += ["--output-dir", str(tmp_path / "run")]
    code = f"import sys; sys.modules['ray'] = None; from retrain.cli import app; app({args!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: --executor ray needs Ray: pip install 'retrain-ci[ray]'"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_bottlenecks_on_ray_equal_the_local_ones_and_fill_the_same_cache(
    ray_cluster, module, flowers_sample: Path, tmp_path: Path
) -> None:
    images = list_dataset(flowers_sample, SplitSettings()).images[::5]  # 40 photos of every class
    local = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "local", module.cache_key))
    ray_cache = BottleneckCache(tmp_path / "ray", module.cache_key)
    compute_bottlenecks(images[:15], module, ray_cache)  # the cache already holds these: they are not sent
    progress = []
    actors = bottleneck_actors()
    on_ray = compute_bottlenecks(
        images, module, ray_cache, execution=RAY, hooks=Hooks(on_progress=lambda *step: progress.append(step))
    )
    assert (on_ray.computed, on_ray.reused) == (25, 15)
    assert bottleneck_actors() > actors
    assert progress[0] == ("Computing bottlenecks", 0, 25) and progress[-1] == ("Computing bottlenecks", 25, 25)
    assert on_ray.images == local.images
    np.testing.assert_allclose(on_ray.vectors, local.vectors, rtol=0, atol=1e-5)
    again = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "ray", module.cache_key))
    assert (again.computed, again.reused) == (0, 40)  # a later local run reuses what Ray computed
    assert not list((tmp_path / "ray").rglob(".*.tmp"))


def test_mirrored_bottlenecks_on_ray_equal_the_local_ones(
    ray_cluster, module, flowers_sample: Path, tmp_path: Path
) -> None:
    images = list_dataset(flowers_sample, SplitSettings()).images[::20]
    local = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "l", module.cache_key), mirrored=True)
    cache = BottleneckCache(tmp_path / "r", module.cache_key)
    on_ray = compute_bottlenecks(images, module, cache, mirrored=True, execution=RAY)
    np.testing.assert_allclose(on_ray.vectors, local.vectors, rtol=0, atol=1e-5)


def test_unreadable_images_on_ray_are_skipped_as_locally(ray_cluster, module, small_dataset: Path, tmp_path: Path):
    photos = sample_photos(small_dataset, "roses", 3)
    (tmp_path / "cut.jpg").write_bytes(photos[0].read_bytes()[:300])
    images = [LabeledImage(path, 0, "training") for path in [*photos, tmp_path / "cut.jpg"]]
    local = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "l", module.cache_key))
    on_ray = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "r", module.cache_key), execution=RAY)
    assert [path.name for path, _ in on_ray.skipped] == [path.name for path, _ in local.skipped] == ["cut.jpg"]
    assert on_ray.images == local.images


def test_a_lost_actor_ends_the_job_in_one_line_and_a_rerun_computes_only_what_did_not_come_back(
    ray_cluster, module, flowers_sample: Path, tmp_path: Path
) -> None:
    images = list_dataset(flowers_sample, SplitSettings()).images[::2]  # 100 photos

    def kill_the_actor_once_a_batch_is_back(_stage: str, done: int, _total: int) -> None:
        if done > 0:
            actors = ray._private.state.actors().values()
            (pid,) = [a["Pid"] for a in actors if "BottleneckActor" in a["ActorClassName"] and a["State"] == "ALIVE"]
            os.kill(pid, signal.SIGKILL)  # as a lost node or the kernel's OOM killer would

    cache = BottleneckCache(tmp_path / "cache", module.cache_key)
    with pytest.raises(ExecutorStopped, match="Ray job computing bottlenecks stopped .*computes only the rest"):
        compute_bottlenecks(
            images, module, cache, execution=RAY, hooks=Hooks(on_progress=kill_the_actor_once_a_batch_is_back)
        )
    rerun = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "cache", module.cache_key))
    assert 0 < rerun.reused < len(images) and rerun.computed == len(images) - rerun.reused
    local = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "local", module.cache_key))
    np.testing.assert_allclose(rerun.vectors, local.vectors, rtol=0, atol=1e-5)


def test_train_on_ray_gives_the_local_accuracy_and_probabilities(
    ray_cluster, small_dataset: Path, tmp_path: Path
) -> None:
    runs = {}
    actors = bottleneck_actors()
    for executor in ("local", "ray"):
        runs[executor] = run_cli(
            "train", small_dataset,
            "--executor", executor,
            "--bottleneck-dir", tmp_path / f"bottlenecks-{executor}",
            "--output-dir", tmp_path / executor,
            "--random-seed", "0",
            "--how-many-training-steps", "100",
            "--testing-percentage", "20",
            "--validation-percentage", "20",
        )  # fmt: skip
        assert runs[executor].exit_code == 0, runs[executor].stdout + runs[executor].stderr
    assert "60 computed, 0 from cache" in runs["ray"].stdout
    assert bottleneck_actors() == actors + 2  # the images, then their mirror images
    metrics = {e: json.loads((tmp_path / e / "report" / "metrics.json").read_text()) for e in runs}
    assert metrics["ray"]["test_accuracy"] == metrics["local"]["test_accuracy"]
    predictions = {e: pd.read_csv(tmp_path / e / "report" / "predictions.csv") for e in runs}
    probabilities = [column for column in predictions["local"].columns if column.startswith("p:")]
    assert probabilities and predictions["ray"]["path"].tolist() == predictions["local"]["path"].tolist()
    np.testing.assert_allclose(predictions["ray"][probabilities], predictions["local"][probabilities], atol=1e-4)


class RayNode:
    """One ``ray start --block`` in a session of its own, so the test can end it and every process it started."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))  # Unix socket paths are capped near 107 bytes
        self.log = self.temp_dir / "start.log"
        ray_command = Path(sys.executable).with_name("ray")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [ray_command, "start", "--block", "--num-cpus", "1", "--temp-dir", self.temp_dir, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_started(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.5)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def test_train_on_a_head_and_a_worker_node(small_dataset: Path, tmp_path: Path, request: pytest.FixtureRequest):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a cluster of this test's own, on this machine only
    head = RayNode("--head", "--port", str(port), "--include-dashboard=false", "--disable-usage-stats", env=env)
    request.addfinalizer(head.stop)
    head.wait_started()
    worker = RayNode("--address", f"127.0.0.1:{port}", "--disable-usage-stats", env=env)
    request.addfinalizer(worker.stop)
    worker.wait_started()
    address = f"127.0.0.1:{port}"
    args = ["train", small_dataset, "--executor", "ray", "--ray-address", address, "--random-seed", "0"]
    args += ["--bottleneck-dir", tmp_path / "bottlenecks", "--output-dir", tmp_path / "run", "--no-tta"]
    args += ["--no-mirror-training", "--how-many-training-steps", "50", "--testing-percentage", "20"]
    args += ["--validation-percentage", "20"]
    train = subprocess.run(
        [sys.executable, "-m", "retrain", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert "60 computed, 0 from cache" in train.stdout
    where = (
        f"import json, ray; ray.init(address={address!r}); "
        "actors = ray._private.state.actors().values(); "
        "print(json.dumps({'nodes': sorted(node['NodeID'] for node in ray.nodes() if node['Alive']), "
        "'actors': [(a['Address']['NodeID'], a['NumRestarts']) for a in actors "
        "if 'BottleneckActor' in a['ActorClassName']]}))"
    )
    ran = subprocess.run([sys.executable, "-c", where], capture_output=True, text=True, env=env, timeout=120)
    placement = json.loads(ran.stdout.strip().splitlines()[-1])
    assert len(placement["nodes"]) == 2
    # One actor on each node, head and worker, neither restarted: the worker node computed its share.
    assert sorted(node for node, _ in placement["actors"]) == placement["nodes"], placement
    assert all(restarts == 0 for _, restarts in placement["actors"])


def test_pytest_plugin_computes_the_audits_bottlenecks_on_ray(
    ray_cluster, pytester: pytest.Pytester, small_dataset: Path, tmp_path: Path
) -> None:
    pytester.makefile(".toml", **{"retrain-ci": f'bottleneck-dir = "{tmp_path / "bottlenecks"}"\n'})
    actors = bottleneck_actors()
    address = ray.get_runtime_context().gcs_address  # this module's Ray, joined from the pytest run's own process
    executor = ["--retrain-executor", "ray", "--retrain-ray-address", address]
    result = pytester.runpytest_subprocess(f"--retrain-data={small_dataset}", *executor, "-k", "mislabel")
    result.assert_outcomes(passed=1)
    assert bottleneck_actors() == actors + 1


def test_audit_on_ray_reports_the_same_findings_and_fills_the_same_cache(
    ray_cluster, defective_dataset, tmp_path: Path
) -> None:
    settings = AuditSettings(property_cache=tmp_path / "local", skip=("suspected_mislabel",))
    local = audit_dataset(defective_dataset.root, settings)
    on_ray_settings = settings.replace(property_cache=tmp_path / "ray")
    on_ray = audit_dataset(defective_dataset.root, on_ray_settings, per_image=ray_map("local"))
    assert on_ray.properties == local.properties and on_ray.properties["computed"] > 0
    assert on_ray.findings == local.findings  # checks, severities, paths, messages, details and fingerprints
    again = audit_dataset(defective_dataset.root, on_ray_settings)  # a later local audit reuses what Ray measured
    assert again.properties == {"computed": 0, "reused": local.properties["computed"] + local.properties["reused"]}
    assert again.findings == local.findings


def test_an_audit_whose_cluster_fails_part_way_stops_in_one_line_and_keeps_what_came_back(
    ray_cluster, defective_dataset, tmp_path: Path
) -> None:
    def fails_on_the_fifth(path: Path, size: int) -> str:
        if path.name == "5.jpg":
            raise OSError("a lost node")
        return path.name

    with pytest.raises(ExecutorStopped, match=r"^the Ray job measuring images stopped \(RayTaskError"):
        dict(ray_map("local")(fails_on_the_fifth, [(key, (Path(f"{key}.jpg"), 0)) for key in range(10)]))

    def stops_after_ten(function, items):  # a cluster that returned ten results, then lost its last node
        for count, result in enumerate(thread_map(function, items)):
            if count == 10:
                raise ExecutorStopped("the cluster is gone")
            yield result

    settings = AuditSettings(property_cache=tmp_path / "properties", skip=("suspected_mislabel",))
    with pytest.raises(ExecutorStopped):
        audit_dataset(defective_dataset.root, settings, per_image=stops_after_ten)
    again = audit_dataset(defective_dataset.root, settings)
    assert again.properties["reused"] >= 10 and again.properties["computed"] > 0  # 10, and copies of them


def test_check_command_on_ray_reports_what_it_reports_locally(ray_cluster, small_dataset: Path, tmp_path: Path):
    reports = {}
    for executor in ("local", "ray"):
        run = run_cli(
            "check", small_dataset, "--executor", executor, "--format", "json", "--skip", "suspected_mislabel",
            "--property-cache", tmp_path / executor, "--fail-on", "never",
        )  # fmt: skip
        assert run.exit_code == 0, run.stderr
        reports[executor] = json.loads(run.stdout)
    summaries = [reports[executor]["summary"] for executor in ("local", "ray")]
    assert summaries[0]["properties"] == summaries[1]["properties"] == {"computed": 60, "reused": 0}
    assert reports["ray"]["findings"] == reports["local"]["findings"]


def test_the_core_and_the_audit_import_neither_ray_nor_tensorflow_and_ray_workers_need_no_tensorflow() -> None:
    code = (
        "import sys, importlib, pkgutil, retrain.core as core, datacheck.audit, datacheck.checks; "
        "[importlib.import_module(m.name) for m in pkgutil.iter_modules(core.__path__, 'retrain.core.')]; "
        "print('ray' in sys.modules, 'tensorflow' in sys.modules); "
        "import retrain.training.executors, retrain.training.ray_executor; print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False", "False"], result.stderr
