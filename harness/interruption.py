"""A run records its own interruption: SIGINT and SIGTERM are noted before anything else happens.

pytest learns of Ctrl-C through the KeyboardInterrupt the signal raises, but that exception does not
always survive: CPython 3.11 turns a KeyboardInterrupt raised inside the AST constructor (pytest's
assertion rewriting, its traceback formatting) into `SystemError: AST constructor recursion depth
mismatch`, which fails one test and lets the run go on to "passed"; an exception inside a pytest hook
becomes an internal error (exit 3). So the handler writes the signal down first, and the plugin reads
that note, not the exception: the report says `interrupted: true`, the exit code is pytest's
"interrupted" (2), and no further test starts.

While the report is being written (and after), a signal is only noted: cutting the writing short
would leave no report at all, and the run is over by then.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

SIGNALS = ("SIGINT", "SIGTERM")


@dataclass
class Interruption:
    signal: str | None = None  # the first signal received, e.g. "SIGTERM"
    quiet: bool = False  # only note signals from now on (the report is being written)
    written: bool = False  # the report is written: a signal now interrupts nothing
    late: bool = False  # a signal came after the report was written
    previous: dict[str, Any] = field(default_factory=dict)  # the handlers `install` replaced

    def handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.written:
            self.late = True
            return
        if self.signal is None:
            self.signal = name
        if self.quiet:
            return
        raise KeyboardInterrupt(f"signal {signum} ({name})")

    def install(self) -> None:
        """Note signals from now on (a fresh note: one process may run several pytest sessions, as
        pytester's inline runs do)."""
        self.signal, self.quiet, self.written, self.late = None, False, False, False
        for name in SIGNALS:
            if hasattr(signal, name):
                self.previous[name] = signal.signal(getattr(signal, name), self.handler)

    def restore(self) -> None:
        """Give the signals back to whoever had them before `install` (pytest_unconfigure)."""
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)
        self.previous.clear()

    @property
    def reason(self) -> str:
        return f"interrupted ({self.signal})"

    def note_after_report(self) -> None:
        if self.late:
            sys.stderr.write(f"harness: {self.signal} arrived after the report was written; the run had finished\n")
