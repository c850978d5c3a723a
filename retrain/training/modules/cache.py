"""Converted backbones in the module cache, each with the SHA-256 recorded when it was converted.

A conversion is checked against the weights once; after that only its bytes vouch for it. The digest catches a file
damaged on disk or replaced by another (not someone who also rewrites the digest): the caller then converts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

# Written into a converted SavedModel directory (TensorFlow ignores it): the digest of every other file in it.
TREE_DIGEST = "retrain-ci.sha256"
# Beside a converted file: ``<file>.sha256``.
FILE_DIGEST_SUFFIX = ".sha256"


def tree_digest(directory: Path) -> str:
    """SHA-256 over every file's path (relative to ``directory``) and bytes, but the digest file's own."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != TREE_DIGEST):
        digest.update(path.relative_to(directory).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def record_tree_digest(directory: Path) -> None:
    """Record the digest of a converted directory, before it is renamed into place."""
    (directory / TREE_DIGEST).write_text(tree_digest(directory) + "\n", encoding="ascii")


def intact_tree(directory: Path) -> bool:
    """Whether ``directory`` holds a conversion whose files are the ones recorded (False if none or no digest)."""
    try:
        return (directory / TREE_DIGEST).read_text(encoding="ascii").strip() == tree_digest(directory)
    except (OSError, UnicodeDecodeError):
        return False


def discard_tree(directory: Path) -> None:
    """Remove a damaged conversion; renamed aside first, so no reader ever sees it half deleted."""
    aside = directory.with_name(f".discarded-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(directory, aside)
    except FileNotFoundError:
        return  # another run discarded it
    shutil.rmtree(aside, ignore_errors=True)


def read_verified(path: Path) -> bytes | None:
    """The converted file's bytes if they match the digest beside it; None if missing, unrecorded or different."""
    try:
        data = path.read_bytes()
        recorded = path.with_name(path.name + FILE_DIGEST_SUFFIX).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return data if hashlib.sha256(data).hexdigest() == recorded else None


def write_with_digest(path: Path, data: bytes) -> None:
    """Write the file, then its digest, each atomically: a run killed in between leaves a mismatch, i.e. a rebuild."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    _write_atomically(path.with_name(path.name + FILE_DIGEST_SUFFIX), hashlib.sha256(data).hexdigest().encode("ascii"))


def _write_atomically(path: Path, data: bytes) -> None:
    f = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False)  # noqa: SIM115
    try:
        with f:
            f.write(data)
        os.replace(f.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(f.name)
        raise
