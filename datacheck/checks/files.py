"""Files the audit cannot use as they are: corrupt, oversized or LFS-pointer images, unreadable folders, files of
other kinds, files outside any class."""

from __future__ import annotations

from typing import Any

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, register
from retrain.core.dataset import IMAGE_EXTENSIONS, SPECIAL_FILE_REASON, UNDECODABLE_REASON
from retrain.core.display import is_undecodable
from retrain.core.settings_file import CONFIG_FILE, PYPROJECT

EXTENSIONS = ", ".join(sorted(IMAGE_EXTENSIONS))


class UnusableFile(Check):
    """Findings that keep why a file or folder cannot be used in ``reason``: reports show it once, not beside it."""

    @classmethod
    def describe(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        """Not the reason: the message and the placeholder of the file say it."""
        return super().describe({key: value for key, value in details.items() if key != "reason"})

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        """The reason first: the check's advice is the same for every file, the reason is not."""
        return [("", details["reason"])] * ("reason" in details) + super().highlights(details)

    @classmethod
    def missing_picture(cls, details: dict[str, Any]) -> str | None:
        return f"no picture: {details['reason']}" if "reason" in details else None


@register
class CorruptImage(UnusableFile):
    """Truncated, empty, undecodable or not an image at all: training skips it, so it silently shrinks the class."""

    id = "corrupt_image"
    advice = "Training skips these: replace each with a good copy, or delete it."

    def run(self, data: AuditData) -> list[Finding]:
        broken = data.images[data.images["error_kind"] == "corrupt"]
        return [
            self.finding(
                Severity.ERROR,
                [row.path],
                f"{row.error}; training skips it: replace it with a good copy or delete it",
                reason=row.error,
            )
            for row in broken.itertuples()
        ]


@register
class UndecodableName(Check):
    """A name that is not valid UTF-8 cannot be shown as it is in a report or a CI log, so training skips the file
    (and refuses a class folder so named); the audit names them, escaped, instead of failing on them."""

    id = "undecodable_name"
    advice = "Names that are not valid UTF-8: rename them."

    def run(self, data: AuditData) -> list[Finding]:
        folders = [
            self.finding(
                Severity.ERROR,
                [data.folder_path(folder)],
                "the class folder's name is not valid UTF-8 (shown with backslash escapes), so training refuses "
                "the class: rename it",
            )
            for folder in data.scan.classes
            if is_undecodable(folder.folder.name)
        ]
        files = [
            self.finding(
                Severity.ERROR,
                [path.relative_to(data.scan.root).as_posix()],
                f"training skips it: {UNDECODABLE_REASON}",
            )
            for folder in data.scan.classes
            for path in folder.undecodable
        ]
        return folders + files


@register
class OversizedImage(UnusableFile):
    """Too many pixels to decode within the memory budget: training skips it rather than exhaust the machine."""

    id = "oversized_image"
    advice = "Too many pixels to decode: training skips these; resize them."

    def run(self, data: AuditData) -> list[Finding]:
        oversized = data.images[data.images["error_kind"] == "oversized"]
        return [
            self.finding(Severity.ERROR, [row.path], f"{row.error}; training skips it", reason=row.error)
            for row in oversized.itertuples()
        ]


@register
class LfsPointer(Check):
    """A Git LFS pointer where a photo should be: the checkout lacks the LFS content, so none of these can train."""

    id = "lfs_pointer"
    advice = "Git LFS pointers, not photos: run `git lfs pull` in the checkout."

    def run(self, data: AuditData) -> list[Finding]:
        pointers = data.images[data.images["error_kind"] == "lfs_pointer"]
        return [self.finding(Severity.ERROR, [row.path], row.error) for row in pointers.itertuples()]


@register
class UnreadableFolder(UnusableFile):
    """A folder inside a class that cannot be listed: its images are missing from the audit and from training."""

    id = "unreadable_folder"
    advice = "Fix their permissions (chmod -R a+rX) or move them out."

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                [folder.relative_to(data.scan.root).as_posix()],
                f"cannot be read ({reason}), so its images are left out and training refuses the dataset: "
                "fix its permissions (e.g. `chmod -R a+rX`) or move it out of the dataset",
                reason=reason,
            )
            for folder, reason in data.scan.unreadable_folders
        ]


@register
class SpecialFile(UnusableFile):
    """A FIFO, socket or device where a file should be: never opened (a FIFO would wait for a writer forever), so
    training skips it; named, so that a photo it stands for is not lost without a word."""

    id = "special_file"
    advice = "FIFOs, sockets or devices, never read: put the file there, or remove it."

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                [path.relative_to(data.scan.root).as_posix()],
                f"{SPECIAL_FILE_REASON}; training skips it: replace it with the file it stands for, or remove it",
                reason=SPECIAL_FILE_REASON,
            )
            for folder in data.scan.classes
            for path in folder.special
        ]


@register
class NonImageFile(Check):
    """A file in a class folder that training ignores: a photo in an unsupported format is lost without a word."""

    id = "non_image_file"
    advice = "Training ignores these: convert the photos, move the rest out."

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.WARNING,
                [path.relative_to(data.scan.root).as_posix()],
                f"not an image file training reads ({EXTENSIONS}), so it is ignored: "
                "convert it if it is a photo of this class, else move it out of the dataset",
                extension=path.suffix.lower(),
            )
            for folder in data.scan.classes
            for path in folder.other_files
        ]


@register
class StrayFile(Check):
    """Files directly in the dataset folder belong to no class; a photo there is most likely misfiled."""

    id = "stray_file"
    advice = "Files outside every class folder: move photos into their class."

    def run(self, data: AuditData) -> list[Finding]:
        findings = []
        for path in data.scan.stray_files:
            if path.name in (CONFIG_FILE, PYPROJECT):
                continue  # the audit's own settings
            is_image = path.suffix.lower() in IMAGE_EXTENSIONS
            findings.append(
                self.finding(
                    Severity.WARNING if is_image else Severity.INFO,
                    [path.relative_to(data.scan.root).as_posix()],
                    "an image outside every class folder, which training ignores: move it into its class folder"
                    if is_image
                    else "a file outside every class folder; training ignores it",
                )
            )
        return findings
