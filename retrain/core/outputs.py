"""Writing outputs safely: check every destination before the work starts, then stage each output and rename it
into place, so a failed or killed run never leaves a half-written file where a user (or a serving system) looks.

One output (a report, an audit file) is staged next to its target and renamed over it: a reader sees the old one or
the new one, whole. A training run's outputs (labels file, SavedModel, frozen graph, TensorFlow Lite model, report)
must also agree with *each other*, and they may sit in different folders (the tutorial's /tmp paths), where no single
rename swaps them all. So a run writes them as one ``OutputSet``:

- Before any work it takes a lock beside the labels file (``.output_labels.txt.lock``, an flock the kernel drops if
  the run dies). A second run on the same outputs stops at once with one line naming the holder. The run deletes the
  lock file when it ends, while still holding the lock, so a finished run leaves nothing behind (a killed one leaves
  it, and the next run reuses it and deletes it in turn). Deleting an flocked file races with a run that opened it
  just before: that run would lock a file no longer in the folder while a third creates and locks a new one. So a run
  that gets the lock checks that the file it locked is still the one under the lock's name, and otherwise tries again.
- Every output is staged next to its target (``.NAME.PID.staging``): a failure (a full disk) or a kill before the
  commit leaves the previous set as it was. The next run on the set removes a dead run's staging files.
- The commit writes a journal beside the labels file (``.output_labels.txt.commit``: each staged path, its target and
  its inode), renames every output into place (a folder is swapped in one atomic exchange where the kernel has one),
  then deletes the journal. A run killed mid-commit leaves the journal, and the next run on the set completes that
  commit before it starts.

A folder an output replaces whole (a report folder, a SavedModel) is the user's unless retrain-ci wrote it: each such
folder carries a marker (``.retrain-ci-output``) naming what was written into it, and a folder holding anything else
(the user's notes, the working folder, a dataset) is refused before any work and again just before the rename. Only
what a run wrote itself is ever removed.

For the milliseconds between a commit's first and last rename the files on disk are not one set. That is why every
exported model also carries its own labels (``retrain.training.export``) and the loaders refuse a labels file that
disagrees with them: no reader pairs one run's model with another run's labels.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from retrain.core.display import printable
from retrain.core.errors import InputError

# renameat2(2) flag: swap two paths atomically (Linux 3.15+, on ext4, xfs, btrfs, tmpfs among others).
RENAME_EXCHANGE = 2
AT_FDCWD = -100
# Inside each folder an output replaces whole: the JSON list of the names retrain-ci wrote into it.
OWNED_MARKER = ".retrain-ci-output"


class WriteFailed(InputError):
    """An output could not be written; ``reason`` says why (a full disk), for an enclosing staging to restate."""

    def __init__(self, what: str, target: Path, reason: str) -> None:
        super().__init__(f"cannot write the {what} {target} ({reason})")
        self.reason = reason


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


def check_replaceable(path: Path, what: str) -> None:
    """Fail before any work when the folder ``path``, which the run replaces whole, is not new, empty or its own."""
    check_writable(path, what, folder=True)
    _refuse_foreign(_absolute(path), what)


def _refuse_foreign(folder: Path, what: str) -> None:
    """An InputError unless replacing ``folder`` removes only what retrain-ci wrote there."""
    if folder.is_symlink():
        raise InputError(f"cannot replace the {what} {printable(folder)}: it is a link; name the folder itself")
    working = Path.cwd()
    if folder == working or folder in working.parents:
        raise InputError(
            f"cannot replace the {what} {printable(folder)}: it holds the working folder; name a new folder inside it"
        )
    foreign = _foreign_entries(folder) if folder.is_dir() else []
    if foreign:
        shown = ", ".join(printable(name) for name in foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise InputError(
            f"cannot replace the {what} {printable(folder)}: it holds {shown}, which retrain-ci did not write; "
            "name a new or empty folder"
        )


def _foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that its marker does not list (every name, for a folder without a valid marker)."""
    names = sorted(entry.name for entry in folder.iterdir() if entry.name != OWNED_MARKER)
    if not names:
        return []
    try:
        owned = json.loads((folder / OWNED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        owned = []
    owned = {name for name in owned if isinstance(name, str)} if isinstance(owned, list) else set()
    return [name for name in names if name not in owned]


def _mark_owned(staging: Path) -> None:
    """Name what this run wrote into a staged folder, so that a later run may replace it (and nothing else)."""
    if staging.is_dir() and not staging.is_symlink():
        names = sorted(entry.name for entry in staging.iterdir() if entry.name != OWNED_MARKER)
        (staging / OWNED_MARKER).write_text(json.dumps(names), encoding="utf-8")


@contextmanager
def staged_output(target: Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success, move it over ``target`` in one rename.

    A write that fails (a full disk, a folder that became read-only) is an InputError, and ``target`` is untouched.
    A folder ``target`` is replaced only if retrain-ci wrote it (see the module docstring).
    """
    target = _absolute(target)
    _make_parent(target)
    _remove_dead_runs_files(target)  # a killed run's half-written copy, which no one else would ever remove
    staging = _side_path(target, "tmp")
    with _staging_errors(staging, target, what):
        yield staging
        _mark_owned(staging)
        _move_into_place(staging, target, what)


class OutputSet:
    """A run's outputs, replaced together or not at all (see the module docstring); the labels file names the set."""

    def __init__(self, labels_file: Path) -> None:
        self.labels_file = Path(labels_file)
        self._lock: TextIO | None = None
        self._staged: dict[Path, Path] = {}  # target -> staging
        self._what: dict[Path, str] = {}  # target -> what it is, for messages
        self._committing = False

    def __enter__(self) -> OutputSet:
        _make_parent(self.labels_file)
        self._lock = _locked(_side_name(self.labels_file, "lock"), self.labels_file)
        self._lock.truncate(0)
        self._lock.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self._lock.flush()
        try:
            self._complete_interrupted_commit()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committing:  # a commit cut short keeps its staged outputs for the next run to complete it
            for staging in self._staged.values():
                _remove(staging)
        self._staged.clear()
        if self._lock is not None:
            _side_name(self.labels_file, "lock").unlink(missing_ok=True)  # still held: no other run locked it
            self._lock.close()
            self._lock = None

    @contextmanager
    def staging(self, target: Path, what: str) -> Iterator[Path]:
        """Yield the path to write ``target``'s new version to; it replaces ``target`` at ``commit()``."""
        target = _absolute(target)
        _make_parent(target)
        _remove_dead_runs_files(target)
        staging = _side_path(target, "staging")
        with _staging_errors(staging, target, what):
            yield staging
            _mark_owned(staging)
        self._staged[target] = staging
        self._what[target] = what

    def commit(self) -> None:
        """Move every staged output into place; a journal written first lets the next run finish a cut-short commit."""
        for target in self._staged:
            if target.is_dir():
                _refuse_foreign(target, self._what[target])  # a user's file may have appeared since the run began
        moves = [(str(staging), str(target), staging.stat().st_ino) for target, staging in self._staged.items()]
        journal = _side_name(self.labels_file, "commit")
        with staged_output(journal, "commit journal") as staging:
            staging.write_text(json.dumps(moves), encoding="utf-8")
        self._committing = True
        try:
            _apply(moves)
            journal.unlink()
        except OSError as error:
            raise InputError(
                f"cannot move the outputs of {self.labels_file} into place ({error.strerror}); "
                "the next run on them completes the move"
            ) from None
        self._staged.clear()
        self._committing = False

    def _complete_interrupted_commit(self) -> None:
        journal = _side_name(self.labels_file, "commit")
        if journal.exists():
            _apply(json.loads(journal.read_text(encoding="utf-8")))
            journal.unlink()


def _locked(lock_file: Path, labels_file: Path) -> TextIO:
    """The open, flocked ``lock_file``; an InputError naming the holder when another run has it."""
    while True:
        handle = open(lock_file, "a+", encoding="utf-8")  # noqa: SIM115 (held until the set's exit)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "starting"
            handle.close()
            raise InputError(
                f"another retrain-ci run ({holder}) is writing the outputs of {labels_file}; "
                "wait for it to finish or choose another --output-dir"
            ) from None
        try:
            current = os.stat(lock_file).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()  # its holder deleted it as this run opened it: lock the file now under that name


def _apply(moves: list[list | tuple]) -> None:
    """Rename each staged output into place, skipping those already moved (recognised by inode)."""
    for staging, target, inode in moves:
        staging, target = Path(staging), Path(target)
        if target.exists() and target.stat().st_ino == inode:
            _remove(staging)  # moved already; what is left under the staging name is the previous version
        elif staging.exists() and staging.stat().st_ino == inode:
            _move_into_place(staging, target)


def _move_into_place(staging: Path, target: Path, what: str = "output folder") -> None:
    if not (staging.is_dir() and target.is_dir()):
        os.replace(staging, target)
        return
    _refuse_foreign(target, what)
    if not _exchange(staging, target):
        retired = _side_path(target, "old")
        os.rename(target, retired)
        os.rename(staging, target)
        staging = retired
    shutil.rmtree(staging)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one step, so no reader ever finds the target missing; False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0


@contextmanager
def _staging_errors(staging: Path, target: Path, what: str) -> Iterator[None]:
    """Remove the staging path on any failure; a failed write is one line naming the output and why."""
    try:
        yield
    except (OSError, WriteFailed) as error:
        _remove(staging)
        reason = error.reason if isinstance(error, WriteFailed) else error.strerror or str(error)
        raise WriteFailed(what, target, reason) from None
    except BaseException:
        _remove(staging)
        raise


def _absolute(path: Path) -> Path:
    """``path`` made absolute without following links, so that ``.`` and ``..`` have a name and a parent."""
    return Path(os.path.abspath(path))


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {target.parent} ({error.strerror})") from None


def _side_name(target: Path, kind: str) -> Path:
    """A hidden file beside ``target`` that belongs to it: ``.NAME.KIND``."""
    return target.with_name(f".{target.name}.{kind}")


def _side_path(target: Path, kind: str) -> Path:
    """This process's hidden path beside ``target``, with its suffix (loaders go by it): ``.STEM.PID.KIND.SUFFIX``."""
    return target.with_name(f".{target.stem}.{os.getpid()}.{kind}{target.suffix}")


def _remove_dead_runs_files(target: Path) -> None:
    """Staging files and retired versions of ``target`` that a killed run left behind."""
    pattern = re.compile(rf"\.{re.escape(target.stem)}\.(\d+)\.(?:staging|tmp|old){re.escape(target.suffix)}")
    for path in target.parent.glob(f".{target.stem}.*"):
        found = pattern.fullmatch(path.name)
        if found and not _alive(int(found.group(1))):
            _remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
