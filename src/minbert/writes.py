"""Every file minbert writes goes through this module. A whole file is written under a temporary name beside it
(`NAME.tmp`; `predict --output` uses `NAME.part`), fsynced and renamed into place, so the earlier file stays as
it was until the new one is complete; an append-only log (log.txt, steps.jsonl) is cut back to its earlier
length when an append fails, so no half line stays; a folder (a checkpoint, an export) is written under
`NAME.tmp/` and swapped in. Any failure to write (an `OSError` such as ENOSPC, EDQUOT, EFBIG, EROFS, EACCES or
EIO, or the error types of safetensors and matplotlib) removes the temporary file and becomes a `WriteError`:
`cannot write PATH: the disk is full (ENOSPC); <what is intact>; <what to do>`, which the CLI prints as one line
and exits with 3. A leaf module: it imports only the standard library and `errors.py` (safetensors lazily).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import WriteError

CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit is exceeded (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "an input/output error",
}
NOTHING = "nothing was written"
LOCK = ".lock"  # run_folder.LOCK_NAME: the lock file of a folder one writer writes
AGAIN = "free space (or raise the limit) and run the command again"
ELSEWHERE = "make it writable (or write elsewhere) and run the command again"
SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def cause(error: BaseException) -> str:
    """The reason an error gives for a failed write, in words: 'the disk is full (ENOSPC)'."""
    number = errno_of(error)
    if number in CAUSES:
        return f"{CAUSES[number]} ({errno.errorcode[number]})"
    if number is not None:
        return f"{os.strerror(number)} ({errno.errorcode.get(number, number)})"
    return str(error).strip() or type(error).__name__


def errno_of(error: BaseException) -> int | None:
    """The OS error number of a failed write; safetensors gives it only in its text ('... (os error 28)')."""
    number = getattr(error, "errno", None)
    if number is None:
        found = re.search(r"os error (\d+)", str(error))
        number = int(found.group(1)) if found else None
    return number


def advice(error: BaseException) -> str:
    """What to do about a failed write: free space for a full disk, quota or size limit; else make it writable."""
    return AGAIN if errno_of(error) in SPACE or errno_of(error) is None else ELSEWHERE


def is_write_failure(error: BaseException) -> bool:
    """An OSError, or the error type safetensors raises when its file cannot be written."""
    return isinstance(error, OSError) or type(error).__name__ == "SafetensorError"


def kept(path: Path, what: str | None = None) -> str:
    """What a failed write of `path` leaves: the earlier file (named `what`, or by its name), or nothing."""
    if path.exists():
        return f"the previous {what or path.name} is intact"
    return NOTHING


@contextlib.contextmanager
def failures(path: str | os.PathLike, intact: str | None = None, todo: str | None = None) -> Iterator[None]:
    """Inside the block, a failure to write becomes a `WriteError` naming `path`; `intact` (default: the
    earlier file at `path`, or 'nothing was written') and `todo` end the message. A WriteError passes through."""
    path = Path(path)
    before = intact if intact is not None else kept(path)
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        if not is_write_failure(e):
            raise
        raise WriteError(path, cause(e), before, todo or advice(e)) from e


def remove(path: Path) -> None:
    """Remove a temporary file or folder if it is there (a failure to remove it is left for the caller to see)."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def temporary(path: Path, suffix: str = ".tmp") -> Path:
    """The temporary name a file or folder is written under before it is renamed to `path`."""
    return path.with_name(path.name + suffix)


def mkdir(folder: str | os.PathLike, intact: str | None = None, todo: str | None = None) -> Path:
    """Create `folder` (and its parents) if missing."""
    folder = Path(folder)
    with failures(folder, intact if intact is not None else NOTHING, todo):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", suffix: str = ".tmp", intact: str | None = None,
                todo: str | None = None, **open_args: Any) -> Iterator[IO]:
    """A file object on `PATH.tmp` (or `suffix`); when the block ends normally it is fsynced and renamed to
    `path`. On any error or interrupt (KeyboardInterrupt included) the temporary file is removed and `path` is
    left as it was; a failure to write is a WriteError."""
    path = Path(path)
    tmp = temporary(path, suffix)
    with failures(path, intact, todo):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, mode, **open_args) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_text(path: str | os.PathLike, text: str, intact: str | None = None, todo: str | None = None) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_file(path, "w", intact=intact, todo=todo, encoding="utf-8") as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes, intact: str | None = None, todo: str | None = None) -> None:
    """Write `data` to `path` atomically."""
    with atomic_file(path, "wb", intact=intact, todo=todo) as f:
        f.write(data)


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None,
                     intact: str | None = None, todo: str | None = None) -> None:
    """`tensors` as a safetensors file at `path`, written under `PATH.tmp` by safetensors and renamed."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = temporary(path)
    with failures(path, intact, todo):
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            fsync(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def save_figure(fig, path: str | os.PathLike, intact: str | None = None, todo: str | None = None, **savefig_args) -> None:
    """A matplotlib figure saved to `path` (its format from the suffix) under a temporary name and renamed."""
    path = Path(path)
    with atomic_file(path, "wb", intact=intact, todo=todo) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or None, **savefig_args)


def append(path: str | os.PathLike, text: str, todo: str | None = None) -> None:
    """Append `text` to an append-only log. Appends cannot be atomic: when one fails, the file is cut back to
    its earlier length (no half line stays) and the error is a WriteError saying the earlier lines are intact."""
    path = Path(path)
    intact = f"{path.name} keeps its earlier lines" if path.exists() else NOTHING
    with failures(path, intact, todo):
        with open(path, "a", encoding="utf-8") as f:
            size = f.seek(0, os.SEEK_END)
            try:
                f.write(text)
                f.flush()
            except BaseException:
                with contextlib.suppress(OSError):
                    f.truncate(size)
                raise


def copy_file(source: str | os.PathLike, path: str | os.PathLike, intact: str | None = None,
              todo: str | None = None) -> None:
    """Copy the file `source` to `path` atomically."""
    with atomic_file(path, "wb", intact=intact, todo=todo) as f, open(source, "rb") as src:
        shutil.copyfileobj(src, f)


def atomic_folder(folder: str | os.PathLike, write: Callable[[Path], None], what: str | None = None,
                  todo: str | None = None) -> None:
    """Run `write(tmp)` into a fresh `FOLDER.tmp/`, fsync its files, then swap it in for `folder` (the old one
    moved to `FOLDER.old/` first and removed after). A failure to write removes `FOLDER.tmp/` and is a
    WriteError naming `folder`, saying the previous one (`what`, e.g. 'last/ checkpoint') is intact."""
    folder = Path(folder)
    tmp, old = temporary(folder), temporary(folder, ".old")
    intact = f"the previous {what or folder.name + '/'} is intact" if folder.exists() else NOTHING
    with failures(folder, intact, todo):
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            write(tmp)
            for f in tmp.rglob("*"):
                if f.is_file():
                    fsync(f)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, WriteError):  # named after the folder, not the file inside the temporary one
                raise WriteError(folder, e.cause, intact, todo or e.todo) from e
            raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def move_into(source: Path, target: Path) -> None:
    """Move every entry of the folder `source` into `target` by renames (a file replaces the one of its name,
    a folder is merged), then remove `source`."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            move_into(entry, target / entry.name)
        else:
            os.replace(entry, target / entry.name)
    source.rmdir()


@contextlib.contextmanager
def staged(folder: str | os.PathLike, todo: str | None = None) -> Iterator[Path]:
    """A folder of several outputs (an export, an ensemble) written whole or not at all: the block writes into
    `FOLDER/staging.tmp/`; when it ends normally its entries are renamed into `folder`. On a failure the
    staging folder is removed, every earlier file in `folder` is as it was, and a WriteError names the file
    that failed by its final path."""
    folder = Path(folder)
    stage = folder / "staging.tmp"
    with failures(folder, NOTHING, todo):
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if not isinstance(e, WriteError):
            raise
        final = Path(str(e.path).replace(str(stage), str(folder), 1))
        intact = (f"the earlier files in {folder} are as they were"
                  if any(p.name != LOCK for p in folder.iterdir()) else NOTHING)
        raise WriteError(final, e.cause, intact, e.todo) from e
    with failures(folder, f"the earlier files in {folder} are as they were", todo):
        move_into(stage, folder)
