"""Small inline pictures for self-contained HTML pages (the run report, the audit page): no files beside the page."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from retrain.core.images import ImageDecodeError, decode_image

THUMBNAIL_SIZE = 160


def data_uri(data: bytes, mime: str) -> str:
    """Bytes as a ``data:`` URI, so a page carries its pictures inside it."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(path: Path, size: int = THUMBNAIL_SIZE) -> str | None:
    """A JPEG thumbnail of the photo, upright, as a data URI; None when it cannot be decoded (moved, broken, too big).

    It goes through the same guarded decoder as training, so a hostile file costs a page no more than it costs a run.
    """
    try:
        image = decode_image(Path(path), (size, size)).pixels
    except (ImageDecodeError, OSError):
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return data_uri(buffer.getvalue(), "image/jpeg")
