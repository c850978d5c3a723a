"""Legacy PyTorch checkpoints crafted opcode by opcode, for the weights reader's fault tests."""

from __future__ import annotations

import struct


def pickled_int(value: int) -> bytes:
    return b"I%d\n" % value


def pickled_text(value: str) -> bytes:
    return b"X" + struct.pack("<I", len(value)) + value.encode()


def pickled_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"
