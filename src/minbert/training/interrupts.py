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

import torch

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


def agreed_signal(stop: StopSignals | None, par, device: torch.device) -> int:
    """The signal that asks the run to pause (0: none). With several processes (`par`), the largest any of them
    received, so all pause at the same optimizer step."""
    signum = stop.requested() if stop is not None else 0
    if par.world > 1:
        flag = torch.tensor([signum], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
    return signum


def pause_if_asked(t) -> None:
    """On SIGINT / SIGTERM: the trainer `t` saves last/ (unless it holds this very point already) and
    TrainingInterrupted is raised."""
    signum = agreed_signal(t.stop, t.par, t.device)
    if not signum:
        return
    if t.saved_at != (t.progress.epoch, t.progress.step):
        t.save_last()
    t.par.barrier()  # the other processes wait for rank 0's save
    t.log(f"interrupted by {signal.Signals(signum).name} at epoch {t.progress.epoch} step {t.progress.step} "
          f"({t.progress.updates} optimizer steps): {t.run_dir / 'last'} saved")
    raise TrainingInterrupted(signum, t.progress.epoch, t.progress.step, t.run_dir)
