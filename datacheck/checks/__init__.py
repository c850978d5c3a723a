"""Every family of checks, one module each; importing this package registers them all, in report order."""

# isort: off
from datacheck.checks import files, classes, duplicates, quality, labels, outliers, bias
# isort: on

__all__ = ["files", "classes", "duplicates", "quality", "labels", "outliers", "bias"]
