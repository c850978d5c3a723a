"""Links the dataset scan does not follow: training and the audit leave out what they point to."""

from __future__ import annotations

from datacheck.checks.files import UnusableFile
from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, register


@register
class SkippedLink(UnusableFile):
    """A link that dangles, loops or leaves the dataset folder: a class or its images vanish without it, so say so.

    Links whose target is inside the dataset folder are followed like the files and folders they point to.
    """

    id = "skipped_link"
    advice = "Links training skips: copy what they hold in, or fix the links."

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                [link.relative_to(data.scan.root).as_posix()],
                f"a link training skips: {reason}: copy what it should hold into the dataset folder, "
                "or fix or remove the link",
                reason=reason,
            )
            for link, reason in data.scan.skipped_links
        ]
