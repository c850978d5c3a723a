"""The audit page (``check --format html``): what it costs to draw, and how big it gets.

    python benchmarks/audit_page.py [IMAGE_DIR] [--findings 5000]

First the real audit of IMAGE_DIR (pixel checks only, property cache in a temp folder, so the first audit is cold):
the seconds of the audit, of drawing the page, the thumbnails decoded and the page's bytes. Then the worst case the
caps allow: ``--findings`` findings spread over every per-image check, duplicate groups of ten photos, as an audit
of 100,000 photos with thousands of findings would have; the same numbers for it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from datacheck.audit import audit_dataset
from datacheck.findings import AuditReport, Finding, Severity
from datacheck.html_report import render_html
from datacheck.settings import AuditSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHECKS = (
    "corrupt_image", "exact_duplicates", "conflicting_labels", "near_duplicates", "split_leakage", "tiny_image",
    "suspected_mislabel", "odd_aspect_ratio", "dark", "light", "blurry", "low_information", "grayscale",
)  # fmt: skip
MISLABEL = {"given": "roses", "likely": "tulips", "given_probability": 0.1, "likely_probability": 0.8}
GROUPS = frozenset({"exact_duplicates", "conflicting_labels", "near_duplicates", "split_leakage"})


def drawn(report: AuditReport) -> tuple[float, int, int]:
    """Seconds to draw the page, its pictures and its bytes."""
    started = time.perf_counter()
    page = render_html(report)
    return time.perf_counter() - started, page.count("<img "), len(page.encode("utf-8"))


def worst_case(root: Path, count: int) -> AuditReport:
    photos = sorted(path.relative_to(root).as_posix() for path in root.glob("*/*.jpg"))
    findings = []
    for index in range(count):
        check = CHECKS[index % len(CHECKS)]
        size = 10 if check in GROUPS else 1
        paths = tuple(photos[(index * 7 + offset) % len(photos)] for offset in range(size))
        details = MISLABEL if check == "suspected_mislabel" else {}
        findings.append(Finding(check, Severity.WARNING, paths, f"finding {index}", details, f"{check}:{index}"))
    return AuditReport(str(root), findings, 100_000, {}, list(CHECKS), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir", nargs="?", type=Path, default=DATA / "flowers-dev")
    parser.add_argument("--findings", type=int, default=5000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as cache:
        settings = AuditSettings().replace(skip=("suspected_mislabel", "outlier"), property_cache=Path(cache))
        started = time.perf_counter()
        report = audit_dataset(args.image_dir, settings)
        audit_seconds = time.perf_counter() - started
    seconds, pictures, size = drawn(report)
    print(f"{args.image_dir}: {report.images} images, {len(report.findings)} findings, audit {audit_seconds:.2f} s; "
          f"page {seconds:.2f} s, {pictures} thumbnails, {size:,} bytes")  # fmt: skip
    seconds, pictures, size = drawn(worst_case(args.image_dir, args.findings))
    print(f"worst case, {args.findings} findings over {len(CHECKS)} checks: "
          f"page {seconds:.2f} s, {pictures} thumbnails, {size:,} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
