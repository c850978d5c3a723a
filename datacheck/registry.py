"""The check registry: each check is a small class registered by id, so adding a check touches one file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.neighbours import Neighbours
from retrain.core.dataset import ClassFolder, FolderScan
from retrain.core.errors import InputError
from retrain.core.settings import AuditSettings


@dataclass
class AuditData:
    """Everything the checks look at, computed once per audit."""

    scan: FolderScan
    images: pd.DataFrame  # datacheck.properties.image_properties: one row per image file
    settings: AuditSettings
    # One row per row of ``images``; NaN where the image has none (unreadable). None when no selected check needs them.
    bottlenecks: np.ndarray | None = None
    bottleneck_counts: dict[str, int] | None = None  # computed / reused from the cache
    bottleneck_warnings: list[str] = field(default_factory=list)  # e.g. a damaged cache shard, for the shell to show
    property_counts: dict[str, int] | None = None  # images decoded (computed) / taken from the property cache (reused)
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged property-cache shard
    derived: dict[str, Any] = field(default_factory=dict)  # what several checks share, computed once (picture groups)

    def readable(self) -> pd.DataFrame:
        """The images that decoded."""
        return self.images[self.images["error"].isna()]

    def bottleneck_neighbours(self, count: int) -> Neighbours:
        """The readable images' bottlenecks and each one's ``count`` nearest (rows are positions in ``readable()``):
        one search per audit, shared by the checks that compare photos by their features."""
        cached = self.derived.get("bottleneck_neighbours")
        if cached is None or cached.indices.shape[1] < min(count, len(cached.rows)):
            cached = Neighbours.of(self.bottlenecks[self.images["error"].isna().to_numpy()], count)
            self.derived["bottleneck_neighbours"] = cached
        return cached.first(count)

    def folder_path(self, folder: ClassFolder) -> str:
        """A class folder as findings name it: relative to the dataset folder."""
        return folder.folder.relative_to(self.scan.root).as_posix()


class Check:
    """One kind of problem. ``run`` returns findings of this check's id only, and never raises on a bad file."""

    id: ClassVar[str]
    needs_bottlenecks: ClassVar[bool] = False  # the audit computes bottlenecks (TensorFlow) when a selected check does

    def run(self, data: AuditData) -> list[Finding]:
        raise NotImplementedError

    def finding(self, severity: Severity, paths: Iterable[str], message: str, **details: Any) -> Finding:
        return Finding(self.id, severity, tuple(paths), message, details)


CHECKS: dict[str, type[Check]] = {}


def register(check: type[Check]) -> type[Check]:
    """Class decorator: make a check available by its id; reports list checks in registration order."""
    if check.id in CHECKS:
        raise ValueError(f"two checks are registered as {check.id!r}")
    CHECKS[check.id] = check
    return check


def selected_checks(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[type[Check]]:
    """The registered checks that ``--only`` and ``--skip`` leave, in registration order."""
    import datacheck.checks  # noqa: F401  (registers every family)

    only, skip = list(only), list(skip)
    unknown = [check_id for check_id in only + skip if check_id not in CHECKS]
    if unknown:
        raise InputError(f"unknown check id {unknown[0]!r}; known checks: {', '.join(CHECKS)}")
    return [check for check_id, check in CHECKS.items() if (not only or check_id in only) and check_id not in skip]
