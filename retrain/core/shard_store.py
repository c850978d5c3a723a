"""The content-keyed store both caches use (bottlenecks, the audit's image properties): append-only shard files in one
folder, merged as they accumulate. Each shard ends with a SHA-256 of everything before it, checked on every read: a
damaged shard is never trusted, only recomputed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from retrain.core.errors import InputError

# Rows per shard written while computing: a killed run loses at most this many computed bottlenecks.
SHARD_ROWS = 512
KEY_DTYPE = np.dtype("S40")
VECTOR_DTYPE = np.dtype("<f4")
SHARD_SUFFIX = ".shard"
# The trailer of a shard: this format's marker, then the SHA-256 of the bytes before it. Shards of the first format
# (no trailer) are ignored, so a cache filled by an older retrain-ci is recomputed, never misread.
SHARD_MAGIC = b"RCIBNv2\n"
TRAILER_BYTES = len(SHARD_MAGIC) + hashlib.sha256().digest_size
# Shards smaller than this are merged once there are more than MAX_SMALL_SHARDS of them, so a cache filled by many
# runs is still a few large files; large shards are left alone, so no entry is rewritten more than a few times.
SMALL_SHARD_BYTES = 64 << 20
MAX_SMALL_SHARDS = 8
# Rows read from a shard at a time: loading needs memory for the vectors it returns and little more.
READ_CHUNK_ROWS = 1024
# A temporary file this old belongs to a writer that was killed.
STALE_SECONDS = 3600


def content_key(path: Path) -> str:
    """SHA-1 of the file's bytes: the cache key of its bottleneck. A run keys its files with
    ``retrain.core.content_keys.content_keys``, which reads only the ones it has not seen unchanged."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ShardStore:
    """Shard files ``<time>-<pid>-<random>.shard`` in one folder, each row a ``dtype`` array of one width per key.

    A shard is two numpy arrays in one file, the keys (an index of a few bytes per entry, read first) then the rows,
    and a trailer with the checksum of both. Each shard is written to a temporary file and renamed into place, so a
    killed writer leaves at most a stray temporary file, and two runs writing at once each add their own shards.
    Reading a shard hashes all of it (about 1 GB/s), so damage on disk is found before any of its rows is used.
    """

    def __init__(
        self,
        directory: Path,
        *,
        dtype: np.dtype = VECTOR_DTYPE,
        what: str = "bottlenecks",
        shard_rows: int = SHARD_ROWS,
        max_small_shards: int = MAX_SMALL_SHARDS,
    ) -> None:
        self.directory = Path(directory)
        self.dtype = np.dtype(dtype)
        self.what = what
        self.shard_rows = shard_rows
        self.max_small_shards = max_small_shards

    def read(self, keys: Sequence[str], out: np.ndarray) -> CacheRead:
        """Fill ``out[i]`` with the cached vector of ``keys[i]`` (keys unique); return the rows filled.

        Rows not found may have been overwritten; the caller computes them. A damaged shard is removed (its entries are
        recomputed and stored again) and reported, so it is reported once.
        """
        found = np.zeros(len(keys), dtype=bool)
        damaged: list[tuple[Path, str]] = []
        if not len(keys):
            return CacheRead(found, damaged)
        wanted = np.asarray(keys, dtype=KEY_DTYPE)
        order = np.argsort(wanted)
        index = _KeyIndex(wanted[order], order)
        read: set[Path] = set()
        # A run merging shards deletes them after renaming the merged one into place; a shard that vanished between
        # listing and opening is therefore in a shard that a new listing shows.
        for _attempt in range(3):
            vanished = False
            for shard in self.shards():
                if shard in read:
                    continue
                read.add(shard)
                try:
                    with open(shard, "rb") as f:
                        _read_shard(f, self.dtype, index, found, out)
                except FileNotFoundError:
                    vanished = True
                except DamagedShard as error:
                    damaged.append((shard, str(error)))
                    with contextlib.suppress(OSError):
                        shard.unlink()
                except (OSError, ValueError):
                    continue  # unreadable or of the older format: its entries are simply recomputed
            if not vanished:
                break
        return CacheRead(found, damaged)

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Store one shard atomically."""
        if len(keys):
            self._write_shard(lambda f: _write_arrays(f, np.asarray(keys, KEY_DTYPE), np.asarray(rows, self.dtype)))

    def shards(self) -> list[Path]:
        """Complete shards, oldest first."""
        return sorted(self.directory.glob("*" + SHARD_SUFFIX))

    def compact(self) -> None:
        """Merge the small shards into one, so loading opens a few files however many runs filled the cache.

        One run merges at a time (a lock the kernel releases if the run dies); the merged shard is renamed into place
        before its sources are deleted, so every entry is readable at every moment.
        """
        if len(self._small_shards()) <= self.max_small_shards:
            return
        with self._compaction_lock() as locked:
            small = self._small_shards()
            if not locked or len(small) <= self.max_small_shards:
                return
            self._remove_stale_temporaries()
            sources = []
            for shard in small:
                try:
                    with open(shard, "rb") as f:
                        layout = _verified_layout(f, self.dtype)  # a damaged source must not be merged
                    sources.append((shard, layout))
                except ValueError:
                    shard.unlink()  # damaged outside retrain-ci (its own writes are atomic), or the older format
                except OSError:
                    continue
            self._write_shard(lambda f: _merge(sources, f))
            for shard, _ in sources:
                with contextlib.suppress(FileNotFoundError):
                    shard.unlink()

    def prune(self, keep: set[str]) -> Pruned:
        """Drop the entries whose key is not in ``keep``, rewriting each shard that holds any (the new one renamed
        into place before the old one is deleted, so a reader finds every kept entry at every moment). A damaged
        shard is removed whole. Waits for a merge in progress rather than racing it."""
        pruned = Pruned()
        wanted = np.asarray(sorted(keep), dtype=KEY_DTYPE)
        if not self.directory.is_dir():
            return pruned
        with self._compaction_lock(blocking=True):
            for shard in self.shards():
                try:
                    size = shard.stat().st_size
                    with open(shard, "rb") as f:
                        layout = _verified_layout(f, None)
                except ValueError:
                    shard.unlink()
                    pruned.bytes += size
                    continue
                except OSError:
                    continue
                kept = np.flatnonzero(np.isin(layout.keys, wanted))
                if len(kept) == layout.rows:
                    continue
                if len(kept):
                    source = [(shard, layout, kept)]
                    new = self._write_shard(lambda f, source=source: _write_rows(source, f))
                    size -= new.stat().st_size
                shard.unlink()
                pruned.entries += layout.rows - len(kept)
                pruned.bytes += size
        return pruned

    def _small_shards(self) -> list[Path]:
        small = []
        for shard in self.shards():
            with contextlib.suppress(FileNotFoundError):
                if shard.stat().st_size < SMALL_SHARD_BYTES:
                    small.append(shard)
        return small

    def _write_shard(self, write: Callable[[BinaryIO], None]) -> Path:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".", suffix=".tmp", delete=False) as f:
                try:
                    hashing = _HashingWriter(f)
                    write(hashing)
                    f.write(SHARD_MAGIC + hashing.digest.digest())
                    f.flush()
                    os.fsync(f.fileno())
                except BaseException:
                    os.unlink(f.name)
                    raise
            os.replace(f.name, self.directory / name)
            return self.directory / name
        except OSError as error:
            raise InputError(f"cannot write {self.what} to {self.directory} ({error.strerror})") from None

    @contextlib.contextmanager
    def _compaction_lock(self, *, blocking: bool = False) -> Iterator[bool]:
        with open(self.directory / ".compaction.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    def _remove_stale_temporaries(self) -> None:
        for temporary in self.directory.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - temporary.stat().st_mtime > STALE_SECONDS:
                    temporary.unlink()


@dataclass(frozen=True)
class _KeyIndex:
    """Wanted keys sorted for binary search, and where each sorted key goes in the caller's order."""

    sorted_keys: np.ndarray
    rows: np.ndarray

    def rows_of(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``keys``, caller's rows) of the keys that are wanted."""
        position = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        hits = np.flatnonzero(self.sorted_keys[position] == keys)
        return hits, self.rows[position[hits]]


class DamagedShard(ValueError):
    """A shard of the current format whose bytes are not the ones written: cut short, or changed on disk."""


@dataclass
class Pruned:
    """What a prune removed: entries (of content no longer in the dataset) and the bytes they took on disk."""

    entries: int = 0
    bytes: int = 0


@dataclass
class CacheRead:
    """What a read found: the rows filled, and each damaged shard it ignored (and removed) with the reason."""

    found: np.ndarray
    damaged: list[tuple[Path, str]]


@dataclass(frozen=True)
class _Layout:
    """Where a shard's parts are: its keys, its rows (rows x width of dtype from ``offset``), its checksum."""

    keys: np.ndarray
    dtype: np.dtype
    width: int
    offset: int
    checksum: bytes

    @property
    def rows(self) -> int:
        return len(self.keys)


class _HashingWriter:
    """A file that hashes what is written to it: the shard's checksum, computed in the same pass as the write."""

    def __init__(self, f: BinaryIO) -> None:
        self.file = f
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)


def _write_arrays(f: BinaryIO, keys: np.ndarray, vectors: np.ndarray) -> None:
    if vectors.ndim != 2 or len(vectors) != len(keys):
        raise ValueError(f"{len(keys)} keys for vectors of shape {vectors.shape}")
    np.save(f, keys)
    np.save(f, vectors)


def _read_layout(f: BinaryIO, expected: np.dtype | None) -> _Layout:
    """The shard's layout; DamagedShard if it is cut or malformed or holds rows of another dtype than ``expected``
    (None: any), ValueError if it has the older format."""
    try:
        keys = np.load(f)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
    except (EOFError, ValueError, SyntaxError, TypeError):
        raise DamagedShard("unreadable header") from None
    if keys.dtype != KEY_DTYPE or (expected is not None and dtype != expected) or dtype.hasobject:
        raise DamagedShard("not a shard of this cache")
    if fortran_order or len(shape) != 2 or shape[0] != len(keys):
        raise DamagedShard("not a shard of this cache")
    offset = f.tell()
    end = offset + shape[0] * shape[1] * dtype.itemsize
    size = os.fstat(f.fileno()).st_size
    if size == end:
        raise ValueError("bottleneck shard of the older format, without a checksum")
    if size != end + TRAILER_BYTES:
        raise DamagedShard(f"{size - end - TRAILER_BYTES:+d} bytes")
    f.seek(end)
    trailer = f.read(TRAILER_BYTES)
    if not trailer.startswith(SHARD_MAGIC):
        raise DamagedShard("no checksum")
    return _Layout(keys, dtype, shape[1], offset, trailer[len(SHARD_MAGIC) :])


def _verified_layout(f: BinaryIO, expected: np.dtype | None) -> _Layout:
    """The layout of a shard whose every byte has been checked against its checksum."""
    layout = _read_layout(f, expected)
    for _block in _verified_blocks(f, layout):
        pass
    return layout


def _read_shard(f: BinaryIO, dtype: np.dtype, index: _KeyIndex, found: np.ndarray, out: np.ndarray) -> None:
    layout = _read_layout(f, dtype)
    if layout.width != out.shape[1]:
        raise ValueError("shard of another width")
    positions, rows = index.rows_of(layout.keys)
    new = ~found[rows]
    positions, rows = positions[new], rows[new]
    if not len(rows):
        return  # nothing wanted from this shard: no need to read (or verify) its rows
    # Rows are copied before the checksum is known: they count as found only once the whole shard has verified.
    for chunk, first in _verified_blocks(f, layout):
        selected = (positions >= first) & (positions < first + len(chunk))
        out[rows[selected]] = chunk[positions[selected] - first]
    found[rows] = True


def _verified_blocks(f: BinaryIO, layout: _Layout) -> Iterator[tuple[np.ndarray, int]]:
    """Every block of the shard's rows, hashed as read; DamagedShard after the last if the checksum differs."""
    f.seek(0)
    digest = hashlib.sha256(f.read(layout.offset))
    for chunk, first in _blocks(f, layout, np.arange(0, layout.rows, READ_CHUNK_ROWS)):
        digest.update(chunk.view(np.uint8))
        yield chunk, first
    if digest.digest() != layout.checksum:
        raise DamagedShard("checksum mismatch")


def _blocks(f: BinaryIO, layout: _Layout, positions: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
    """The blocks of a shard's rows that hold ``positions`` (sorted), each with the row it starts at."""
    buffer = np.empty((min(READ_CHUNK_ROWS, layout.rows), layout.width), layout.dtype)
    for block in np.unique(positions // READ_CHUNK_ROWS):
        first = int(block) * READ_CHUNK_ROWS
        chunk = buffer[: min(READ_CHUNK_ROWS, layout.rows - first)]
        f.seek(layout.offset + first * layout.width * layout.dtype.itemsize)
        if f.readinto(chunk.view(np.uint8)) != chunk.nbytes:
            raise DamagedShard("cut short")
        yield chunk, first


def _merge(sources: list[tuple[Path, _Layout]], f: BinaryIO) -> None:
    """Write the union of the (verified) source shards, first copy of each key, as one shard."""
    seen: set[bytes] = set()
    kept = []
    for shard, layout in sources:
        fresh = np.array([key not in seen for key in layout.keys.tolist()], dtype=bool)
        seen.update(layout.keys[fresh].tolist())
        kept.append((shard, layout, np.flatnonzero(fresh)))
    _write_rows(kept, f)


def _write_rows(sources: list[tuple[Path, _Layout, np.ndarray]], f: BinaryIO) -> None:
    """Write the given rows (sorted) of (verified) source shards as one shard, a block at a time."""
    if len({(layout.dtype, layout.width) for _, layout, _ in sources}) != 1:
        raise ValueError("shards of different widths or kinds in one folder")
    dtype, width = sources[0][1].dtype, sources[0][1].width
    np.save(f, np.concatenate([layout.keys[rows] for _, layout, rows in sources]))
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (sum(len(rows) for *_, rows in sources), width),
    }
    np.lib.format.write_array_header_1_0(f, header)
    for shard, layout, rows in sources:
        with open(shard, "rb") as source:
            for chunk, first in _blocks(source, layout, rows):
                selected = rows[(rows >= first) & (rows < first + len(chunk))]
                f.write(chunk[selected - first].tobytes())
