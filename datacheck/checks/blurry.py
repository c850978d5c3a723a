"""Blurred photos: out of focus, shaken or enlarged from a thumbnail, so they teach the class little."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from datacheck.checks.quality import QualityCheck
from datacheck.properties import Measurement, Pixels
from datacheck.registry import register
from datacheck.settings import AuditSettings


@dataclass(frozen=True)
class BlurrySettings:
    blurry_sharpness: float = 0.0001


def sharpness(pixels: Pixels) -> dict[str, float]:
    """The Laplacian responds to edges: a blurred image has few, so its variance is near 0."""
    image = pixels.luminance
    if min(image.shape) < 3:
        return {"sharpness": 0.0}
    laplacian = 4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
    return {"sharpness": float(laplacian.var())}


@register
class Blurry(QualityCheck):
    id = "blurry"
    advice = "Out of focus or enlarged from a thumbnail: sharper photos teach more."
    measure = "sharpness"
    settings = BlurrySettings
    measurements = (
        Measurement(
            "sharpness",
            sharpness,
            {"sharpness": "variance of the Laplacian of luminance at MEASURE_SIZE: near 0 when blurred"},
        ),
    )

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values < settings.blurry_sharpness

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"blurry (sharpness {value:.2g}, under {settings.blurry_sharpness:g}; out of focus or enlarged from a "
            "thumbnail): a sharp photo teaches the class better"
        )
