"""The settings file: `[tool.retrain-ci]` in pyproject.toml, or retrain-ci.toml; command-line options override it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from retrain.core.errors import InputError
from retrain.core.settings import AuditSettings, flat_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_FILE = "retrain-ci.toml"
PYPROJECT = "pyproject.toml"


def find_config_file(dataset: Path, working_dir: Path) -> Path | None:
    """The first of retrain-ci.toml or a pyproject.toml with ``[tool.retrain-ci]``, in the dataset folder, then the
    working directory."""
    for folder in (dataset, working_dir):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
        if (folder / PYPROJECT).is_file() and "retrain-ci" in _read_toml(folder / PYPROJECT).get("tool", {}):
            return folder / PYPROJECT
    return None


def load_settings(path: Path | None) -> AuditSettings:
    """Settings from a file (None: defaults). In pyproject.toml they live in ``[tool.retrain-ci]``; in any other file
    at the top level. Keys may be spelled with dashes, like the command-line options."""
    if path is None:
        return AuditSettings()
    table = _read_toml(path)
    if path.name == PYPROJECT:
        table = table.get("tool", {}).get("retrain-ci", {})
    known = flat_fields(AuditSettings)
    settings = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise InputError(f"{path}: unknown setting {key!r}; known: {', '.join(k.replace('_', '-') for k in known)}")
        settings[name] = _coerce(path, key, value, known[name].default, known[name].metadata.get("type"))
    return AuditSettings().replace(**settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as error:
        raise InputError(f"cannot read config file {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"config file {path} is not valid TOML ({error})") from None


def _coerce(path: Path, key: str, value: Any, default: Any, declared: type | None = None) -> Any:
    """Take the TOML value as the type of the default (or the declared one, when the default is None), or say which
    key is wrong."""
    kind = declared or (int if default is None else type(default))  # the optional settings are whole numbers
    if isinstance(default, tuple) and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if issubclass(kind, Path) and isinstance(value, str):
        return (path.parent / value).expanduser()
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise InputError(f"{path}: {key} = {value!r} should be {_type_name(kind)}")


def _type_name(kind: type) -> str:
    return {tuple: "a list of check ids", float: "a number", int: "a whole number"}.get(
        kind, "a path" if issubclass(kind, Path) else "a string"
    )
