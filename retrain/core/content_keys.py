"""Content keys of many files at once, reading only the files whose key is not known yet.

A content key is the SHA-1 of a file's bytes (``shard_store.content_key``): every cache is keyed by it. Hashing a
100,000-photo dataset reads it all (about 10 GB) on every run, so the keys learnt are kept in a map beside the caches
they serve (``<cache root>/content-keys/v1/``, a ``ShardStore``), and a file's key is found without reading it:

- by its stat signature (path, size, mtime, ctime, inode, device): the same signature means the same bytes, unless the
  file was written within ``RACY_NS`` of being recorded (a timestamp is coarser than a write: such entries are never
  kept, as git treats "racily clean" files);
- else, in a git work tree, by its blob id: ``git ls-files -s`` names the blob of every tracked file without reading
  it, and ``git diff-files`` (the index's stat data) which of them changed since. A blob id is not the SHA-1 of the
  bytes (git hashes a header too), so the map keeps blob id -> SHA-1, learnt when such a file is hashed: a fresh CI
  checkout with a restored cache finds every unchanged photo's key without reading it.

Keeping SHA-1 as the key (rather than switching every cache to blob ids) leaves the caches, and the keys already written
into reports (``--baseline`` matches photos by them), valid as they are: no migration, and the same key in and out of
git. Anything git cannot vouch for is hashed, never an error: git missing, not a work tree, a path outside it, a
symlink, a file git marks assume-unchanged or skip-worktree, a file with a checkout filter (Git LFS: the index holds the
pointer's blob, not the photo's) or smaller than an LFS pointer can be.

What a stat signature cannot catch: a file rewritten with the same size, its mtime restored, on a file system that keeps
no ctime or inode (or with the system clock turned back); and files whose timestamps come from a clock other than this
machine's (a network file system's server) ahead of it, which makes the racy rule late.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrain.core.errors import InputError
from retrain.core.shard_store import ShardStore

# An entry whose file changed this close to when it was seen is not kept: a write within the same timestamp tick would
# leave its signature unchanged. Two seconds covers the coarsest common clocks (FAT's mtime, most network mounts).
RACY_NS = 2_000_000_000
# Git LFS pointers are smaller than this (the spec's limit): a smaller file is hashed, whatever git says of it.
LFS_POINTER_BYTES = 1024
GIT_TIMEOUT_SECONDS = 120
MAP_VERSION = 1
# A map entry: the content key, and the size of the bytes it is the key of (a blob's must equal the file's).
_RECORD = np.dtype([("sha1", "S40"), ("size", "<i8")])
# Bytes a map entry takes on disk (its key, its record): the map is cut to the latest run's entries once far larger.
_ENTRY_BYTES = 40 + _RECORD.itemsize
# A map smaller than this is never cut, however few files the latest run keyed.
MAP_SLACK_BYTES = 1 << 20
# Attributes under which the work tree's bytes may differ from the blob's; any value but these is not trusted.
_CHECKOUT_ATTRIBUTES = ("filter", "ident", "working-tree-encoding")
_UNSET = (b"unspecified", b"unset")
# Entries of each map this process has read or written, with the state of its shards then: the audit keys its files
# for the property cache and again for the bottleneck cache, and the second time need not read 100,000 entries again,
# unless the map changed on disk in between (another run, damage).
_SEEN: dict[Path, tuple[tuple, dict[str, tuple[str, int]]]] = {}


def content_keys(paths: Sequence[Path], cache_root: Path | None = None) -> list[str | OSError]:
    """The content key (SHA-1 of the bytes) of each file, or the error that kept it from being read.

    With ``cache_root``, keys are found in (and added to) the map kept there, and from git, so that only new or changed
    files are read; without, every file is hashed. One call for all the files of a run: git is asked once.
    """
    now = time.time_ns()
    files = [_File.of(path) for path in paths]
    keys: list[str | OSError | None] = [file.error for file in files]
    if cache_root is None:
        _hash_into(keys, files, {})
        return keys  # type: ignore[return-value]  # every slot is filled
    maps = Path(cache_root) / "content-keys" / f"v{MAP_VERSION}"
    stat_map, blob_map = _KeyMap(maps / "stat"), _KeyMap(maps / "blob")
    seen = stat_map.seen()
    by_stat = {file.signature: seen[file.signature] for file in files if file.signature in seen}
    by_stat |= stat_map.read([file.signature for file in files if file.stat and file.signature not in by_stat])
    for index, file in enumerate(files):
        if file.stat and (entry := by_stat.get(file.signature)) and entry[1] == file.stat.st_size:
            keys[index] = entry[0]
    blobs = _git_blobs({index: files[index] for index, key in enumerate(keys) if key is None})
    by_blob = blob_map.read([_blob_entry(blob) for blob in blobs.values()])
    for index, blob in blobs.items():
        if (entry := by_blob.get(_blob_entry(blob))) and entry[1] == files[index].stat.st_size:
            keys[index] = entry[0]
    learnt = _hash_into(keys, files, blobs)
    blob_map.keep(
        learnt, len(files), lambda: {_blob_entry(blob) for blob in _git_blobs(dict(enumerate(files))).values()}
    )
    learnt = {
        file.signature: (key, file.stat.st_size)
        for file, key in zip(files, keys, strict=True)
        if isinstance(key, str) and file.signature not in by_stat and not _racy(file.stat, now)
    }
    signatures = {file.signature for file in files if file.stat}
    stat_map.keep(learnt, len(signatures), lambda: signatures)
    stat_map.remember(learnt | {signature: by_stat[signature] for signature in signatures if signature in by_stat})
    return keys  # type: ignore[return-value]


@dataclass(frozen=True)
class _File:
    """A path; where it is (absolute, normalised: how git's paths are matched to it); its stat and signature, the map's
    key for the file as it is now (any change to its bytes changes one of these, but see above), or why there are none.
    """

    path: Path
    where: str
    stat: os.stat_result | None
    signature: str
    error: OSError | None

    @classmethod
    def of(cls, path: Path) -> _File:
        where = os.path.abspath(path)
        try:
            s = os.stat(path)
        except OSError as error:
            return cls(path, where, None, "", error)
        text = f"stat\0{where}\0{s.st_size}\0{s.st_mtime_ns}\0{s.st_ctime_ns}\0{s.st_ino}\0{s.st_dev}"
        return cls(path, where, s, hashlib.sha1(os.fsencode(text)).hexdigest(), None)


def _racy(stat: os.stat_result, now: int) -> bool:
    """Whether the file changed too close to ``now`` (or after it) for its signature to be trusted later."""
    return max(stat.st_mtime_ns, stat.st_ctime_ns) > now - RACY_NS


def _blob_entry(blob: str) -> str:
    return hashlib.sha1(f"blob\0{blob}".encode()).hexdigest()


def _hash_into(
    keys: list[str | OSError | None], files: list[_File], blobs: dict[int, str]
) -> dict[str, tuple[str, int]]:
    """Hash the files without a key yet; return the map entries learnt: blob -> key, where the bytes read are exactly
    the blob git names (so a file changed since git looked, or converted on checkout, teaches nothing)."""
    missing = [index for index, key in enumerate(keys) if key is None]
    learnt: dict[str, tuple[str, int]] = {}
    with ThreadPoolExecutor() as pool:  # hashing releases the GIL
        hashed = pool.map(lambda index: _digests(files[index], index in blobs), missing)
        for index, result in zip(missing, hashed, strict=True):
            if isinstance(result, OSError):
                keys[index] = result
                continue
            keys[index], blob = result
            if blob is not None and blob == blobs[index]:
                learnt[_blob_entry(blob)] = (result[0], files[index].stat.st_size)
    return learnt


def _digests(file: _File, as_blob: bool) -> tuple[str, str | None] | OSError:
    """The SHA-1 of the file's bytes and, if asked, their git blob id (the SHA-1 of a header and them), in one read."""
    sha1 = hashlib.sha1()
    blob = hashlib.sha1(b"blob %d\0" % file.stat.st_size) if as_blob else None
    try:
        with open(file.path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha1.update(chunk)
                if blob is not None:
                    blob.update(chunk)
    except OSError as error:
        return error
    return sha1.hexdigest(), None if blob is None else blob.hexdigest()


def _git_blobs(files: dict[int, _File]) -> dict[int, str]:
    """The blob id of each file (by index) that git vouches for: tracked, unchanged since the index saw it, a regular
    file checked out as is. Nothing when git is missing or the files are not in a work tree."""
    candidates = {index: file for index, file in files.items() if file.stat and file.stat.st_size >= LFS_POINTER_BYTES}
    if not candidates:
        return {}
    top = os.path.commonpath([os.path.dirname(file.where) for file in candidates.values()])
    try:
        listed = _git(top, "ls-files", "-z", "-s", "-v")
        changed = set(_git(top, "diff-files", "-z", "--name-only", "--relative").split(b"\0"))
    except (OSError, subprocess.SubprocessError):
        return {}  # no git, not a work tree (or a bare one), a repository git does not trust: hash
    prefix = len(os.path.join(top, ""))  # git names files relative to ``top``, as these are after it
    index_of = {os.fsencode(file.where[prefix:]): index for index, file in candidates.items()}
    blobs: dict[bytes, tuple[int, str]] = {}
    for line in listed.split(b"\0"):
        # "H 100644 <blob> 0\t<path>": H is a tracked file with no assume-unchanged or skip-worktree flag, stage 0
        # is merged, 100644/100755 a regular file (not a symlink or a submodule).
        described, _, name = line.partition(b"\t")
        fields = described.split(b" ")
        if len(fields) != 4 or fields[0] != b"H" or fields[1] not in (b"100644", b"100755") or fields[3] != b"0":
            continue
        if name in changed:
            continue
        index = index_of.get(name)
        if index is not None:
            blobs[name] = (index, fields[2].decode())
    try:
        filtered = _filtered(top, list(blobs))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {index: blob for name, (index, blob) in blobs.items() if name not in filtered}


def _filtered(top: str, names: list[bytes]) -> set[bytes]:
    """The names whose checkout may change their bytes (a filter such as Git LFS's, ident, an encoding)."""
    if not names:
        return set()
    out = _git(top, "check-attr", "-z", "--stdin", *_CHECKOUT_ATTRIBUTES, stdin=b"\0".join(names) + b"\0")
    fields = out.split(b"\0")
    return {fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] not in _UNSET}


def _git(top: str, *args: str, stdin: bytes | None = None) -> bytes:
    """Run git in ``top``: its output, or CalledProcessError. GIT_* variables (a hook's GIT_DIR, GIT_INDEX_FILE) are
    dropped, so that git finds the repository holding ``top``; fsmonitor is off, so no hook of the repository runs."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    command = ["git", "-c", "core.fsmonitor=false", "-C", top, *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, check=True, env=environment, timeout=GIT_TIMEOUT_SECONDS
    ).stdout


class _KeyMap:
    """Content keys learnt, by stat signature or by git blob (one map each): a ``ShardStore`` under the cache root that
    ``cache prune`` leaves alone (its keys name files, not contents), cut to the entries of the latest run's files once
    far larger. Blob entries are facts about content, true on any checkout: they go only when their blob is no longer
    in the work tree (a run keying files by stat alone does not know the blobs, and must not drop them).

    A damaged shard is dropped (its entries are learnt again); a map that cannot be written is simply not kept.
    """

    def __init__(self, directory: Path) -> None:
        self.store = ShardStore(directory, dtype=_RECORD, what="content keys")

    def seen(self) -> dict[str, tuple[str, int]]:
        """The entries this process last read or wrote here, if the map is as it left it; else none."""
        state, entries = _SEEN.get(self.store.directory, (None, {}))
        return entries if state == self._state() else {}

    def remember(self, entries: dict[str, tuple[str, int]]) -> None:
        _SEEN[self.store.directory] = (self._state(), entries)

    def _state(self) -> tuple:
        with contextlib.suppress(OSError):
            return tuple((shard.name, (s := shard.stat()).st_size, s.st_mtime_ns) for shard in self.store.shards())
        return ()

    def read(self, entries: Sequence[str]) -> dict[str, tuple[str, int]]:
        unique = sorted(set(entries))
        if not unique or not self.store.directory.is_dir():
            return {}
        records = np.zeros((len(unique), 1), _RECORD)
        found = self.store.read(unique, records).found
        keys, sizes = records["sha1"][:, 0].tolist(), records["size"][:, 0].tolist()
        return {
            entry: (key.decode(), size)
            for entry, key, size, hit in zip(unique, keys, sizes, found.tolist(), strict=True)
            if hit
        }

    def keep(self, learnt: dict[str, tuple[str, int]], files: int, wanted: Callable[[], set[str]]) -> None:
        """Add the entries learnt; then, if the map holds far more entries than there are ``files``, keep only the
        ``wanted`` ones (asked for only then; none known: nothing is dropped)."""
        with contextlib.suppress(InputError, OSError):  # a read-only cache root: keys are hashed again next time
            if learnt:
                self.store.add(list(learnt), np.array(list(learnt.values()), _RECORD).reshape(-1, 1))
                self.store.compact()
            held = sum(shard.stat().st_size for shard in self.store.shards())
            if held > 4 * _ENTRY_BYTES * files + MAP_SLACK_BYTES and (kept := wanted()):
                self.store.prune(kept)
