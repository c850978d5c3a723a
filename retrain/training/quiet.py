"""Silencing TensorFlow's C++ layer, which writes to file descriptor 2 itself, before any log setting can apply."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stderr_closed() -> Iterator[None]:
    """Point fd 2 at /dev/null for the block (CUDA probing, oneDNN and XNNPACK notices), then restore it."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr closed: its C++ layer logs CUDA and oneDNN notices before any setting applies."""
    with stderr_closed():
        import tensorflow  # noqa: F401
        import tensorflow_hub  # noqa: F401
