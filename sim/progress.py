"""The progress line of a long run on stderr (``python -m sim.run_model``)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A progress line on stderr: tokens generated, BitLinear calls done, elapsed seconds.

    Call it as ``progress(i, n)`` after token ``i`` of ``n``; :meth:`call` after every
    BitLinear call (redraws at most 5 times a second); :meth:`note` prints a message line.
    """

    def __init__(self, prefix: str, n_tokens: int, stream=None):
        self.prefix, self.n = prefix, n_tokens
        self.stream = stream or sys.stderr
        self.tokens = self.calls = 0
        self.t0 = time.time()
        self._drawn = 0.0

    def _draw(self, force: bool = False) -> None:
        now = time.time()
        tty = getattr(self.stream, "isatty", lambda: False)()
        # on a terminal: one line redrawn in place; in a log: a line per token only
        if (not force and (not tty or now - self._drawn < 0.2)):
            return
        self._drawn = now
        phase = "prefill" if self.tokens == 0 else f"token {self.tokens}/{self.n}"
        line = f"{self.prefix}: {phase}, {self.calls} BitLinear calls, {now - self.t0:.0f} s"
        if self.tokens:
            eta = (now - self.t0) / self.tokens * (self.n - self.tokens)
            line += f", ETA {eta:.0f} s"
        if tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def __call__(self, i: int, n: int) -> None:
        self.tokens, self.n = i, n
        self._draw(force=True)
        if i >= n and getattr(self.stream, "isatty", lambda: False)():
            print(file=self.stream, flush=True)

    def call(self, n_calls: int | None = None) -> None:
        self.calls = self.calls + 1 if n_calls is None else n_calls
        self._draw()

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
