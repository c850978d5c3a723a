"""The README as a user reads it: short, and every shell command in it runs as written on the bundled demo photos."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from retrain.cli.demo import DEMO_DATA

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Lines a test cannot run as written: installs from the network (marked `# install` in the README) and the make
# targets, which test_demo.py (`make demo` runs `retrain-ci demo`) and the suite itself (`make test`) cover.
MAKE_TARGETS = ["make demo", "make test"]


def shell_lines(text: str) -> list[tuple[str, str]]:
    """Each line of the README's ```sh and ```bash blocks, as (command, comment)."""
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            command, _, comment = line.partition(" #")
            if command.strip():
                lines.append((command.strip(), comment.strip()))
    return lines


def runnable(text: str) -> list[str]:
    return [c for c, comment in shell_lines(text) if not comment.startswith("install") and c not in MAKE_TARGETS]


def test_readme_leads_with_the_job_in_under_150_lines() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 150
    installs = [c for c, comment in shell_lines(text) if comment.startswith("install")]
    assert installs and all(c.startswith(("pip install ", "git clone ")) for c in installs)
    assert [c for c, _ in shell_lines(text) if c.startswith("make ")] == MAKE_TARGETS
    assert any(c.startswith('pip install "retrain-ci[ray]') for c in installs)
    commands = runnable(text)
    assert any(c.startswith("retrain-ci check ") for c in commands)
    assert any(c.startswith("retrain-ci train ") and "--min-accuracy" in c for c in commands)
    assert text.index("retrain-ci check ") < text.index("## Reference")  # the commands come before the reference


def test_the_readmes_workflow_step_uses_the_actions_own_inputs() -> None:
    """The Action's YAML in the README names the action's folder and only inputs it declares, the required ones too."""
    (block,) = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    (step,) = [step for step in yaml.safe_load(block) if "/.github/actions/retrain-ci@" in step.get("uses", "")]
    action = yaml.safe_load((REPO / ".github" / "actions" / "retrain-ci" / "action.yml").read_text())
    inputs = action["inputs"]
    assert set(step["with"]) <= set(inputs)
    assert {name for name, spec in inputs.items() if spec.get("required")} <= set(step["with"])


def test_readme_commands_run_as_written_on_the_demo_photos(tmp_path: Path, bottleneck_dir: Path) -> None:
    """In a folder holding the demo photos as ``photos/``, each command exits 0 and leaves what the README says."""
    shutil.copytree(DEMO_DATA, tmp_path / "photos")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The venv's retrain-ci on this tree's code, with the session's bottleneck cache (never the shared /tmp default).
    script = bin_dir / "retrain-ci"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'case "$1" in check|train) set -- "$@" --bottleneck-dir "{bottleneck_dir}";; esac\n'
        f'exec {sys.executable} -c \'from retrain.cli import app; app(prog_name="retrain-ci")\' "$@"\n'
    )
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    for command in runnable(README.read_text(encoding="utf-8")):
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
    assert (tmp_path / "audit.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert (tmp_path / "model" / "report" / "report.html").is_file()
    assert (tmp_path / "model" / "saved_model" / "saved_model.pb").is_file()
