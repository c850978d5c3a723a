"""The audit's settings: its own, plus every registered check's, all set by one flat name (``overexposed_clipped``).

A check declares its thresholds in its own module (a small frozen dataclass, ``Check.settings``); they join the
audit's settings here as the ``checks`` section, so the settings file, the options and ``replace`` name them as before.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.core.errors import InputError
from retrain.core.settings import (
    FAIL_ON,
    AcceptedFinding,
    ExecutionSettings,
    ModuleSettings,
    SplitSettings,
    replace_flat,
)


def check_settings() -> Any:
    """Every registered check's own settings at their defaults: one field per check that has some, by check id."""
    return check_settings_type()()


@functools.cache
def check_settings_type() -> type:
    """The frozen dataclass holding each check's settings; a flat name two checks (or the audit) declare is refused."""
    from datacheck.registry import registered_checks

    taken = {f.name for f in dataclasses.fields(AuditSettings)}
    sections = []
    for check_id, check in registered_checks().items():
        if check.settings is None:
            continue
        for name in (f.name for f in dataclasses.fields(check.settings)):
            if name in taken:
                raise ValueError(f"check {check_id!r} declares setting {name!r}, which another setting already has")
            taken.add(name)
        sections.append((check_id, check.settings, field(default_factory=check.settings)))
    made = dataclasses.make_dataclass("CheckSettings", sections, frozen=True)
    made.__module__ = __name__
    return made


def __getattr__(name: str) -> Any:
    """``CheckSettings`` is made once every check is registered; by name here, so that settings can be pickled."""
    if name == "CheckSettings":
        return check_settings_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class AuditSettings:
    """Every setting of the audit; the defaults are tuned on the tutorial's flower photos to flag no normal photo."""

    # Shared with `retrain-ci train`, so the audit sees the splits and the bottleneck cache that training uses.
    split: SplitSettings = field(default_factory=SplitSettings)
    module: ModuleSettings = field(default_factory=ModuleSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    # Each check's own thresholds (datacheck/checks/<check>.py), by check id; read them by flat name.
    checks: Any = field(default_factory=check_settings)
    # Classes: the tutorial asks for at least a hundred photos per class; fewer than 20 rarely trains at all.
    min_images: int = 20
    recommended_images: int = 100
    max_imbalance: float = 3.0
    # Duplicates. Candidates: perceptual hashes at most this many bits apart (of 64), or bottlenecks (when the audit
    # computes them) at least this cosine similarity and this much above the two photos' typical similarity to their
    # nearest neighbours (on flowers-dev about 300 candidate pairs, 11 s to verify on 2 cores).
    near_duplicate_bits: int = 4
    near_duplicate_similarity: float = 0.75
    near_duplicate_margin: float = 0.05
    # A candidate is one picture or one scene when this many keypoints agree on one similarity transform (RANSAC, also
    # mirrored): of the pairs judged by eye on flowers-dev and flowers-sample (benchmarks/labels/pairs.csv), different
    # pictures matched at most 9 on a sound transform, 13 of 19 shots of one scene 12 and more. It is one picture (an
    # edited or re-encoded copy), not another shot, when the aligned photos' fine detail correlates this well: shots of
    # one scene at most 0.57 (two exposures of one tulip bed from a tripod), edited copies at least 0.75, and planted
    # crops, mirrors, rotations, colour edits, JPEG quality 30 and collages of 12 flowers-dev photos 0.72 and up.
    near_duplicate_inliers: int = 12
    near_duplicate_detail: float = 0.65
    # Image quality, measured on the image scaled to fit 256x256.
    min_side: int = 100
    max_aspect_ratio: float = 3.0
    dark_highlights: float = 0.25
    light_shadows: float = 0.75
    low_information_contrast: float = 0.03
    grayscale_colourfulness: float = 0.06
    # Outliers: a photo's distance to its nearest photos this many robust standard deviations above its class's
    # typical one; flags 13 of the 1,837 flowers-dev photos: 7 show no flower (a sign, a bus, a painting, ...), 6
    # show one as a small part of another scene.
    outlier_score: float = 3.0
    # Labels and shortcuts, from cross-validated classifiers.
    cross_validation_folds: int = 5
    max_shortcut_skill: float = 0.6  # balanced accuracy rescaled so chance is 0 and perfect is 1
    # Where each image's measured properties are cached by content; None: beside the bottlenecks (bottleneck_dir).
    property_cache: Path | None = None
    # Checks that find more with bottlenecks (near_duplicates) make the audit compute them, as the default audit does,
    # so a check finds the same alone; false: they compare pixels alone, without TensorFlow.
    use_bottlenecks: bool = True
    # Which checks run and what fails the gate.
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    fail_on: str = "error"
    # Against an earlier audit (`check --format json`): what changed, and optionally a gate on new findings only, so
    # that a dataset's old debts do not block every pull request.
    baseline: Path | None = None
    fail_on_new: bool = False
    accepted: tuple[AcceptedFinding, ...] = ()

    def __post_init__(self) -> None:
        if self.fail_on not in FAIL_ON:
            raise InputError(f"fail-on must be one of {', '.join(FAIL_ON)}, not {self.fail_on!r}")
        if self.cross_validation_folds < 2:
            raise InputError("cross-validation-folds must be at least 2")

    @property
    def cache_root(self) -> Path:
        """Where the audit keeps what it learns between runs (properties, pair matches, neighbour lists, fits):
        ``property_cache``, else beside the bottlenecks, so whatever keeps the bottleneck cache keeps it all."""
        return Path(self.property_cache or self.module.bottleneck_dir)

    def __getattr__(self, name: str) -> Any:
        """A check's own setting by its flat name (``settings.overexposed_clipped``), as the checks read them."""
        if name.startswith("__") or name == "checks":
            raise AttributeError(name)
        for section in vars(self.checks).values():
            if name in {f.name for f in dataclasses.fields(section)}:
                return getattr(section, name)
        raise AttributeError(f"{type(self).__name__!r} has no setting {name!r}")

    def replace(self, **changes: Any) -> AuditSettings:
        """A copy with the given settings changed, by flat name (``testing_percentage`` too); None leaves one as is."""
        return replace_flat(self, {name: value for name, value in changes.items() if value is not None})
