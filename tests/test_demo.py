"""`make demo`'s command: the demo audits the bundled photos, retrains on them under the gate, and names both pages."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import run_cli


def test_demo_checks_then_trains_on_bundled_photos_and_names_the_two_pages() -> None:
    run = run_cli("demo", "--how-many-training-steps", "300")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "100 flower photos copied" in run.stdout
    check, train = run.stdout.index("$ retrain-ci check "), run.stdout.index("$ retrain-ci train ")
    assert "too_few_images" in run.stdout[check:train]  # the audit's findings, before training
    assert "--min-accuracy 0.7" in run.stdout[train:]
    assert re.search(r"Final test accuracy = [\d.]+% \(N=\d+\)", run.stdout)
    audit = Path(re.search(r"The audit, one page: +(\S+)", run.stdout)[1])
    report = Path(re.search(r"The model's report: +(\S+)", run.stdout)[1])
    assert audit.name == "audit.html" and "too_few_images" in audit.read_text(encoding="utf-8")
    assert report.name == "report.html" and report.is_file()
    model = Path(re.search(r"Saved model: (\S+)", run.stdout)[1])
    assert (model / "saved_model.pb").is_file()
    assert (model.parent / "output_labels.txt").read_text().split() == [
        "daisy", "dandelion", "roses", "sunflowers", "tulips",
    ]  # fmt: skip
