"""Every error minbert reports as one line (`minbert: error: ...`): a leaf module that imports nothing of
minbert's, so that any module can raise any of them without importing the module that checks it.

The modules where each is raised re-export it (`minbert.config.ConfigError` is `minbert.errors.ConfigError`).
"""
from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


class DataError(ValueError):
    """A data file that cannot be used; the message names the file (and line)."""


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used: the message names the file and the reason."""


class RunFolderError(ValueError):
    """A folder that cannot be written now: it holds a run, or another process writes it."""


class DiskError(OSError):
    """The run directory cannot be written (not writable, or the disk is full)."""


class WriteError(DiskError):
    """A file or folder could not be written (the disk is full, a quota or the file size limit is reached, ...):
    `cannot write PATH: CAUSE; WHAT IS INTACT; WHAT TO DO`. The CLI exits with 3."""

    def __init__(self, path, cause: str, intact: str, todo: str):
        self.path, self.cause, self.intact, self.todo = path, cause, intact, todo
        super().__init__(f"cannot write {path}: {cause}; {intact}; {todo}")

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return WriteError, (self.path, self.cause, self.intact, self.todo)

    def advise(self, intact: str | None = None, todo: str | None = None) -> "WriteError":
        """The same failure with another account of what is intact or of what to do."""
        return WriteError(self.path, self.cause, intact or self.intact, todo or self.todo)


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, out of memory); the message says what to do."""


WRITE_FAILED = 3  # the exit code of a WriteError (2: bad input, 1: training cannot go on, 130 / 143: signals)
EXPECTED_ERRORS = (ConfigError, DataError, CheckpointError, DiskError, RunFolderError)  # bad input: exit code 2
