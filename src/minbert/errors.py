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


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, out of memory); the message says what to do."""


EXPECTED_ERRORS = (ConfigError, DataError, CheckpointError, DiskError, RunFolderError)  # bad input: exit code 2
