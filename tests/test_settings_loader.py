"""Where settings come from: defaults < the settings file < RETRAIN_CI_<NAME> < options, the same for every kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from datacheck.settings import AuditSettings
from retrain.core.errors import InputError
from retrain.core.settings import GateSettings
from retrain.core.settings_file import resolve_settings


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.retrain-ci]\nfail-on = 'warning'\nmin-images = 5\ntesting-percentage = 20\nmin-accuracy = 0.8\n"
        "property-cache = 'cache'\n"
    )
    return path


def test_each_source_overrides_the_one_before(settings_file: Path) -> None:
    assert resolve_settings(AuditSettings, None, environ={}) == AuditSettings()
    from_file = resolve_settings(AuditSettings, settings_file, environ={}, shared_with=(GateSettings,))
    assert (from_file.fail_on, from_file.min_images, from_file.split.testing_percentage) == ("warning", 5, 20.0)
    assert from_file.property_cache == settings_file.parent / "cache"  # relative to the settings file

    environ = {"RETRAIN_CI_MIN_IMAGES": "7", "RETRAIN_CI_SKIP": '["grayscale", "blurry"]', "RETRAIN_CI_CACHE": "/x"}
    from_environment = resolve_settings(AuditSettings, settings_file, environ=environ, shared_with=(GateSettings,))
    assert (from_environment.min_images, from_environment.skip) == (7, ("grayscale", "blurry"))
    assert from_environment.fail_on == "warning"  # the file's, where the environment says nothing

    given = resolve_settings(
        AuditSettings, settings_file, {"min_images": 9, "fail_on": None}, environ=environ, shared_with=(GateSettings,)
    )
    assert (given.min_images, given.fail_on) == (9, "warning")  # None: not given


def test_the_gate_is_loaded_the_same_way(settings_file: Path) -> None:
    gate = resolve_settings(
        GateSettings, settings_file, {"max_regression": 0.05}, environ={}, shared_with=(AuditSettings,)
    )
    assert (gate.min_accuracy, gate.max_regression) == (0.8, 0.05)
    environ = {"RETRAIN_CI_MIN_ACCURACY": "0.85", "RETRAIN_CI_MIN_CLASS_SUPPORT": "3"}
    gate = resolve_settings(GateSettings, settings_file, environ=environ, shared_with=(AuditSettings,))
    assert (gate.min_accuracy, gate.min_class_support) == (0.85, 3)


def test_a_bad_environment_value_is_one_error_naming_it(settings_file: Path) -> None:
    with pytest.raises(InputError, match="the environment: RETRAIN_CI_MIN_IMAGES = 'many' should be a whole number"):
        resolve_settings(
            AuditSettings, settings_file, environ={"RETRAIN_CI_MIN_IMAGES": "many"}, shared_with=(GateSettings,)
        )
