"""Where settings come from, in one place: defaults < the settings file < ``RETRAIN_CI_<NAME>`` environment variables <
options given (on the command line or to the pytest plugin). Every settings class is loaded by ``resolve_settings``.

The settings file is `[tool.retrain-ci]` in pyproject.toml, or retrain-ci.toml; its keys are the flat setting names
(``min_images``, ``testing_percentage``: a nested section's fields by their own names), dashes or underscores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

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


def find_config_file(dataset: Path, working_dir: Path) -> Path | None:
    """The first of retrain-ci.toml or a pyproject.toml with ``[tool.retrain-ci]``, in the dataset folder, then the
    working directory."""
    for folder in (dataset, working_dir):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
        if (folder / PYPROJECT).is_file() and "retrain-ci" in _read_toml(folder / PYPROJECT).get("tool", {}):
            return folder / PYPROJECT
    return None


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
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as error:
        raise InputError(f"cannot read config file {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"config file {path} is not valid TOML ({error})") from None


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


def record_accepted(path: Path, fingerprints: Iterable[str], reason: str) -> list[str]:
    """Append accepted findings to the settings file (created when missing), leaving everything else in it as it was.

    tomllib cannot write, so each one is an ``[[accepted]]`` table (``[[tool.retrain-ci.accepted]]`` in
    pyproject.toml) appended at the end; the result is parsed before it replaces the file. Returns those added.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    known = {accepted.fingerprint for accepted in (_file_accepted(path) if text else ())}
    added = [fp for fp in dict.fromkeys(fingerprints) if fp not in known]
    table = "tool.retrain-ci.accepted" if path.name == PYPROJECT else "accepted"
    blocks = [f"\n[[{table}]]\nfingerprint = {_toml_string(fp)}\nreason = {_toml_string(reason)}\n" for fp in added]
    updated = text + ("\n" if text and not text.endswith("\n") else "") + "".join(blocks)
    try:
        tomllib.loads(updated)
    except tomllib.TOMLDecodeError:
        raise InputError(
            f"cannot add accepted findings to {path}: it defines `accepted` in a way this cannot extend; "
            "add them to that list by hand"
        ) from None
    if added:
        with staged_output(path, "settings file") as staging:
            staging.write_text(updated, encoding="utf-8")
    return added


def _file_accepted(path: Path) -> tuple[AcceptedFinding, ...]:
    table = _read_toml(path)
    if path.name == PYPROJECT:
        table = table.get("tool", {}).get("retrain-ci", {})
    return _accepted(str(path), table.get("accepted", []))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML takes no surrogates (kept as characters)."""
    return json.dumps(text, ensure_ascii=False)
