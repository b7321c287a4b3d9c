"""SIGINT and SIGTERM as a pause: the training loop finishes its optimizer step, saves `last/` and stops.

`StopSignals` (a context manager) records the first SIGINT or SIGTERM instead of stopping at once; the
trainer asks `requested()` after each optimizer step and then raises `TrainingInterrupted` (a
KeyboardInterrupt, so a Python caller that does not catch it stops as on Ctrl-C). A second SIGINT
while the pause is under way (Ctrl-C pressed again) stops at once (KeyboardInterrupt); `last/` is
written atomically, so it stays the previous whole checkpoint. A later SIGTERM is ignored: the run is
already pausing. Under torchrun (`second_sigint_stops=False`) every repeat is ignored: torchrun,
signalled itself, forwards the signal to workers that may have had it from the terminal already.
The previous handlers are restored on leaving the block. Outside the main thread Python cannot
install handlers, and the block does nothing.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training paused on a signal; `last/` holds the state to continue from."""

    def __init__(self, signum: int, epoch: int, step: int, run_dir: Path):
        self.signum, self.epoch, self.step, self.run_dir = signum, epoch, step, run_dir
        self.hint = f"continue with: minbert train --resume {run_dir}"
        super().__init__(self.message())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports a signalled process

    def message(self) -> str:
        return f"interrupted at epoch {self.epoch} step {self.step}; {self.hint}"


class StopSignals:
    def __init__(self, second_sigint_stops: bool = True):
        self.signum = 0  # the first signal received, 0 while none
        self.second_sigint_stops = second_sigint_stops
        self._previous: dict[int, object] = {}

    def requested(self) -> int:
        return self.signum

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
        elif signum == signal.SIGINT and self.second_sigint_stops:
            raise KeyboardInterrupt  # Ctrl-C again: stop now

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
