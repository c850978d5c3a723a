"""Content keys without re-reading: a run finds the key of every file it has seen unchanged (by its stat signature, or
by git's blob id in a work tree) without opening it, and a key is always the SHA-1 of the file's bytes."""

from __future__ import annotations

import builtins
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datacheck.properties import image_properties, record_dtype
from retrain.core import content_keys as keys_module
from retrain.core.content_keys import content_keys
from retrain.core.dataset import scan_folder
from retrain.core.settings import SplitSettings
from retrain.core.shard_store import ShardStore, content_key
from tests.conftest import copy_dataset, sample_photos


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test count as settled at once (they are otherwise re-read until two seconds old)."""
    monkeypatch.setattr(keys_module, "RACY_NS", 0)


@pytest.fixture
def photos(tmp_path: Path, flowers_sample: Path) -> Path:
    """Eight real photos in two classes."""
    return copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 4) for c in ("daisy", "roses")})


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every file opened through ``open`` while the test runs (photos are hashed, and decoded, through it)."""
    paths: list[Path] = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(file, str | os.PathLike):
            paths.append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    yield paths


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.jpg") if ".git" not in path.parts)


def _git(repo: Path, *args: str) -> str:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-C", str(repo), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout


def _repository(photos: Path) -> Path:
    _git(photos, "init", "-q")
    _git(photos, "add", ".")
    _git(photos, "commit", "-q", "-m", "photos")
    return photos


def _map(cache_root: Path, kind: str) -> Path:
    """Where the map of content keys by ``kind`` (stat or blob) is kept under a cache root."""
    return cache_root / "content-keys" / f"v{keys_module.MAP_VERSION}" / kind


def _rewrite(path: Path, data: bytes) -> None:
    """Write ``data`` over the file in place, keeping its size and mtime (ctime moves on: the kernel sets it)."""
    before = path.stat()
    assert len(data) == before.st_size
    time.sleep(0.02)  # past the clock's tick, so that the new ctime differs
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_outside_git_a_key_is_the_sha1_of_the_bytes_and_a_second_run_reads_nothing(
    photos: Path, tmp_path: Path, settled: None, opened: list[Path]
) -> None:
    files = _files(photos)
    truth = [content_key(path) for path in files]
    assert content_keys(files) == truth  # no cache: every file hashed
    assert content_keys(files, tmp_path / "cache") == truth
    opened.clear()
    assert content_keys(files, tmp_path / "cache") == truth
    assert not set(opened) & {path.resolve() for path in files}


def test_a_missing_file_gets_its_error_not_a_key(photos: Path, tmp_path: Path) -> None:
    files = [*_files(photos), photos / "daisy" / "gone.jpg"]
    keys = content_keys(files, tmp_path / "cache")
    assert isinstance(keys[-1], FileNotFoundError)
    assert keys[:-1] == [content_key(path) for path in files[:-1]]


def test_a_file_just_written_is_read_again_next_run(photos: Path, tmp_path: Path, opened: list[Path]) -> None:
    """Its signature could hide a rewrite within the same clock tick (git's "racily clean" files)."""
    files = _files(photos)
    truth = [content_key(path) for path in files]
    content_keys(files, tmp_path / "cache")
    opened.clear()
    assert content_keys(files, tmp_path / "cache") == truth
    assert {path.resolve() for path in files} <= set(opened)


def test_a_rewrite_keeping_size_and_mtime_is_caught(photos: Path, tmp_path: Path, settled: None) -> None:
    files = _files(photos)
    content_keys(files, tmp_path / "cache")
    edited, replaced = files[0], files[1]
    _rewrite(edited, bytes(reversed(edited.read_bytes())))  # same size, same mtime: a new ctime
    stat = replaced.stat()
    replacement = replaced.with_suffix(".new")
    replacement.write_bytes(bytes(reversed(replaced.read_bytes())))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.replace(replaced)  # same size, same mtime: a new inode
    assert content_keys(files, tmp_path / "cache") == [content_key(path) for path in files]


def test_a_damaged_key_map_is_ignored_and_rebuilt(photos: Path, tmp_path: Path, settled: None) -> None:
    files = _files(photos)
    truth = [content_key(path) for path in files]
    content_keys(files, tmp_path / "cache")
    store = ShardStore(_map(tmp_path / "cache", "stat"))
    (shard,) = store.shards()
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # inside a stored key
    shard.write_bytes(bytes(data))
    assert content_keys(files, tmp_path / "cache") == truth
    assert shard not in store.shards() and store.shards()  # dropped, and the keys learnt again


def test_in_git_tracked_modified_and_untracked_files_get_the_sha1_of_their_bytes(
    photos: Path, tmp_path: Path, settled: None
) -> None:
    repository = _repository(photos)
    tracked = _files(repository)
    assert content_keys(tracked, tmp_path / "cache") == [content_key(path) for path in tracked]
    modified = tracked[0]
    modified.write_bytes(bytes(reversed(modified.read_bytes())))  # the same size, content git does not have
    untracked = repository / "roses" / "new.jpg"
    shutil.copyfile(tracked[1], untracked)
    files = [*tracked, untracked]
    truth = [content_key(path) for path in files]
    assert content_keys(files, tmp_path / "cache") == truth
    assert content_keys(files, tmp_path / "cache") == truth


def test_a_fresh_clone_with_the_cache_restored_reads_no_unchanged_photo(
    photos: Path, tmp_path: Path, opened: list[Path]
) -> None:
    """As on CI: a new checkout (new inodes, new timestamps: no stat signature matches) and the saved cache."""
    repository = _repository(photos)
    content_keys(_files(repository), tmp_path / "cache")  # learns each blob's key (racy or not: blobs are content)
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repository), str(clone))
    files = _files(clone)
    edited = files[2]
    edited.write_bytes(edited.read_bytes()[:-10])
    truth = [content_key(path) for path in files]
    opened.clear()
    assert content_keys(files, tmp_path / "cache") == truth
    assert {path for path in set(opened) if path.suffix == ".jpg"} == {edited.resolve()}


def test_a_file_git_is_told_to_assume_unchanged_is_read(photos: Path, tmp_path: Path, settled: None) -> None:
    repository = _repository(photos)
    files = _files(repository)
    content_keys(files, tmp_path / "cache")
    hidden = files[0]
    _git(repository, "update-index", "--assume-unchanged", str(hidden.relative_to(repository)))
    hidden.write_bytes(bytes(reversed(hidden.read_bytes())))  # the same size, a new stat signature
    assert content_keys(files, tmp_path / "cache")[0] == content_key(hidden)


def test_a_file_checked_out_through_a_filter_is_never_given_its_blobs_key(
    photos: Path, tmp_path: Path, settled: None
) -> None:
    """Git LFS keeps a pointer in the index and the photo in the work tree: the pointer's blob is not the photo."""
    (photos / ".gitattributes").write_text("*.jpg filter=pointer\n")
    _git(photos, "init", "-q")
    pointer = "version https://git-lfs.github.com/spec/v1\\noid sha256:0\\nsize 1\\n"
    _git(photos, "config", "filter.pointer.clean", f"cat >/dev/null; printf '{pointer}'")
    _git(photos, "add", ".")
    files = _files(photos)
    assert _git(photos, "diff-files", "--name-only") == ""  # git vouches for every photo: unchanged since added
    blob = _git(photos, "ls-files", "-s", str(files[0].relative_to(photos))).split()[1]
    entry = keys_module._blob_entry(blob)
    forged = {entry: ("f" * 40, files[0].stat().st_size)}  # as if learnt where the photo's bytes were that blob
    keys_module._KeyMap(tmp_path / "cache" / "content-keys" / f"v{keys_module.MAP_VERSION}" / "blob").keep(
        forged, 1, set
    )
    assert content_keys(files, tmp_path / "cache") == [content_key(path) for path in files]


def test_without_git_or_a_work_tree_every_file_is_hashed(
    photos: Path, tmp_path: Path, settled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = _repository(photos)
    files = _files(repository)
    truth = [content_key(path) for path in files]
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # a hook's variable: dropped, the right repo found
    assert content_keys(files, tmp_path / "cache") == truth
    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert content_keys(files, tmp_path / "cache") == truth


def test_a_tracked_symlink_gets_the_key_of_the_photo_it_points_to(photos: Path, tmp_path: Path, settled: None) -> None:
    target = _files(photos)[0]
    link = photos / "roses" / "link.jpg"
    link.symlink_to(target)
    repository = _repository(photos)
    files = _files(repository)
    assert link in files
    content_keys(files, tmp_path / "cache")
    assert content_keys(files, tmp_path / "cache") == [content_key(path) for path in files]


def test_a_reaudit_reads_no_photo_to_key_it(photos: Path, tmp_path: Path, settled: None, opened: list[Path]) -> None:
    """The property pass keys every image through the map beside its cache: unchanged photos are neither hashed nor
    decoded again."""
    scan = scan_folder(photos)
    cache = ShardStore(tmp_path / "cache" / "properties", dtype=record_dtype(), what="image properties")
    cold = image_properties(scan, SplitSettings(), cache=cache)
    opened.clear()
    warm = image_properties(scan, SplitSettings(), cache=cache)
    assert warm.reused == len(_files(photos)) and warm.table.equals(cold.table)
    assert not {path for path in opened if path.suffix == ".jpg"}


def test_the_map_is_cut_to_the_latest_files_but_keeps_the_blobs_a_clone_needs(
    photos: Path, tmp_path: Path, settled: None, monkeypatch: pytest.MonkeyPatch, opened: list[Path]
) -> None:
    monkeypatch.setattr(keys_module, "MAP_SLACK_BYTES", 0)
    repository = _repository(photos)
    files = _files(repository)
    content_keys(files, tmp_path / "cache")
    for second in range(1, 6):  # each touch gives every file a new signature: the stat map grows, then is cut
        for path in files:
            os.utime(path, (second, second))
        content_keys(files, tmp_path / "cache")
    stat_map = ShardStore(_map(tmp_path / "cache", "stat"), dtype=keys_module._RECORD)
    held = sum(shard.stat().st_size for shard in stat_map.shards())
    assert held < 3 * len(files) * keys_module._ENTRY_BYTES  # five generations of signatures, cut to about one
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repository), str(clone))
    cloned = _files(clone)
    truth = [content_key(path) for path in cloned]
    opened.clear()
    assert content_keys(cloned, tmp_path / "cache") == truth
    assert not {path for path in opened if path.suffix == ".jpg"}
