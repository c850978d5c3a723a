"""Audit settings: defaults, then `[tool.retrain-ci]` (pyproject.toml) or retrain-ci.toml, then command-line options."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.errors import RetrainError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_FILE = "retrain-ci.toml"
PYPROJECT = "pyproject.toml"
FAIL_ON = ("error", "warning", "never")


@dataclass(frozen=True)
class AuditConfig:
    """Every setting of the audit; the defaults are tuned on the tutorial's flower photos to flag no normal photo."""

    # Shared with `retrain-ci train`, so the audit sees the splits and the bottleneck cache that training uses.
    testing_percentage: float = 10.0
    validation_percentage: float = 10.0
    tfhub_module: str = "efficientnet_lite0"
    bottleneck_dir: Path = Path("/tmp/bottleneck")
    # Classes: the tutorial asks for at least a hundred photos per class; fewer than 20 rarely trains at all.
    min_images: int = 20
    recommended_images: int = 100
    max_imbalance: float = 3.0
    # Duplicates: perceptual hashes at most this many bits apart (of 64) are the same picture re-encoded or resized.
    near_duplicate_bits: int = 4
    # Image quality, measured on the image scaled to fit 256x256.
    min_side: int = 100
    max_aspect_ratio: float = 3.0
    dark_highlights: float = 0.25
    light_shadows: float = 0.75
    blurry_sharpness: float = 0.0001
    low_information_contrast: float = 0.03
    grayscale_colourfulness: float = 0.06
    # Labels and shortcuts, from cross-validated classifiers.
    cross_validation_folds: int = 5
    max_shortcut_skill: float = 0.6  # balanced accuracy rescaled so chance is 0 and perfect is 1
    # Which checks run and what fails the gate.
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    fail_on: str = "error"

    def replace(self, **changes: Any) -> AuditConfig:
        """A copy with the given settings changed; None values leave a setting as it is."""
        return _validated(dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}))


def find_config_file(dataset: Path, working_dir: Path) -> Path | None:
    """The first of retrain-ci.toml or a pyproject.toml with ``[tool.retrain-ci]``, in the dataset folder, then the
    working directory."""
    for folder in (dataset, working_dir):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
        if (folder / PYPROJECT).is_file() and "retrain-ci" in _read_toml(folder / PYPROJECT).get("tool", {}):
            return folder / PYPROJECT
    return None


def load_config(path: Path | None) -> AuditConfig:
    """Settings from a file (None: defaults). In pyproject.toml they live in ``[tool.retrain-ci]``; in any other file
    at the top level. Keys may be spelled with dashes, like the command-line options."""
    if path is None:
        return AuditConfig()
    table = _read_toml(path)
    if path.name == PYPROJECT:
        table = table.get("tool", {}).get("retrain-ci", {})
    known = {f.name: f for f in dataclasses.fields(AuditConfig)}
    settings = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise RetrainError(
                f"{path}: unknown setting {key!r}; known: {', '.join(k.replace('_', '-') for k in known)}"
            )
        settings[name] = _coerce(path, key, value, known[name].default)
    return AuditConfig().replace(**settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as error:
        raise RetrainError(f"cannot read config file {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise RetrainError(f"config file {path} is not valid TOML ({error})") from None


def _coerce(path: Path, key: str, value: Any, default: Any) -> Any:
    """Take the TOML value as the type of the default, or say which key is wrong."""
    kind = type(default)
    if isinstance(default, tuple) and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(default, Path) and isinstance(value, str):
        return (path.parent / value).expanduser()
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise RetrainError(f"{path}: {key} = {value!r} should be {_type_name(default)}")


def _type_name(default: Any) -> str:
    return {tuple: "a list of check ids", float: "a number", int: "a whole number"}.get(
        type(default), "a path" if isinstance(default, Path) else "a string"
    )


def _validated(config: AuditConfig) -> AuditConfig:
    if not (
        config.testing_percentage >= 0
        and config.validation_percentage >= 0
        and config.testing_percentage + config.validation_percentage < 100
    ):
        raise RetrainError("testing and validation percentages must be >= 0 and add up to less than 100")
    if config.fail_on not in FAIL_ON:
        raise RetrainError(f"fail-on must be one of {', '.join(FAIL_ON)}, not {config.fail_on!r}")
    if config.cross_validation_folds < 2:
        raise RetrainError("cross-validation-folds must be at least 2")
    return config
