"""Where settings come from, in one place: defaults < the settings file < ``RETRAIN_CI_<NAME>`` environment variables <
options given (on the command line or to the pytest plugin). Every settings class is loaded by ``resolve_settings``.

The settings file is `[tool.retrain-ci]` in pyproject.toml, or retrain-ci.toml; its keys are the flat setting names
(``min_images``, ``testing_percentage``: a nested section's fields by their own names), dashes or underscores. It is the
one given (``--config``) or the working directory's, never one inside the dataset (``find_settings``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT

from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.outputs import staged_output
from retrain.core.settings import AcceptedFinding, GateSettings, flat_fields, replace_flat

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_FILE = "retrain-ci.toml"
PYPROJECT = "pyproject.toml"
# The gate's thresholds, for `train` and `evaluate`; the baseline is a run's own input, not a project setting.
GATE_FIELDS = {f.name: f for f in dataclasses.fields(GateSettings) if f.name != "baseline_accuracy"}


@dataclasses.dataclass(frozen=True)
class SettingsSource:
    """The settings file a run reads (None: the defaults) and the settings files inside its dataset it did not read,
    so that every run can say which it used: a pull request that only touches the data cannot weaken the gate."""

    path: Path | None
    ignored: tuple[Path, ...] = ()
    default_target: Path | None = None  # where --accept creates a settings file: None when that is in the dataset

    def lines(self) -> list[str]:
        """What a run says on stderr: each file it ignored, then the file it used."""
        ignored = [
            f"warning: ignored {printable(path)} inside the dataset (settings come from the working directory or "
            "--config)"
            for path in self.ignored
        ]
        return [*ignored, f"settings: {printable(self.path) if self.path else 'none (defaults)'}"]


def find_settings(dataset: Path | None, working_dir: Path, given: Path | None = None) -> SettingsSource:
    """The file given, else retrain-ci.toml or a pyproject.toml with ``[tool.retrain-ci]`` in the working directory
    (CI runs in the repository's root), never one inside the dataset: the data is not the place for its own gate."""
    inside = dataset is not None and _inside(working_dir, dataset)
    found = None if inside or given else _settings_file_in(working_dir)
    ignored = [*_settings_files_in(dataset), *(_settings_files_in(working_dir) if inside else [])]
    return SettingsSource(given or found, tuple(dict.fromkeys(ignored)), None if inside else working_dir / CONFIG_FILE)


def _settings_file_in(folder: Path) -> Path | None:
    """retrain-ci.toml, else a pyproject.toml with ``[tool.retrain-ci]``, in ``folder``."""
    if (folder / CONFIG_FILE).is_file():
        return folder / CONFIG_FILE
    pyproject = folder / PYPROJECT
    return pyproject if pyproject.is_file() and "retrain-ci" in _read_toml(pyproject).get("tool", {}) else None


def _settings_files_in(folder: Path | None) -> list[Path]:
    """Every settings file in a folder that is not read, to say so: a pyproject.toml is only searched for the name,
    so that a broken one is no error."""
    if folder is None:
        return []
    candidates = [Path(folder) / CONFIG_FILE, Path(folder) / PYPROJECT]
    return [path for path in candidates if path.is_file() and (path.name == CONFIG_FILE or _names_retrain_ci(path))]


def _names_retrain_ci(path: Path) -> bool:
    try:
        return b"retrain-ci" in path.read_bytes()
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return folder == path or folder in path.parents


ENVIRONMENT_PREFIX = "RETRAIN_CI_"
Settings = TypeVar("Settings")


def resolve_settings(
    kind: type[Settings],
    path: Path | None,
    options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    shared_with: Iterable[type] = (),
) -> Settings:
    """``kind`` (the audit's settings, the gate's) from its defaults, the file at ``path`` (None: none), the
    environment and the ``options`` given (None values: not given), each overriding the ones before. The file also
    holds the settings of the kinds it is ``shared_with``: only a key none of them knows is an error."""
    known = setting_fields(kind)
    in_file = _settings(path, known | {n: f for other in shared_with for n, f in setting_fields(other).items()})
    values = {name: value for name, value in in_file.items() if name in known}
    for name, setting in known.items():
        raw = environ.get(ENVIRONMENT_PREFIX + name.upper())  # paths in it are relative to the working folder
        if raw is not None:
            variable = ENVIRONMENT_PREFIX + name.upper()
            values[name] = _coerce("the environment", Path.cwd(), variable, _toml_value(raw), setting)
    values |= {name: value for name, value in (options or {}).items() if value is not None}
    return replace_flat(kind(), values)


def setting_fields(kind: type) -> dict[str, dataclasses.Field]:
    """The flat names a settings class takes from a file: a gate's baseline accuracy is a run's input, not a setting."""
    return GATE_FIELDS if kind is GateSettings else flat_fields(kind)


def _toml_value(raw: str) -> Any:
    """An environment variable's text as TOML reads a value (0.9, true, ["a", "b"]), else as the text itself."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _settings(path: Path | None, known: Mapping[str, dataclasses.Field]) -> dict[str, Any]:
    """Every setting of a file, checked and typed. In pyproject.toml they live in ``[tool.retrain-ci]``; in any other
    file at the top level. Keys may be spelled with dashes, like the command-line options."""
    if path is None:
        return {}
    table = _read_toml(path)
    if path.name == PYPROJECT:
        table = table.get("tool", {}).get("retrain-ci", {})
    settings = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise InputError(f"{path}: unknown setting {key!r}; known: {', '.join(k.replace('_', '-') for k in known)}")
        settings[name] = _coerce(str(path), path.parent, key, value, known[name])
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    return _parse_toml(_read_text(path), path)


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"config file {path} is not valid TOML ({error})") from None


def _read_text(path: Path) -> str:
    """The file's text with its own line ends (``read_text`` would turn CRLF into LF)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise InputError(f"cannot read config file {path} ({error.strerror})") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8; a Latin-1 comment is a user's file to fix, not a crash
        byte = error.object[error.start]
        raise InputError(
            f"config file {path} is not UTF-8 text (byte 0x{byte:02x} at offset {error.start}); save it as UTF-8"
        ) from None


def _coerce(source: str, folder: Path, key: str, value: Any, setting: dataclasses.Field) -> Any:
    """Take the TOML value as the type of the default, or say which key (of ``source``) is wrong; a relative path is
    relative to ``folder``."""
    default = setting.default
    if setting.name == "accepted":
        return _accepted(source, value)
    if "Path" in str(setting.type) and isinstance(value, str):
        return (folder / value).expanduser()
    kind = type(default) if default is not None else float if "float" in str(setting.type) else int
    if isinstance(default, bool) and isinstance(value, bool):
        return value
    if isinstance(default, tuple) and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise InputError(f"{source}: {key} = {value!r} should be {_type_name(kind)}")


def _type_name(kind: type) -> str:
    return {tuple: "a list of check ids", float: "a number", int: "a whole number", bool: "true or false"}.get(
        kind, "a path" if issubclass(kind, Path) else "a string"
    )


def _accepted(source: str, value: Any) -> tuple[AcceptedFinding, ...]:
    """Fingerprints, or tables of ``fingerprint`` and ``reason`` (what ``check --accept`` writes)."""
    accepted = []
    for item in value if isinstance(value, list) else [None]:
        if isinstance(item, str):
            accepted.append(AcceptedFinding(item))
        elif isinstance(item, dict) and isinstance(item.get("fingerprint"), str):
            accepted.append(AcceptedFinding(item["fingerprint"], str(item.get("reason", ""))))
        else:
            raise InputError(f"{source}: accepted should be fingerprints or tables with a fingerprint and a reason")
    return tuple(accepted)


def check_recordable(path: Path, reason: str) -> Path:
    """The file ``record_accepted`` writes (a link's target), refused before the audit when it cannot be: a
    read-only file stays read-only, a reason must be UTF-8 text (argv's undecodable bytes arrive surrogate-escaped)."""
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"the reason '{printable(reason)}' is not UTF-8 text; give it in UTF-8") from None
    target = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    if Path(path).is_symlink() and not target.is_file():
        raise InputError(f"cannot record accepted findings in {path}: it is a link to {target}, which is not a file")
    if target.is_file() and not target.stat().st_mode & stat.S_IWUSR:
        raise InputError(f"cannot record accepted findings in {target}: it is read-only; make it writable first")
    return target


def record_accepted(path: Path, fingerprints: Iterable[str], reason: str) -> list[str]:
    """Add accepted findings to the settings file (created when missing) with tomlkit, so that its comments, tables,
    line ends and mode stay as they were; a link's target is written. Returns the fingerprints added."""
    target = check_recordable(path, reason)
    text = _read_text(target) if target.is_file() else ""
    known = {accepted.fingerprint for accepted in _accepted_in(text, target)}
    added = [fp for fp in dict.fromkeys(fingerprints) if fp not in known]
    if not added:
        return added
    updated = _with_accepted(text, target, added, reason)
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None
    with staged_output(target, "settings file") as staging:
        staging.write_bytes(updated.encode("utf-8"))
        if mode is not None:
            staging.chmod(mode)
    return added


def _with_accepted(text: str, path: Path, fingerprints: list[str], reason: str) -> str:
    """``text`` with an ``accepted`` entry per fingerprint; checked by reading it back, since a file that spreads the
    table over dotted keys can lead tomlkit astray."""
    cannot = InputError(
        f"cannot add accepted findings to {path} without changing the rest of it (the way it spells `accepted` or "
        "its table); add them by hand"
    )
    try:
        document = tomlkit.parse(text)
        table = document
        if path.name == PYPROJECT:
            table = document.setdefault("tool", tomlkit.table(is_super_table=True)).setdefault("retrain-ci", {})
        accepted = table.setdefault("accepted", tomlkit.aot())
        for fingerprint in fingerprints:
            if isinstance(accepted, AoT):
                entry = tomlkit.table()
                entry.update({"fingerprint": fingerprint, "reason": reason})
                accepted.append(entry)
            elif isinstance(accepted, list):
                accepted.append(_inline(fingerprint, reason))
            else:
                raise cannot
        if isinstance(accepted, AoT):
            accepted[-1].add(tomlkit.nl())  # a blank line before whatever table follows
        updated = tomlkit.dumps(document)
    except TOMLKitError:
        raise cannot from None
    if updated.endswith("\n\n") and not text.endswith("\n\n"):  # that blank line is for a table that follows
        updated = updated[:-1]
    if "\r\n" in text and "\n" not in text.replace("\r\n", ""):  # the user's line ends, for the lines added
        updated = re.sub("(?<!\r)\n", "\r\n", updated)
    expected = (*_accepted_in(text, path), *(AcceptedFinding(fp, reason) for fp in fingerprints))
    try:
        if _accepted_in(updated, path) != expected:
            raise cannot
    except InputError:
        raise cannot from None
    return updated


def _inline(fingerprint: str, reason: str) -> Any:
    entry = tomlkit.inline_table()
    entry.update({"fingerprint": fingerprint, "reason": reason})
    return entry


def _accepted_in(text: str, path: Path) -> tuple[AcceptedFinding, ...]:
    """The accepted findings ``text`` holds, read as the settings file at ``path``."""
    table = _parse_toml(text, path)
    if path.name == PYPROJECT:
        table = table.get("tool", {}).get("retrain-ci", {})
    return _accepted(str(path), table.get("accepted", []))
