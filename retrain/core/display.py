"""Names as people see them: file and folder names may hold any byte but a newline, so they are escaped for display.

A name printed raw can end a line and start a GitHub workflow command, move the cursor or open a terminal hyperlink
(ESC/OSC sequences), or reverse the text that follows it (bidi overrides). ``printable`` is for display only: paths
keep their real bytes wherever they identify a file (JSON, the cache, the split hash).
"""

from __future__ import annotations

import base64
import os
import re
import unicodedata

# Invisible characters that reorder or hide text: bidi embeddings, overrides and isolates (Trojan Source).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Python's surrogateescape stands for each byte of a name that is not valid UTF-8 with U+DC80..U+DCFF.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if _ESCAPED_BYTE.match(char):
        return f"\\x{ord(char) - 0xDC00:02x}"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _needs_escape(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS


def printable(text: object) -> str:
    """``text`` with control characters, line breaks, bidi controls and undecodable bytes as backslash escapes."""
    return "".join(_escape(char) if _needs_escape(char) else char for char in str(text))


def markdown_text(text: object) -> str:
    """``text`` on one line for Markdown (a summary, a pull-request comment): Markdown and HTML characters escaped, so
    text from a file or a baseline renders as written, never as a heading, an image, a link or a tag."""
    shown = re.sub(r"([\\`*_\[\]|#~])", r"\\\1", printable(text))
    return shown.replace("&", "&amp;").replace("<", "&lt;")  # no tag can open; "->" stays as written


def escaped_bytes(name: str) -> str:
    """``name`` with each byte that is not valid UTF-8 as ``printable`` shows it (``\\xff``), all else as it is: a
    string JSON can carry as valid UTF-8 (a lone surrogate escape is refused by most JSON tools)."""
    return _ESCAPED_BYTE.sub(lambda match: _escape(match.group()), name)


def name_bytes(name: str) -> str:
    """The name's bytes on disk as base64: what a tool needs, beside ``escaped_bytes``, to open the file."""
    return base64.b64encode(os.fsencode(name)).decode("ascii")


def is_undecodable(name: str) -> bool:
    """Whether a name as ``os`` lists it held bytes that are not valid UTF-8 (surrogate-escaped by Python)."""
    return _ESCAPED_BYTE.search(name) is not None
