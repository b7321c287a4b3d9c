"""Run folders: what makes a folder hold a run, one writer at a time, and replacing a run only on request.

- A folder *holds a run* when it has any of a run's own entries (config.yaml, metrics.jsonl,
  best_metrics.json, best/, last/ or an interrupted swap of them). An empty folder, or one with
  unrelated files only, holds none and can be trained into; one that holds no run but has a file a run
  writes (log.txt, steps.jsonl, tensorboard/, predictions/, ...) is refused like a run, since the new run
  would replace that file.
- Every command that writes into a folder takes an OS lock on FOLDER/.lock (`fcntl.flock`, exclusive,
  non-blocking) and writes its process id and command line into it. The kernel releases the lock when
  the process ends, however it ends (a SIGKILL never leaves it stuck). A second writer gets a
  `RunFolderError` naming the holder. The lock is re-entrant within one process.
- `RunFolder.new_run(DIR, overwrite)` refuses a folder that holds a run (or a run's files) unless
  `overwrite`; the earlier run's files are deleted only by `clear_for_new_run()`, which the caller runs once the new run has
  validated (config, backbone, data) and is about to write.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import time
from pathlib import Path

from . import writes
from .errors import RunFolderError, DiskError, WriteError  # noqa: F401  (re-exported where raised)

LOCK_NAME = ".lock"
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "best_metrics.json", "best", "last", "best.old", "last.old")
RUN_ENTRIES = RUN_MARKERS + ("log.txt", "grad_cosine.jsonl", "predictions", "evaluate.log", "report", "best.tmp",
                             "last.tmp", "ablation_result.json", "sweep_result.json", "steps.jsonl", "tensorboard",
                             "teacher_outputs.safetensors", "teacher_outputs.safetensors.tmp")

_held: dict[Path, list] = {}  # folder -> [file descriptor, depth]: locks this process holds


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a (finished or unfinished) minbert run."""
    return any((folder / name).exists() for name in RUN_MARKERS)


def present(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Which of `names` exist in `folder` (a broken symlink counts)."""
    return [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]


def run_files(folder: Path) -> list[str]:
    """The entries of `folder` that a new run writes or replaces (a run's, or a user's of the same name)."""
    return present(folder, RUN_ENTRIES)


def remove(folder: Path, names: tuple[str, ...]) -> None:
    """Delete these entries of `folder` (a folder whole, a symlink itself, not what it points to)."""
    for name in present(folder, names):
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _key(folder: Path) -> Path:
    return folder.resolve()


def _disk_error(folder: Path, e: OSError) -> WriteError:
    return WriteError(folder, writes.cause(e), writes.NOTHING, "choose another folder, or free space and run the "
                      "command again")


def holder(folder: Path) -> str | None:
    """Who holds the lock on `folder` ('process PID (command, since TIME)'), without taking it; None when free.
    Opens the lock file read-only and creates nothing."""
    path = folder / LOCK_NAME
    if _key(folder) in _held or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(path: Path) -> str:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    pid = lines[0] if lines else "unknown"
    what = "; ".join(lines[1:3]) if len(lines) > 1 else "no details recorded"
    return f"process {pid} ({what})"


def _busy(folder: Path, who: str) -> RunFolderError:
    return RunFolderError(f"{folder} is being written by {who}; wait for it to finish or stop it first")


def acquire(folder: Path) -> None:
    """Take the lock on `folder` (created if missing) or raise RunFolderError naming its holder."""
    key = _key(folder)
    if key in _held:
        _held[key][1] += 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _disk_error(folder, e) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy(folder, _describe(folder / LOCK_NAME)) from None
        raise _disk_error(folder, e) from e
    program = "minbert" if sys.argv[0].endswith(("__main__.py", "minbert")) else Path(sys.argv[0]).name
    command = " ".join([program, *sys.argv[1:]])[:300].replace("\n", " ")
    try:  # who holds the lock, for a refused second writer (the lock itself is the flock)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\nsince {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise _disk_error(folder / LOCK_NAME, e) from e
    _held[key] = [fd, 1]


def release(folder: Path) -> None:
    key = _key(folder)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1]:
        return
    fd = entry[0]
    del _held[key]
    try:
        os.ftruncate(fd, 0)  # before unlocking: the next holder writes its own id
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class RunFolder:
    """A folder this process writes, locked from opening to `close()` (or the end of a `with` block)."""

    def __init__(self, path: Path, earlier_run: bool = False, created: bool = False):
        self.path = path
        self.earlier_run = earlier_run  # an earlier run is there, to be replaced (new_run with overwrite)
        self.created = created  # the folder did not exist before this process locked it

    @classmethod
    def lock(cls, path: Path) -> "RunFolder":
        """Lock `path` for writing, whatever it holds (resume, evaluate, report, an ablation's folder)."""
        acquire(path)
        return cls(path)

    @classmethod
    def new_run(cls, path: Path, overwrite: bool = False) -> "RunFolder":
        """Lock `path` for a new training run. A folder that holds a run, or any file a run writes, is refused
        unless `overwrite`; nothing is written into a refused folder (not even the lock file)."""
        if run_files(path) and not overwrite:
            who = holder(path)
            if who is not None:
                raise _busy(path, who)
            raise cls.refusal(path)
        created = not path.exists()
        acquire(path)
        try:
            if run_files(path) and not overwrite:  # another process started a run in between
                raise cls.refusal(path)
        except BaseException:
            release(path)
            raise
        return cls(path, earlier_run=bool(run_files(path)), created=created)

    @classmethod
    def output(cls, path: Path, command: str, writes: tuple[str, ...] = (), overwrite: bool = False,
               clear: bool = True) -> "RunFolder":
        """Lock an output folder (ensemble, export) that must not be a training run's folder. When it already has
        any of the entries `writes` names, it is refused unless `overwrite`, which deletes them all (so that
        nothing of an earlier output outlives the new one): here when `clear`, else by the caller once its new
        files are written. A refused folder gets nothing, not the lock file."""
        def check() -> None:
            if holds_run(path):
                raise RunFolderError(f"{path} holds a training run; {command} writes into another folder (--out)")
            if present(path, writes) and not overwrite:
                raise RunFolderError(f"{path} has {', '.join(present(path, writes))}, which {command} would replace: "
                                     "write to another folder (--out), or replace them with --overwrite")
        check()
        acquire(path)
        try:
            check()  # another writer may have been there in between
            if clear:
                remove(path, writes)
        except BaseException:
            release(path)
            raise
        return cls(path)

    @staticmethod
    def refusal(path: Path) -> RunFolderError:
        if holds_run(path):
            return RunFolderError(f"{path} holds a run: continue it with --resume {path}, "
                                  f"or replace it with --overwrite")
        return RunFolderError(f"{path} has {', '.join(run_files(path))}, which a new run would replace: "
                              "move them away, train into another folder, or replace them with --overwrite")

    def clear_for_new_run(self) -> None:
        """Delete the earlier run's files (opened with overwrite; call it only once the new run has validated).
        Files a run does not write stay."""
        if self.earlier_run:
            remove(self.path, RUN_ENTRIES)
        self.earlier_run = False

    def abandon(self) -> None:
        """A new run that failed before writing anything (its data could not be read): remove the folder again if
        this process created it and it holds nothing but the lock file."""
        if self.created and [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
            (self.path / LOCK_NAME).unlink()
            self.path.rmdir()

    def close(self) -> None:
        release(self.path)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
