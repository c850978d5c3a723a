"""The README's first command: the demo retrains on the bundled photos and says where the model is."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import run_cli


def test_demo_runs_the_whole_flow_on_bundled_photos() -> None:
    run = run_cli("demo", "--how-many-training-steps", "300")
    assert run.exit_code == 0, run.stderr
    assert "100 flower photos copied" in run.stdout
    assert re.search(r"Final test accuracy = [\d.]+% \(N=\d+\)", run.stdout)
    model = Path(re.search(r"Saved model: (\S+)", run.stdout)[1])
    assert (model / "saved_model.pb").is_file()
    assert (model.parent / "output_labels.txt").read_text().split() == [
        "daisy", "dandelion", "roses", "sunflowers", "tulips",
    ]  # fmt: skip
