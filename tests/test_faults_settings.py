"""Where settings come from, and what `check --accept` does to the file (issue 30, points 3 and 9): never from inside
the dataset, always named on stderr, a non-UTF-8 file or reason one error line, the user's file kept as it was."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import tomllib

from retrain.core.errors import InputError
from retrain.core.settings_file import record_accepted
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

pytest_plugins = ["pytester"]

IGNORED = "inside the dataset (settings come from the working directory or --config)"
LATIN_1 = b"# caf\xe9\n[tool.retrain-ci]\n"


@pytest.fixture
def project(flowers_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository (the working directory) whose data/ holds 2 classes of 12 photos and one truncated JPEG."""
    data = copy_dataset(
        tmp_path / "data", {label: sample_photos(flowers_sample, label, 12) for label in ("daisy", "roses")}
    )
    photo = next((data / "roses").glob("*.jpg"))
    (data / "roses" / "truncated.jpg").write_bytes(photo.read_bytes()[:500])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(project: Path, *args: str | Path) -> CliRun:
    return run_cli("check", project / "data", "--only", "corrupt_image", "--bottleneck-dir", project / "cache", *args)


def _fingerprint(project: Path) -> str:
    (finding,) = json.loads(_check(project, "--format", "json").stdout)["findings"]
    return finding["fingerprint"]


def _assert_one_error_line(run: CliRun, *fragments: str) -> None:
    assert run.exit_code == 2, run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(fragment in line for fragment in fragments), line


def test_a_settings_file_inside_the_dataset_cannot_weaken_the_gate_and_the_run_says_so(project: Path) -> None:
    (project / "data" / "retrain-ci.toml").write_text('skip = ["corrupt_image"]\nfail-on = "never"\n')
    (project / "data" / "pyproject.toml").write_text('[tool.retrain-ci]\nfail-on = "never"\n')
    run = _check(project, "--fail-on", "error")
    assert run.exit_code == 1, run.stderr  # the corrupt photo still fails the gate
    assert run.stderr.splitlines()[-3:] == [
        f"warning: ignored {project / 'data' / 'retrain-ci.toml'} {IGNORED}",
        f"warning: ignored {project / 'data' / 'pyproject.toml'} {IGNORED}",
        "settings: none (defaults)",
    ]


def test_the_working_directory_inside_the_dataset_is_no_way_around_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "data" / "retrain-ci.toml").write_text('skip = ["corrupt_image"]\n')
    monkeypatch.chdir(project / "data")
    run = run_cli("check", ".", "--only", "corrupt_image", "--bottleneck-dir", project / "cache")
    assert run.exit_code == 1 and run.stderr.splitlines()[-1] == "settings: none (defaults)"
    assert f"warning: ignored retrain-ci.toml {IGNORED}" in run.stderr.splitlines()
    fingerprint = _fingerprint(project)  # --accept would write a file the next run ignores: refused before the audit
    run = run_cli(
        "check", ".", "--only", "corrupt_image", "--bottleneck-dir", project / "cache", "--accept", fingerprint
    )
    _assert_one_error_line(run, "the working directory is inside the dataset", "--config")


def test_check_and_cache_prune_name_the_settings_file_they_used(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.retrain-ci]\nfail-on = "never"\n')
    run = _check(project)
    assert run.exit_code == 0 and run.stderr.splitlines()[-1] == f"settings: {project / 'pyproject.toml'}"
    given = project / "strict.toml"
    given.write_text('fail-on = "error"\n')
    run = _check(project, "--config", given)
    assert run.exit_code == 1 and run.stderr.splitlines()[-1] == f"settings: {given}"
    run = run_cli("cache", "prune", project / "data", "--bottleneck-dir", project / "cache")
    assert run.exit_code == 0 and run.stderr.splitlines() == [f"settings: {project / 'pyproject.toml'}"]


def test_train_and_evaluate_name_the_settings_file_they_used(project: Path, bottleneck_dir: Path) -> None:
    (project / "data" / "roses" / "truncated.jpg").unlink()
    (project / "data" / "retrain-ci.toml").write_text("min-accuracy = 0.0\n")
    (project / "retrain-ci.toml").write_text("min-accuracy = 0.1\n")
    train = run_cli(
        "train", project / "data", "--bottleneck-dir", bottleneck_dir, "--output-dir", project / "run",
        "--how-many-training-steps", "20", "--random-seed", "1",
    )  # fmt: skip
    assert train.exit_code == 0, train.stdout + train.stderr
    expected = [
        f"warning: ignored {project / 'data' / 'retrain-ci.toml'} {IGNORED}",
        f"settings: {project}/retrain-ci.toml",
    ]
    assert train.stderr.splitlines()[-2:] == expected
    evaluate = run_cli("evaluate", project / "run" / "saved_model", project / "data")
    assert evaluate.exit_code == 0, evaluate.stdout + evaluate.stderr
    assert evaluate.stderr.splitlines()[-2:] == expected


@pytest.mark.parametrize(
    "command",
    [("check", "data"), ("cache", "prune", "data"), ("train", "data"), ("evaluate", "no-model", "data")],
    ids=lambda command: command[0],
)
def test_a_settings_file_that_is_not_utf8_is_one_error_line(project: Path, command: tuple[str, ...]) -> None:
    (project / "pyproject.toml").write_bytes(LATIN_1)
    run = run_cli(*command)
    _assert_one_error_line(run, str(project / "pyproject.toml"), "is not UTF-8 text (byte 0xe9 at offset 5)")


def test_the_plugin_names_its_settings_file_in_the_header(pytester: pytest.Pytester, project: Path) -> None:
    (project / "data" / "retrain-ci.toml").write_text('skip = ["corrupt_image"]\n')
    (project / "retrain-ci.toml").write_text('fail-on = "error"\n')  # the rootdir: pytest runs in the project
    result = pytester.runpytest(f"--retrain-data={project / 'data'}", "--co", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            f"retrain-ci warning: ignored {project / 'data' / 'retrain-ci.toml'} {IGNORED}",
            f"retrain-ci settings: {project / 'retrain-ci.toml'}",
        ]
    )
    (project / "retrain-ci.toml").write_bytes(b"# caf\xe9\n")
    result = pytester.runpytest(f"--retrain-data={project / 'data'}", "--co", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["error: config file *retrain-ci.toml is not UTF-8 text (byte 0xe9 at offset 5)*"])
    assert "Traceback" not in result.stdout.str() and "UnicodeDecodeError" not in result.stdout.str()


def test_a_reason_that_is_not_utf8_is_refused_before_the_audit(project: Path) -> None:
    run = _check(project, "--accept", _fingerprint(project), "--reason", "caf\udcff")
    _assert_one_error_line(run, "the reason 'caf\\xff' is not UTF-8 text")
    assert not (project / "retrain-ci.toml").exists()


def test_accept_adds_only_its_entries_to_the_users_file(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    original = (
        '[project]\nname = "flowers"  # ours\n\n[tool.retrain-ci]\nfail-on = "error"  # strict\n\n[tool.other]\nx = 1\n'
    )
    pyproject.write_text(original)
    fingerprint = _fingerprint(project)
    assert _check(project, "--accept", fingerprint, "--reason", 'on "purpose"').exit_code == 0
    added = f'[[tool.retrain-ci.accepted]]\nfingerprint = "{fingerprint}"\nreason = "on \\"purpose\\""\n\n'
    assert pyproject.read_text() == original.replace("[tool.other]", added + "[tool.other]")
    assert _check(project).exit_code == 0  # read back: accepted


def test_accept_keeps_crlf_line_ends_and_the_mode(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_bytes(b'[tool.retrain-ci]\r\nfail-on = "error"\r\n')
    pyproject.chmod(0o640)
    fingerprint = _fingerprint(project)
    assert _check(project, "--accept", fingerprint).exit_code == 0
    written = pyproject.read_bytes()
    assert written.startswith(b'[tool.retrain-ci]\r\nfail-on = "error"\r\n') and fingerprint.encode() in written
    assert b"\n" not in written.replace(b"\r\n", b"")
    assert stat.S_IMODE(pyproject.stat().st_mode) == 0o640


def test_accept_writes_a_linked_settings_file_through_the_link(project: Path) -> None:
    shared = project / "shared" / "pyproject.toml"
    shared.parent.mkdir()
    shared.write_text('[tool.retrain-ci]\nfail-on = "error"\n')
    (project / "pyproject.toml").symlink_to(shared)
    fingerprint = _fingerprint(project)
    assert _check(project, "--accept", fingerprint).exit_code == 0
    assert (project / "pyproject.toml").is_symlink()
    assert tomllib.loads(shared.read_text())["tool"]["retrain-ci"]["accepted"][0]["fingerprint"] == fingerprint


def test_accept_refuses_a_read_only_settings_file(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[tool.retrain-ci]\nfail-on = "error"\n')
    pyproject.chmod(0o444)
    run = _check(project, "--accept", _fingerprint(project))
    _assert_one_error_line(run, str(pyproject), "is read-only")
    assert pyproject.read_text() == '[tool.retrain-ci]\nfail-on = "error"\n'
    assert stat.S_IMODE(pyproject.stat().st_mode) == 0o444  # not silently made writable


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            '[tool.retrain-ci]\naccepted = [\n  "a:1",  # reviewed\n]\n',
            '[tool.retrain-ci]\naccepted = [\n  "a:1",  # reviewed\n  {fingerprint = "b:2", reason = "ok"},\n]\n',
        ),
        (
            '[project]\nname = "x"  # ours\n',
            '[project]\nname = "x"  # ours\n\n[[tool.retrain-ci.accepted]]\nfingerprint = "b:2"\nreason = "ok"\n',
        ),
    ],
    ids=["inline list", "no table yet"],
)
def test_accept_extends_what_the_file_has(tmp_path: Path, before: str, after: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(before)
    assert record_accepted(pyproject, ["b:2"], "ok") == ["b:2"]
    assert pyproject.read_text() == after


def test_accept_refuses_a_file_it_would_rewrite_and_leaves_it_alone(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool]\nretrain-ci.fail-on = "error"\n')  # tomlkit would put the entry under [retrain-ci]
    with pytest.raises(InputError, match="without changing the rest of it"):
        record_accepted(pyproject, ["b:2"], "ok")
    assert pyproject.read_text() == '[tool]\nretrain-ci.fail-on = "error"\n'
