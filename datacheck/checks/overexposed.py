"""Blown highlights: most of the picture clipped to white or a flat colour, its detail lost."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from datacheck.checks.quality import QualityCheck
from datacheck.properties import Measurement, Pixels
from datacheck.registry import register
from datacheck.settings import AuditSettings

# A channel at or above this (of 255) is clipped: the sensor or an edit saturated it and its detail is gone.
CLIPPED_LEVEL = 250


@dataclass(frozen=True)
class OverexposedSettings:
    overexposed_clipped: float = 0.5  # most of the picture: flags only white-background studio shots of flowers-dev


def clipped(pixels: Pixels) -> dict[str, float]:
    """Two channels clipped is white, yellow, cyan or magenta: one alone is a saturated colour, not lost detail."""
    return {"clipped": float(((pixels.values >= CLIPPED_LEVEL).sum(axis=2) >= 2).mean())}


@register
class Overexposed(QualityCheck):
    """Blown highlights: `light` misses a photo whose darkest parts stay black while most of it is clipped."""

    id = "overexposed"
    measure = "clipped"
    settings = OverexposedSettings
    measurements = (
        Measurement(
            "clipped",
            clipped,
            {"clipped": "fraction of pixels clipped in two or more channels: white, or yellow, cyan or magenta"},
        ),
    )

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values >= settings.overexposed_clipped

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"overexposed: {value:.0%} of the picture is clipped to white or a flat colour (at least "
            f"{settings.overexposed_clipped:.0%}), its detail lost: use a better exposed photo, or accept it if it is "
            "a subject on a white background"
        )
