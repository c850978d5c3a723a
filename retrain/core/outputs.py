"""Writing outputs safely: check every destination before the work starts, then stage each output and rename it
into place, so a failed or killed run never leaves a half-written file where a user (or a serving system) looks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retrain.core.errors import InputError


def check_writable(path: Path, what: str, folder: bool) -> None:
    """Fail before any work is done when an output (a file, or a folder if ``folder``) could not be written later."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise InputError(f"cannot write the {what} {path}: it exists and is {'a file' if folder else 'a folder'}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"cannot write the {what} {path}: {parent} is not a writable folder")


@contextmanager
def staged_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success, move it over ``target`` in one rename."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {target.parent} ({error.strerror})") from None
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    if target.is_dir() and staging.is_dir():
        retired = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.rename(target, retired)
        os.rename(staging, target)
        shutil.rmtree(retired)
    else:
        os.replace(staging, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
