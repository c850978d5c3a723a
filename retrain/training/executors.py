"""Where per-image work runs, chosen once by name: each executor joins its workers, maps the audit's per-image pass
and computes the bottlenecks the cache lacks.

Without TensorFlow or Ray at import, so that the audit's workers (and ``check`` without bottleneck checks) never
import them, and the command line reads the names for ``--executor`` cheaply; each executor imports its heavy half
(``features.local_batches``, ``ray_executor``) when it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from retrain.core.errors import InputError
from retrain.core.per_image import ItemMap, thread_map
from retrain.core.settings import ExecutionSettings

if TYPE_CHECKING:
    from retrain.training.features import Batch, FeatureRunner
    from retrain.training.modules import ImageModule


@runtime_checkable
class Executor(Protocol):
    """What an ``--executor`` owns; built from the run's ``ExecutionSettings`` by ``executor_for``."""

    def connect(self) -> None:
        """Before any work or output: make sure the workers can be reached, or raise one line of InputError."""

    def per_image_map(self) -> ItemMap:
        """The map the audit's per-image pass (decoding, measuring) runs through."""

    def bottleneck_batches(
        self, missing: list[tuple[int, Path]], module: ImageModule, runner: FeatureRunner | None, mirrored: bool
    ) -> Iterator[Batch]:
        """The missing (row, path) pairs' batches, as ``features.local_batches`` yields them; this process
        writes them to the cache. ``runner`` is the caller's choice of local runner, if any."""


@dataclass(frozen=True)
class LocalExecutor:
    """This process: threads decode while the module runs."""

    execution: ExecutionSettings

    def connect(self) -> None:
        """Nothing to join: this process is already running."""

    def per_image_map(self) -> ItemMap:
        return thread_map

    def bottleneck_batches(
        self, missing: list[tuple[int, Path]], module: ImageModule, runner: FeatureRunner | None, mirrored: bool
    ) -> Iterator[Batch]:
        from retrain.training.features import local_batches

        if runner is None:
            from retrain.training.modules.runners import feature_runner  # TensorFlow: only when no runner is given

            runner = feature_runner(module)
        return local_batches(missing, runner, mirrored)


@dataclass(frozen=True)
class RayExecutor:
    """A Ray cluster at ``execution.ray_address``: Ray Data actors run the module converted to TFLite."""

    execution: ExecutionSettings

    def connect(self) -> None:
        from retrain.training.ray_executor import connect

        connect(self.execution.ray_address)

    def per_image_map(self) -> ItemMap:
        from retrain.training.ray_executor import ray_map

        return ray_map(self.execution.ray_address)

    def bottleneck_batches(
        self, missing: list[tuple[int, Path]], module: ImageModule, runner: FeatureRunner | None, mirrored: bool
    ) -> Iterator[Batch]:
        from retrain.training.modules.runners import converted_module
        from retrain.training.ray_executor import ray_batches

        try:
            model = converted_module(module)
        except Exception as error:  # the converter raises many types; any means this module has no TFLite form
            raise InputError(
                f"--executor ray runs modules converted to TFLite, and {module.name} does not convert ({error}); "
                "use --executor local"
            ) from None
        sizes = (module.image_size, module.feature_size)
        return ray_batches(missing, model, sizes, mirrored=mirrored, address=self.execution.ray_address)


# The executors by the name ``--executor`` and the settings file give; the core validates settings against
# ``retrain.core.settings.EXECUTORS``, which a test keeps equal to these names.
EXECUTORS: dict[str, Callable[[ExecutionSettings], Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def executor_for(execution: ExecutionSettings) -> Executor:
    """The executor ``execution`` names: the one place that reads the name."""
    return EXECUTORS[execution.executor](execution)
