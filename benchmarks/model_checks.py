"""The model-based checks' cost on a pull request, and how a re-audit that reuses kept fits agrees with a cold one.

    python benchmarks/model_checks.py [IMAGE_DIR]

Builds pr_gate.py's pull request (IMAGE_DIR, default flowers-dev, less 20 photos as main; those back and 20 edited
copies as the head) and stability.py's (100 photos held back by seed 0, then 10 and 100 of them added), computes their
bottlenecks once in a scratch cache, then runs the checks in this process. For `suspected_mislabel`, each scenario and
each ``--suspects``: main audited with a kept-fit folder, the head re-audited with it (warm) and with an empty one
(cold), as the check runs by default (below ``REFIT_ROWS`` every audit refits) and as a larger dataset runs (reuse
forced): seconds, and the photos only the warm or only the cold audit reports. For `shortcut_bias`: each scenario's
skill warm (judged from main's kept fit) and cold, and how far apart at most (what ``SKILL_MARGIN`` must exceed);
seconds and skill on the head, and on a 20,000-row property table (the head's rows repeated with 2% noise).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TREE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TREE), str(TREE / "benchmarks")]

from pr_gate import pull_request, split_off  # noqa: E402

import datacheck.models  # noqa: E402
from datacheck.audit import audit_data  # noqa: E402
from datacheck.checks.bias import SKILL_MARGIN, TRIVIAL_STATISTICS, ShortcutBias  # noqa: E402
from datacheck.checks.labels import SuspectedMislabel  # noqa: E402
from datacheck.registry import AuditData  # noqa: E402
from datacheck.settings import AuditSettings  # noqa: E402
from retrain.app.audit import _bottlenecks_on_demand  # noqa: E402
from retrain.core.settings import ModuleSettings  # noqa: E402

DEFAULT_DATA = TREE.parent / "shared" / "data" / "flowers-dev"
DEFAULT_REFIT_ROWS = datacheck.models.REFIT_ROWS


def suspects(data: AuditData, kept: Path, which: str) -> tuple[float, set[str]]:
    data.settings = data.settings.replace(property_cache=kept, mislabel_suspects=which)
    started = time.perf_counter()
    findings = SuspectedMislabel().run(data)
    return time.perf_counter() - started, {finding.paths[0] for finding in findings}


def subset(data: AuditData, rows: np.ndarray) -> AuditData:
    part = copy.copy(data)
    part.images, part.bottlenecks = data.images[rows].reset_index(drop=True), data.bottlenecks[rows]
    return part


def shortcut(data: AuditData, kept: Path) -> tuple[float, float]:
    """Seconds and skill of ``shortcut_bias`` on ``data``, with its kept fits in ``kept``."""
    data = copy.copy(data)
    # Always a finding, to read its skill; far below any skill, so that a kept fit is trusted as at the default.
    data.settings = data.settings.replace(max_shortcut_skill=-1.0, property_cache=kept)
    started = time.perf_counter()
    (finding,) = ShortcutBias().run(data)
    return time.perf_counter() - started, finding.details["skill"]


def report_shortcut(name: str, data: AuditData, kept: Path) -> None:
    shutil.rmtree(kept, ignore_errors=True)
    seconds, skill = shortcut(data, kept)
    print(f"shortcut_bias {name}: {seconds:.2f} s, skill {skill:.4f}")


def shortcut_drift(name: str, before: AuditData, after: AuditData, work: Path) -> float:
    """Prints the skill of ``after`` judged from ``before``'s kept fit (warm) and cold; returns how far apart."""
    for folder in (work / "kept", work / "cold"):
        shutil.rmtree(folder, ignore_errors=True)
    main_seconds, main_skill = shortcut(before, work / "kept")
    warm_seconds, warm_skill = shortcut(after, work / "kept")
    cold_seconds, cold_skill = shortcut(after, work / "cold")
    print(f"shortcut_bias {name:14s}: main skill {main_skill:.4f} ({main_seconds:.2f} s), warm {warm_skill:.4f} "
          f"({warm_seconds:.2f} s), cold {cold_skill:.4f} ({cold_seconds:.2f} s); warm - cold "
          f"{warm_skill - cold_skill:+.4f}", flush=True)  # fmt: skip
    return abs(warm_skill - cold_skill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image_dir", type=Path, nargs="?", default=DEFAULT_DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        main_tree, head_tree = work / "main", work / "head"
        pull_request(main_tree, head_tree, args.image_dir, split_off(args.image_dir, main_tree, 20), 20)
        settings = AuditSettings(module=ModuleSettings(bottleneck_dir=work / "bottlenecks"))
        main_data, head = (
            audit_data(tree, settings.replace(property_cache=work / f"properties-{tree.name}"),
                       bottlenecks=_bottlenecks_on_demand(settings))
            for tree in (main_tree, head_tree)
        )  # fmt: skip
        originals = ~head.images["path"].str.contains("edited-").to_numpy()
        held = random.Random(0).sample(sorted(head.images["path"][originals]), 100)  # stability.py's draw
        scenarios = {"pr_gate +40": (main_data, head)}
        base = subset(head, originals & ~head.images["path"].isin(held).to_numpy())
        for added in (10, 100):
            kept_back = head.images["path"].isin(held[added:]).to_numpy()
            scenarios[f"stability +{added}"] = (base, subset(head, originals & ~kept_back))
        for name, (before, after) in scenarios.items():
            new = set(after.images["path"]) - set(before.images["path"])
            for mode, refit_rows in (("default", DEFAULT_REFIT_ROWS), ("reuse", 0)):
                datacheck.models.REFIT_ROWS = refit_rows
                for which in ("likely", "all"):
                    kept, cold_kept = work / "kept", work / "cold"
                    for folder in (kept, cold_kept):
                        shutil.rmtree(folder, ignore_errors=True)
                    main_seconds, old = suspects(before, kept, which)
                    warm_seconds, warm = suspects(after, kept, which)
                    cold_seconds, cold = suspects(after, cold_kept, which)
                    print(
                        f"suspected_mislabel {name:14s} {mode:7s} {which:6s}: main {len(old):2d} "
                        f"({main_seconds:.2f} s), warm {len(warm):2d} ({warm_seconds:.2f} s), cold {len(cold):2d} "
                        f"({cold_seconds:.2f} s); only warm {len(warm - cold)} ({len((warm - cold) & new)} new), "
                        f"only cold {len(cold - warm)} ({len((cold - warm) & new)} new); cold vs main, untouched "
                        f"photos entering {len(cold - old - new)}, leaving {len(old - cold)}",
                        flush=True,
                    )
        drift = max(shortcut_drift(name, before, after, work) for name, (before, after) in scenarios.items())
        print(f"shortcut_bias: a kept fit's skill at most {drift:.4f} from a cold audit's (SKILL_MARGIN "
              f"{SKILL_MARGIN})")  # fmt: skip
        report_shortcut("pr_gate head", head, work / "kept")
        rows = head.images[head.images["error"].isna()]
        large = pd.concat([rows] * (20_000 // len(rows) + 1), ignore_index=True).iloc[:20_000].copy()
        noise = np.random.default_rng(0)
        for column in TRIVIAL_STATISTICS:
            large[column] = large[column] * noise.normal(1, 0.02, len(large))
        large["sha1"] = [hashlib.sha1(str(row).encode()).hexdigest() for row in range(len(large))]
        wide = copy.copy(head)
        wide.images = large
        report_shortcut("20,000 rows", wide, work / "kept")


if __name__ == "__main__":
    main()
