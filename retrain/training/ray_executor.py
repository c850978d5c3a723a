"""The Ray half of ``--executor ray`` (``executors.RayExecutor`` imports it when it runs): joining the cluster, a Ray
Data map for the audit's per-image work, and bottlenecks, whose images' paths go out and vectors come back.

A Ray Data ``map_batches`` over the paths, with a callable class so each actor builds its interpreters once from the
converted module, which reaches every node through Ray's object store (no shared path needed for it). Actors decode
and run through ``run_batch``, the local executor's own path, so the numbers are the same; this process writes them to
the content-keyed cache, so the cache works whether or not the nodes share a filesystem. The images must be readable
at the same paths on every node. Nothing here imports TensorFlow, which would add 5-6 s to each actor's start.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from retrain.core.errors import ExecutorStopped, InputError
from retrain.core.per_image import Item, ItemMap
from retrain.training.features import Batch, run_batch, tflite_runner

INSTALL = "pip install 'retrain-ci[ray]'"
# Items per call of the per-image map: enough to amortise a call, few enough that progress moves often.
ITEMS_PER_BATCH = 32

# Interpreter threads per actor, and the Ray CPUs it reserves: fewer than it uses, so the actors never reserve every
# CPU (Ray Data then waits forever for one to run anything else on: ray-project/ray#44687).
ACTOR_THREADS = 2
ACTOR_CPUS = 1.0
# Paths per call of an actor: enough to keep its threads busy, few enough that progress moves often.
PATHS_PER_BATCH = 32
# Seconds to wait for a cluster's address to answer before ray.init, which would otherwise retry an address where
# nothing listens forever (a warning every 40 s). A cluster on a LAN answers in milliseconds.
REACH_TIMEOUT = 5.0
# A client's HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113, 3.4); a gRPC server answers SETTINGS.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def ray_batches(
    missing: list[tuple[int, Path]],
    tflite_model: bytes,
    sizes: tuple[tuple[int, int], int],
    *,
    mirrored: bool,
    address: str,
) -> Iterator[Batch]:
    """The missing rows' batches (as ``local_batches`` yields them), computed by actors on the cluster running the
    converted module; ``sizes`` are its image size and feature size."""
    ray = connect(address)
    cpus = ray.cluster_resources().get("CPU", 1.0)
    nodes = sum(node["Alive"] for node in ray.nodes())
    actors = max(nodes, int(cpus) // ACTOR_THREADS)  # at least one per node, so a node of one core works too
    paths = ray.data.from_items([{"row": row, "path": str(path)} for row, path in missing])
    with warnings.catch_warnings():
        # Ray 2.60 deprecates max_restarts here without a named replacement (hence ray<2.64 in the extra). Restarting
        # is not safe: an actor's constructor arguments may be gone from the object store (ray-project/ray#53727).
        warnings.simplefilter("ignore", DeprecationWarning)
        vectors = paths.map_batches(
            BottleneckActor,
            fn_constructor_kwargs={
                "model": [ray.put(tflite_model)],  # in a list, so the actor receives the reference and fetches it once
                "sizes": sizes,
                "mirrored": mirrored,
            },
            batch_size=PATHS_PER_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),  # spread over the nodes: Ray Data's default
            num_cpus=min(ACTOR_CPUS, cpus / 2 / actors),  # all the actors together reserve half the CPUs at most
            max_restarts=0,  # a lost actor ends the job; what came back is cached, so a rerun computes only the rest
        )
    try:
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            failed = batch["failure"] != ""
            reasons = zip(batch["row"][failed].tolist(), batch["failure"][failed].tolist(), strict=True)
            failures = [(row, str(reason)) for row, reason in reasons]
            yield batch["row"][~failed].tolist(), np.asarray(batch["features"][~failed], np.float32), failures
    except ray.exceptions.RayError as error:
        raise job_stopped("computing bottlenecks", error) from None


def connect(address: str) -> Any:
    """Ray, started on this machine (``local``) or joined at ``address``; one line of InputError when it cannot be.

    A Ray already initialised in this process (a test's, or an earlier stage's) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray: {INSTALL}") from None
    if not ray.is_initialized():
        _check_answers(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:  # e.g. a missing token
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"cannot start or reach Ray at {address!r} ({reason})") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # progress goes through the run's hooks, like the local executor's
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": on purpose
    # A failed job's traceback: the exception reaches retrain-ci, which reports it in one line.
    logging.getLogger("ray.data._internal.execution.streaming_executor_state").setLevel(logging.CRITICAL)
    return ray


def _check_answers(address: str) -> None:
    """An InputError, after REACH_TIMEOUT at most, when nothing at a ``host:port`` address accepts a connection or
    speaks Ray's protocol: its GCS and its ray:// client server are gRPC servers, which answer an HTTP/2 preface with
    a SETTINGS frame. Anything else there (a web server, a database) would have ray.init retry forever."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not (colon and port.isdigit()):  # ``local``, ``auto`` or a malformed address: Ray's own message says it
        return
    probe = os.environ.get("RAY_USE_TLS", "0") in ("0", "")  # a TLS cluster's handshake comes first: not probed
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT) as connection:
            if probe:
                connection.sendall(HTTP2_PREFACE)
            frame_type = _first_frame_type(connection) if probe else HTTP2_SETTINGS
    except (OSError, OverflowError) as error:  # OverflowError: a port above 65535
        reason = getattr(error, "strerror", None) or str(error)
        raise InputError(
            f"cannot reach Ray at {address!r}: nothing answers there within {REACH_TIMEOUT:g} s ({reason}); "
            "is the cluster started (`ray start --head`) and the address its GCS or ray:// client port?"
        ) from None
    if frame_type != HTTP2_SETTINGS:
        raise InputError(
            f"cannot reach Ray at {address!r}: something answers there but it is not a Ray cluster (no gRPC "
            f"answer within {REACH_TIMEOUT:g} s); is the address the cluster's GCS or ray:// client port?"
        )


def _first_frame_type(connection: socket.socket) -> int | None:
    """The type of the first HTTP/2 frame the server sends (its 9-byte header's fourth byte); None when it sends
    fewer bytes, closes, or stays silent."""
    header = b""
    try:
        while len(header) < 9:
            chunk = connection.recv(9 - len(header))
            if not chunk:
                return None
            header += chunk
    except TimeoutError:
        return None
    return header[3]


def ray_map(address: str) -> ItemMap:
    """An ``ItemMap`` whose items run as a Ray Data map on the cluster at ``address``, results as they complete."""

    def run(function: Callable[..., Any], items: Sequence[Item]) -> Iterator[tuple[int, Any]]:
        ray = connect(address)
        # Pickled both ways: the arguments (paths, sizes) and results (rows of mixed types) stay Python values.
        dataset = ray.data.from_items([{"key": key, "arguments": pickle.dumps(arguments)} for key, arguments in items])
        results = dataset.map_batches(
            _apply, fn_kwargs={"function": function}, batch_size=ITEMS_PER_BATCH, batch_format="numpy"
        )
        try:
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                yield from zip(batch["key"].tolist(), map(pickle.loads, batch["result"]), strict=True)
        except ray.exceptions.RayError as error:
            raise job_stopped("measuring images", error) from None

    return run


def job_stopped(what: str, error: Exception) -> ExecutorStopped:
    """The one line for a Ray job that failed part-way (a lost node or actor), whose returned results are kept."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ExecutorStopped(
        f"the Ray job {what} stopped ({type(error).__name__}: {reason}); "
        "what it returned is cached, so running again computes only the rest"
    )


def _apply(batch: dict[str, np.ndarray], function: Callable[..., Any]) -> dict[str, np.ndarray]:
    results = [pickle.dumps(function(*pickle.loads(arguments))) for arguments in batch["arguments"]]
    return {"key": batch["key"], "result": np.array(results, dtype=object)}


class BottleneckActor:
    """One actor's interpreters, built once from the converted module; called with a batch of paths."""

    def __init__(self, model: list[Any], sizes: tuple[tuple[int, int], int], mirrored: bool) -> None:
        import ray

        self.runner = tflite_runner(ray.get(model[0]), *sizes, ACTOR_THREADS)
        self.mirrored = mirrored
        self.pool = ThreadPoolExecutor(ACTOR_THREADS)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [(int(row), Path(path)) for row, path in zip(batch["row"], batch["path"], strict=True)]
        size = self.runner.batch_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        rows: list[int] = []
        features = np.zeros((len(items), self.runner.feature_size), np.float32)
        failures: list[tuple[int, str]] = []
        batches = self.pool.map(lambda chunk: run_batch(self.runner, chunk, self.mirrored), chunks)
        for computed, vectors, failed in batches:
            features[len(rows) : len(rows) + len(computed)] = vectors
            rows.extend(computed)
            failures.extend(failed)
        return {
            "row": np.array(rows + [row for row, _ in failures], np.int64),
            "features": features,
            "failure": np.array([""] * len(rows) + [reason for _, reason in failures], dtype=object).astype(str),
        }
