"""Classes as a whole: enough of them, enough photos in each, balanced, and present in every split.

Memory per image: none beyond the audit table; these checks count per class."""

from __future__ import annotations

from collections import Counter
from typing import Any

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, register


@register
class TooFewClasses(Check):
    """A classifier needs at least two class folders; fewer usually means DIR is not the dataset's root."""

    id = "too_few_classes"
    advice = "Give the folder that holds one subfolder of images per class."

    def run(self, data: AuditData) -> list[Finding]:
        found = len(data.scan.classes)
        if found >= 2:
            return []
        return [
            self.finding(
                Severity.ERROR,
                [data.folder_path(folder) for folder in data.scan.classes],
                f"{found} class folder(s); retraining needs at least 2: give the folder that holds one subfolder of "
                "images per class",
                classes=found,
            )
        ]


@register
class EmptyLabel(Check):
    """Labels keep only letters and digits of the folder name, so a folder named ``!!!`` would have an empty one."""

    id = "empty_label"
    advice = "Rename each folder so its name has a letter or digit."

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                [data.folder_path(folder)],
                "the folder name has no letter or digit, so its label would be empty and training refuses it: "
                "rename it",
            )
            for folder in data.scan.classes
            if not folder.label
        ]


@register
class LabelClash(Check):
    """Labels are folder names normalised like the tutorial's, so ``Roses`` and ``roses_`` would be one label."""

    id = "label_clash"
    advice = "These folders would be one label: merge or rename them."

    def run(self, data: AuditData) -> list[Finding]:
        counts = Counter(folder.label for folder in data.scan.classes)
        return [
            self.finding(
                Severity.ERROR,
                [data.folder_path(folder) for folder in data.scan.classes if folder.label == label],
                f"these folders all become the label {label!r}, which training refuses: merge or rename them",
                label=label,
            )
            for label, count in counts.items()
            if count > 1 and label  # empty labels are empty_label's finding
        ]


@register
class EmptyClass(Check):
    """Training refuses a class folder without images."""

    id = "empty_class"
    advice = "Add photos to each empty class folder, or remove it."

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return []  # the folder says it all

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                [data.folder_path(folder)],
                f"class {folder.label!r} has no images"
                + (f" ({len(folder.other_files)} other file(s) only)" if folder.other_files else "")
                + ": add photos or remove the folder",
                label=folder.label,
            )
            for folder in data.scan.classes
            if not folder.images
        ]


@register
class TooFewImages(Check):
    """The tutorial asks for at least a hundred photos per class; far fewer rarely trains a usable class."""

    id = "too_few_images"
    advice = "Add photos: a class trains well from about a hundred."

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return [("", f"{details['images']} images"), ("needed", details["min_images"]),
                ("recommended", details["recommended_images"])]  # fmt: skip

    def run(self, data: AuditData) -> list[Finding]:
        settings = data.settings
        counts = data.readable()["label"].value_counts()
        findings = []
        for folder in data.scan.classes:
            count = int(counts.get(folder.label, 0))
            if not folder.images or count >= settings.recommended_images:
                continue  # an empty folder is empty_class's finding
            too_few = count < settings.min_images
            needed = f"at least {settings.min_images} are needed and " if too_few else ""
            findings.append(
                self.finding(
                    Severity.ERROR if too_few else Severity.WARNING,
                    [data.folder_path(folder)],
                    f"class {folder.label!r} has {count} readable image(s); {needed}"
                    f"{settings.recommended_images} or more are recommended: add photos",
                    label=folder.label,
                    images=count,
                    min_images=settings.min_images,
                    recommended_images=settings.recommended_images,
                )
            )
        return findings


@register
class ClassImbalance(Check):
    """A class much smaller than the largest is under-predicted: the model learns that it is rare."""

    id = "class_imbalance"
    advice = "Add photos to the small classes, or use fewer of the largest."

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("", f"{details['images']} images"),
            ("", f"{details['ratio']:g}x fewer than {details['largest_class']} ({details['largest_images']})"),
        ]

    def run(self, data: AuditData) -> list[Finding]:
        counts = data.readable()["label"].value_counts()
        if len(counts) < 2:
            return []
        largest, largest_count = str(counts.index[0]), int(counts.iloc[0])
        ratio_limit = data.settings.max_imbalance
        return [
            self.finding(
                Severity.WARNING,
                [data.folder_path(folder)],
                f"class {folder.label!r} has {int(counts[folder.label])} images, {largest!r} has {largest_count} "
                f"({largest_count / counts[folder.label]:.1f}x, more than {ratio_limit:g}x): add photos to "
                f"{folder.label!r} or use fewer of {largest!r}",
                label=folder.label,
                images=int(counts[folder.label]),
                largest_class=largest,
                largest_images=largest_count,
                ratio=round(largest_count / counts[folder.label], 2),
            )
            for folder in data.scan.classes
            if folder.label in counts and largest_count > ratio_limit * counts[folder.label]
        ]


@register
class SplitStarved(Check):
    """The split is fixed by file names, so a small class can end up with nothing to validate or test on."""

    id = "split_starved"
    advice = "Add photos, or raise the percentage, so every split has some."

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(split, details["splits"].get(split, 0)) for split in ("training", "validation", "testing")]

    def run(self, data: AuditData) -> list[Finding]:
        settings = data.settings
        readable = data.readable()
        findings = []
        for folder in data.scan.classes:
            splits = readable.loc[readable["label"] == folder.label, "split"].value_counts()
            if splits.empty:
                continue  # no readable image at all: empty_class or corrupt_image say so
            percentages = {
                "validation": settings.split.validation_percentage,
                "testing": settings.split.testing_percentage,
            }
            missing = [split for split, percentage in percentages.items() if percentage > 0 and split not in splits]
            if "training" not in splits:
                findings.append(
                    self.finding(
                        Severity.ERROR,
                        [data.folder_path(folder)],
                        f"class {folder.label!r} has no training image under the current split, so training "
                        "refuses it: add photos",
                        label=folder.label,
                        splits=splits.to_dict(),
                    )
                )
            elif missing:
                flags = " or ".join(f"--{split}-percentage {percentages[split]:g}" for split in missing)
                findings.append(
                    self.finding(
                        Severity.WARNING,
                        [data.folder_path(folder)],
                        f"class {folder.label!r} has no {' and no '.join(missing)} image at {flags}, so its accuracy "
                        "is never measured: add photos or raise the percentage",
                        label=folder.label,
                        splits=splits.to_dict(),
                    )
                )
        return findings
