"""A user asks the command line about itself: its version, its help at 80 columns, completion; it answers fast."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from retrain.cli import app

REPO = Path(__file__).resolve().parents[1]
PANELS = {"Data", "Training", "Mirror images", "Distortions", "Fine-tuning", "Model", "Checks", "Outputs", "Gate"} | {
    "Cache and executor"
}
HEAVY = ("tensorflow", "pandas", "sklearn", "scipy", "cv2", "numpy", "PIL", "faiss", "jinja2")


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and group the user can ask --help of, with the words that name it."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _help(words: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": None})
    assert result.exit_code == 0, result.output
    return result.stdout


def _retrain_ci(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The command as a shell runs it (``python -m retrain`` names itself retrain-ci, as the installed script does)."""
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args], capture_output=True, text=True, env=os.environ | env, timeout=60
    )


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_packages(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0
    assert result.stdout == f"retrain-ci {version('retrain-ci')}\n"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'\nversion = "{version("retrain-ci")}"\n' in pyproject  # one source: pyproject.toml's


@pytest.mark.parametrize("words", [words for words, _ in COMMANDS], ids=lambda words: " ".join(words) or "retrain-ci")
def test_help_at_80_columns_keeps_every_option_whole(words: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[words]
    shown = _help(words)
    names = set(re.findall(r"(?<![\w-])--?[\w-]+", shown))
    for param in command.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                assert name in names, f"{name} is cut or missing in:\n{shown}"
    assert "…" not in shown
    assert "<bool>" not in shown  # a flag takes no value
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_train_help_groups_its_options_into_panels() -> None:
    shown = _help(("train",))
    titles = [line.split("─")[1].strip() for line in shown.splitlines() if line.startswith("╭─")]
    assert titles == [
        "Arguments",
        "Options",
        "Data",
        "Training",
        "Mirror images",
        "Distortions",
        "Fine-tuning",
        "Outputs",
        "Gate",
        "Cache and executor",
    ]
    assert len(shown.splitlines()) < 200  # 254 lines in one panel before


def test_commands_share_their_panel_names() -> None:
    """The same kind of option sits under the same title in every command (the gate's options under Gate, ...)."""
    used = {getattr(param, "rich_help_panel", None) for _, command in COMMANDS for param in command.params} - {None}
    assert used == PANELS


def test_help_imports_no_heavy_library() -> None:
    """``retrain-ci --help`` (and every command's) answers at once: the libraries the work needs load with the work."""
    asks = [[*words, "--help"] for words, _ in COMMANDS]
    code = (
        "import sys\n"
        "from retrain.cli import app\n"
        f"for args in {asks!r}:\n"
        "    try:\n"
        "        app(args, prog_name='retrain-ci')\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert "Usage: retrain-ci train" in result.stdout


def test_shell_completion_shows_a_script_and_completes_commands_and_options() -> None:
    script = _retrain_ci("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert script.returncode == 0, script.stderr
    assert "_RETRAIN_CI_COMPLETE=complete_bash" in script.stdout
    completion = {"_RETRAIN_CI_COMPLETE": "complete_bash"}
    commands = _retrain_ci(**completion, COMP_WORDS="retrain-ci tr", COMP_CWORD="1")
    assert commands.stdout.split() == ["train"]
    # after a flag in the tutorial's spelling, the next one still completes
    words = "retrain-ci train --how_many_training_steps 5 --eval"
    options = _retrain_ci(**completion, COMP_WORDS=words, COMP_CWORD="4")
    assert options.stdout.split() == ["--eval-step-interval"]


def test_install_completion_in_the_tutorials_spelling(tmp_path: Path) -> None:
    """The snake_case flags of the tutorial are accepted everywhere, the completion's own flags included."""
    result = _retrain_ci(
        "--install_completion", "bash", HOME=str(tmp_path), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"
    )
    assert result.returncode == 0, result.stderr
    assert "_RETRAIN_CI_COMPLETE" in (tmp_path / ".bash_completions" / "retrain-ci.sh").read_text()
    assert "retrain-ci.sh" in (tmp_path / ".bashrc").read_text()
