"""A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise
(CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

WIDTH = 30


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()

    def _bar(self, label: str) -> str:
        filled = WIDTH * self.done // self.total
        elapsed = int(time.monotonic() - self.started)
        return (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "
            f"{elapsed // 60}:{elapsed % 60:02d}  {label}"
        )

    def show(self, label: str) -> None:
        """Say what runs now."""
        if self.tty:
            self.stream.write("\r\x1b[K" + self._bar(label))
            self.stream.flush()

    def advance(self, steps: int, label: str) -> None:
        """``steps`` more are done; ``label`` says how the last ended."""
        self.done = min(self.total, self.done + steps)
        if self.tty:
            self.show(label)
        else:
            self.stream.write(self._bar(label) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
