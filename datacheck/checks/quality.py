"""Image quality, from the statistics of the one decoding pass; thresholds flag no normal photo of the flower set.

``QualityCheck`` is the form of a pixel check: one measured value per image against one threshold. Checks with their
own measurement and settings live in their own module (overexposed.py, blurry.py)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, register
from datacheck.settings import AuditSettings


class QualityCheck(Check):
    """One measured value per readable image against one threshold; subclasses say which and what to tell the user."""

    severity: ClassVar[Severity] = Severity.INFO
    measure: ClassVar[str]  # the value's name in the finding's details

    def measured(self, images: pd.DataFrame) -> pd.Series:
        return images[self.measure]

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        raise NotImplementedError

    def message(self, value: float, settings: AuditSettings) -> str:
        raise NotImplementedError

    def run(self, data: AuditData) -> list[Finding]:
        images = data.readable()
        values = self.measured(images).astype(float)
        hits = self.flagged(values, data.settings)
        return [
            self.finding(self.severity, [path], self.message(value, data.settings), **{self.measure: round(value, 5)})
            for path, value in zip(images["path"][hits], values[hits], strict=True)
        ]


@register
class TinyImage(QualityCheck):
    id = "tiny_image"
    advice = "The model sees 224x224 pixels: use larger originals."
    severity = Severity.WARNING
    measure = "shorter_side"

    def measured(self, images: pd.DataFrame) -> pd.Series:
        return np.minimum(images["width"], images["height"])

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values < settings.min_side

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"only {value:.0f} px on its shorter side (under {settings.min_side}); the model sees 224x224 pixels, "
            "so it sees an enlarged blur: use a larger original"
        )


@register
class OddAspectRatio(QualityCheck):
    id = "odd_aspect_ratio"
    advice = "Squeezed into a square, these distort: crop them to the subject."
    measure = "aspect_ratio"

    def measured(self, images: pd.DataFrame) -> pd.Series:
        return np.maximum(images["width"], images["height"]) / np.minimum(images["width"], images["height"])

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values > settings.max_aspect_ratio

    def message(self, value: float, settings: AuditSettings) -> str:
        return f"{value:.1f}:1; every photo is squeezed into a square, which distorts this one: crop it to the subject"


@register
class Dark(QualityCheck):
    id = "dark"
    advice = "Even their brightest parts are dark: check the subject is visible."
    measure = "highlights"

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values < settings.dark_highlights

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"underexposed: even its brightest parts are dark (99th percentile of brightness {value:.2f}, "
            f"under {settings.dark_highlights:g}): check that the subject is visible"
        )


@register
class Light(QualityCheck):
    id = "light"
    advice = "Even their darkest parts are light: check the subject is visible."
    measure = "shadows"

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values > settings.light_shadows

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"overexposed or washed out: even its darkest parts are light (1st percentile of brightness {value:.2f}, "
            f"over {settings.light_shadows:g}): check that the subject is visible"
        )


@register
class LowInformation(QualityCheck):
    id = "low_information"
    advice = "Nearly uniform (blank, placeholder, lens cap?): delete them."
    measure = "contrast"

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values < settings.low_information_contrast

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"nearly uniform (brightness varies by {value:.3f}, under {settings.low_information_contrast:g}): "
            "a blank, placeholder or lens-cap image? delete it"
        )


@register
class Grayscale(QualityCheck):
    id = "grayscale"
    advice = "Black and white: fine if the model will see such photos."
    measure = "colourfulness"

    def flagged(self, values: pd.Series, settings: AuditSettings) -> pd.Series:
        return values < settings.grayscale_colourfulness

    def message(self, value: float, settings: AuditSettings) -> str:
        return (
            f"black and white (colourfulness {value:.3f}): fine if the model will see such photos, else colour is "
            "a cue this photo lacks"
        )
