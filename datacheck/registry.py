"""The check registry: each check is a small class registered by id, so adding a check touches one file.

A check declares everything about itself on its class: its settings (a frozen dataclass, merged into AuditSettings by
flat name), the per-image measurements it adds to the one decoding pass, what else it needs (``needs``), how its
findings are compared with a baseline's and how they are drawn in reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.neighbours import KeptNeighbours, Neighbours
from retrain.core.dataset import ClassFolder, FolderScan
from retrain.core.errors import InputError

if TYPE_CHECKING:
    from datacheck.properties import Measurement
    from datacheck.settings import AuditSettings


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
    pair_counts: dict[str, int] | None = None  # look-alike pairs matched / taken from earlier audits' (reused)
    neighbour_counts: dict[str, int] | None = None  # rows whose neighbours were searched / kept from an earlier audit
    fold_counts: dict[str, int] | None = None  # suspected_mislabel's rows fitted / reused / predicted by a kept fit
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
            kept = KeptNeighbours(self.settings.cache_root)  # the lists of earlier audits
            readable = self.images["error"].isna().to_numpy()
            vectors = self.bottlenecks if readable.all() else self.bottlenecks[readable]  # not a copy of 100,000 rows
            cached = Neighbours.of(vectors, count, kept)
            self.derived["bottleneck_neighbours"] = cached
            self.neighbour_counts = kept.counts
            self.warnings += kept.warnings
        return cached.first(count)

    def folder_path(self, folder: ClassFolder) -> str:
        """A class folder as findings name it: relative to the dataset folder."""
        return folder.folder.relative_to(self.scan.root).as_posix()


class Need(Enum):
    """What a check needs besides the decoding pass's table; the audit computes it only when a selected check does."""

    BOTTLENECKS = "bottlenecks"  # cannot judge without them: the audit computes them (TensorFlow)
    # Judges on pixels alone, and finds more with bottlenecks: the audit computes them too, unless use_bottlenecks is
    # false, so that the check finds the same alone (--only) as in the default audit.
    BETTER_WITH_BOTTLENECKS = "better with bottlenecks"


class Check:
    """One kind of problem. ``run`` returns findings of this check's id only, and never raises on a bad file."""

    id: ClassVar[str]
    # What to do about this check's findings, in one line: reports show it once above them, not per finding.
    advice: ClassVar[str] = ""
    settings: ClassVar[type | None] = None  # a frozen dataclass of this check's thresholds, each by a flat name
    measurements: ClassVar[tuple[Measurement, ...]] = ()  # per-image values this check adds to the decoding pass
    needs: ClassVar[frozenset[Need]] = frozenset()
    # Baselines: a finding about which class an image is in changes when the image moves to another class.
    label_bound: ClassVar[bool] = False
    # A finding groups copies of one picture: an added file it groups with old ones is a copy of a photo already there.
    groups_copies: ClassVar[bool] = False

    def run(self, data: AuditData) -> list[Finding]:
        raise NotImplementedError

    def finding(self, severity: Severity, paths: Iterable[str], message: str, **details: Any) -> Finding:
        return Finding(self.id, severity, tuple(paths), message, details)

    @classmethod
    def describe(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        """A finding's own values as a report shows them beside it, (name, value): by default every value that is
        not kept per path."""
        return [(f"{key} =", value) for key, value in details.items() if not isinstance(value, dict)]

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        """The values that tell a finding apart, most telling first, as (name, value) with an empty name when the
        value says what it is: a terminal line keeps as many whole as fit. By default what ``describe`` shows."""
        return [(name.removesuffix(" =").replace("_", " "), value) for name, value in cls.describe(details)]

    @classmethod
    def per_path(cls, details: dict[str, Any], path: str) -> list[tuple[str, Any]]:
        """The values a finding keeps for one of its files (the split of each copy), as (name, value)."""
        return [(key, value[path]) for key, value in details.items() if isinstance(value, dict) and path in value]

    @classmethod
    def badges(cls, details: dict[str, Any]) -> list[str]:
        """Words a report shows as badges on the finding (what a group of look-alikes is); a finding with badges
        shows its own message where it is not the check's, since badges tell findings of one check apart."""
        return []

    @classmethod
    def score(cls, details: dict[str, Any]) -> float | None:
        """How strongly a finding stands out among its check's, higher first: the audit page sorts by it (None: the
        check has no such measure)."""
        return None

    @classmethod
    def missing_picture(cls, details: dict[str, Any]) -> str | None:
        """Why a file this check names has no thumbnail, when the finding knows (None: the report says why)."""
        return None


CHECKS: dict[str, type[Check]] = {}


def register(check: type[Check]) -> type[Check]:
    """Class decorator: make a check available by its id; reports list checks in registration order."""
    if check.id in CHECKS:
        raise ValueError(f"two checks are registered as {check.id!r}")
    CHECKS[check.id] = check
    return check


def registered_checks() -> dict[str, type[Check]]:
    """Every check, by id in report order (importing datacheck.checks registers them all)."""
    import datacheck.checks  # noqa: F401  (registers every check)

    return CHECKS


def check_class(check_id: str) -> type[Check]:
    """The check of a finding, for its reporting hooks; one this version no longer has (in a baseline): ``Check``."""
    return registered_checks().get(check_id, Check)


def selected_checks(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[type[Check]]:
    """The registered checks that ``--only`` and ``--skip`` leave, in registration order."""
    checks = registered_checks()
    only, skip = list(only), list(skip)
    unknown = [check_id for check_id in only + skip if check_id not in checks]
    if unknown:
        raise InputError(f"unknown check id {unknown[0]!r}; known checks: {', '.join(checks)}")
    return [check for check_id, check in checks.items() if (not only or check_id in only) and check_id not in skip]


def wants_bottlenecks(settings: AuditSettings) -> bool:
    """Whether the audit these settings ask for computes bottlenecks (and so loads TensorFlow): a selected check needs
    them, or finds more with them and ``use_bottlenecks`` is on. The one rule the audit and its shells follow."""
    wanted = {Need.BOTTLENECKS} | ({Need.BETTER_WITH_BOTTLENECKS} if settings.use_bottlenecks else set())
    return any(check.needs & wanted for check in selected_checks(settings.only, settings.skip))
