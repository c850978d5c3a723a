"""The Ray side of ``--executor ray`` that needs no module: joining the cluster, and a Ray Data map for per-image work.

Without TensorFlow, so that the audit's workers (and ``check`` without bottleneck checks) never import it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from retrain.core.errors import ExecutorStopped, InputError
from retrain.core.per_image import Item, ItemMap, thread_map
from retrain.core.settings import ExecutionSettings

INSTALL = "pip install 'retrain-ci[ray]'"
# Items per call of a map: enough to amortise a call, few enough that progress moves often.
ITEMS_PER_BATCH = 32


def connect(address: str) -> Any:
    """Ray, started on this machine (``local``) or joined at ``address``; one line of InputError when it cannot be.

    A Ray already initialised in this process (a test's, or an earlier stage's) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray: {INSTALL}") from None
    if not ray.is_initialized():
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


def per_image_map(execution: ExecutionSettings) -> ItemMap:
    """Where the audit's per-image pass runs: this process's threads, or the Ray cluster ``execution`` names."""
    return ray_map(execution.ray_address) if execution.executor == "ray" else thread_map


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
