"""``suspected_mislabel`` on labels moved by a seeded draw (scikit-learn's handwritten digits and flowers-dev), and on
the suspects judged by eye (benchmarks/labels/).

    python benchmarks/mislabels.py [IMAGE_DIR] [--seeds 0 1 2 3] [--digits-fraction 0.02] [--flowers-planted 20]
        [--bottleneck-dir DIR] [--judged-only | --planted-only] [--planted digits flowers]

For each seed: the 1,797 digits as PNG files with 2% of them filed under another digit, and a copy of IMAGE_DIR
(hard links) with 20 photos moved to another class. Prints, for every suspect cleanlab finds (``all``, the check
before issue 26) and for the default's likely ones (``likely``), how many of the moved files it reports (recall) and
the share of the files left in place it reports (flagged). Then, on IMAGE_DIR, flowers-sample and the digits with no
move, how many suspects are mislabelled, ambiguous or of their class by benchmarks/labels/mislabels*.csv.

The choice data: seed 0 (digits and flowers) chose the cut ``LIKELY_FRACTION``, checked against flowers-sample's
judged suspects; its numbers are optimistic. Seeds 1-3 and the flowers-dev suspects outside flowers-sample played
no part in choosing.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from datacheck.audit import audit_dataset
from datacheck.findings import Severity
from datacheck.settings import AuditSettings
from retrain.core.settings import ModuleSettings
from retrain.training.bottlenecks import bottleneck_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from defects import digits_dataset, linked_or_copied, moved_labels  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = SHARED / "flowers-dev"
SAMPLE_DATA = SHARED / "flowers-sample"
LABELS = Path(__file__).resolve().parent / "labels"
CHOICE_SEED = 0  # the seed the cut was chosen on
VERDICTS = ("mislabelled", "ambiguous", "correct")


def flowers_dataset(image_dir: Path, root: Path, *, planted: int, seed: int) -> list[str]:
    """Hard links to every photo of ``image_dir`` (copies across file systems), ``planted`` of them under another
    class: the audit skips symbolic links that leave the dataset. Returns those."""
    photos = sorted(p for p in image_dir.rglob("*") if p.is_file())
    given = moved_labels([photo.parent.name for photo in photos], planted / len(photos), seed)
    moved = []
    for photo, label in zip(photos, given, strict=True):
        (root / label).mkdir(parents=True, exist_ok=True)
        linked_or_copied(photo, root / label / photo.name)
        if label != photo.parent.name:
            moved.append(f"{label}/{photo.name}")
    return moved


def suspects(root: Path, bottleneck_dir: Path) -> dict[str, set[str]]:
    """The files reported with ``--suspects all`` (every suspect cleanlab finds) and by default (the likely ones)."""
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir), only=("suspected_mislabel",))
    report = audit_dataset(
        root, settings.replace(mislabel_suspects="all"), bottlenecks=bottleneck_source(settings.module)
    )
    return {
        "all": {path for finding in report.findings for path in finding.paths},
        "likely": {
            path for finding in report.findings if finding.severity is Severity.WARNING for path in finding.paths
        },
    }


def planted(args: argparse.Namespace, scratch: Path, bottleneck_dir: Path) -> None:
    for name in args.planted:
        fresh: dict[str, list[int]] = {"all": [0, 0], "likely": [0, 0]}
        for seed in args.seeds:
            root = scratch / f"{name}-{seed}"
            if name == "digits":
                moved = digits_dataset(root, moved_fraction=args.digits_fraction, seed=seed)
            else:
                moved = flowers_dataset(args.image_dir, root, planted=args.flowers_planted, seed=seed)
            files = sum(1 for path in root.rglob("*") if not path.is_dir())
            role = "choice (optimistic)" if seed == CHOICE_SEED else "fresh"
            for which, flagged in suspects(root, bottleneck_dir).items():
                found = len(flagged & set(moved))
                print(
                    f"{name:8s} seed {seed} {role:20s} {which:6s} moved {len(moved):3d}  found {found:3d} "
                    f"({found / len(moved):6.1%})  flagged {len(flagged - set(moved)) / (files - len(moved)):6.2%}",
                    flush=True,
                )
                if seed != CHOICE_SEED:
                    fresh[which][0] += found
                    fresh[which][1] += len(moved)
        for which, (found, total) in fresh.items():
            if total:
                print(f"{name:8s} fresh seeds {which:6s}: found {found} of {total} moved ({found / total:.1%})")


def judged(name: str, root: Path, labels: Path, bottleneck_dir: Path, leave_out: set[str] = frozenset()) -> None:
    """Each suspect's verdict by eye, for every suspect and for the likely ones."""
    verdicts = {row["path"]: row["verdict"] for row in csv.DictReader(labels.open(encoding="utf-8"))}
    for which, flagged in suspects(root, bottleneck_dir).items():
        flagged = flagged - leave_out
        counts = [sum(verdicts.get(path) == verdict for path in flagged) for verdict in VERDICTS]
        unjudged = len(flagged) - sum(counts)
        print(
            f"{name:34s} {which:6s} flagged {len(flagged):3d}: "
            + ", ".join(f"{count} {verdict}" for count, verdict in zip(counts, VERDICTS, strict=True))
            + (f", {unjudged} not judged" if unjudged else ""),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--digits-fraction", type=float, default=0.02)
    parser.add_argument("--flowers-planted", type=int, default=20)
    parser.add_argument("--bottleneck-dir", type=Path, help="default: a scratch folder")
    parser.add_argument("--judged-only", action="store_true", help="only the suspects judged by eye")
    parser.add_argument("--planted-only", action="store_true", help="only the planted moves")
    parser.add_argument("--planted", nargs="+", choices=["digits", "flowers"], default=["digits", "flowers"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bottleneck_dir = args.bottleneck_dir or Path(scratch) / "bottlenecks"
        if not args.planted_only:
            judge_all(args.image_dir, Path(scratch), bottleneck_dir)
        if not args.judged_only:
            planted(args, Path(scratch), bottleneck_dir)


def judge_all(image_dir: Path, scratch: Path, bottleneck_dir: Path) -> None:
    """The judged suspects of flowers-dev (outside flowers-sample, the data reported on, and all), flowers-sample and
    the digits with none moved."""
    sample = {path.relative_to(SAMPLE_DATA).as_posix() for path in SAMPLE_DATA.rglob("*") if path.is_file()}
    judged("flowers-dev outside flowers-sample", image_dir, LABELS / "mislabels.csv", bottleneck_dir, sample)
    judged("flowers-dev", image_dir, LABELS / "mislabels.csv", bottleneck_dir)
    judged("flowers-sample (choice)", SAMPLE_DATA, LABELS / "mislabels.csv", bottleneck_dir)
    digits = scratch / "digits-unmoved"
    digits_dataset(digits, moved_fraction=0.0)
    judged("digits, none moved", digits, LABELS / "mislabels-digits.csv", bottleneck_dir)


if __name__ == "__main__":
    main()
