"""Bottlenecks on a Ray cluster: the missing images' paths go out, their vectors come back to this process.

A Ray Data ``map_batches`` over the paths, with a callable class so each actor builds its interpreters once from the
converted module, which reaches every node through Ray's object store (no shared path needed for it). Actors decode
and run through ``run_batch``, the local executor's own path, so the numbers are the same; this process writes them to
the content-keyed cache, so the cache works whether or not the nodes share a filesystem. The images must be readable
at the same paths on every node. Nothing here imports TensorFlow, which would add 5-6 s to each actor's start.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from retrain.training.executors import connect, job_stopped
from retrain.training.features import Batch, run_batch, tflite_runner

# Interpreter threads per actor, and the Ray CPUs it reserves: fewer than it uses, so the actors never reserve every
# CPU (Ray Data then waits forever for one to run anything else on: ray-project/ray#44687).
ACTOR_THREADS = 2
ACTOR_CPUS = 1.0
# Paths per call of an actor: enough to keep its threads busy, few enough that progress moves often.
PATHS_PER_BATCH = 32


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
