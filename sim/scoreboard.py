"""An in-order scoreboard: expected items from the golden model, actual items from a monitor.

Usage::

    sb = Scoreboard("result")
    sb.expect_many(model_items)                 # from model/
    sink = StreamSink(dut, "result", clk, layout=..., callback=sb.actual)
    ...
    sb.check_done()                             # nothing missing, nothing extra, no mismatch

Every mismatch is recorded (with its index and both values) rather than raised inside the
simulator callback, so one run reports all of them; :meth:`check_done` raises an
``AssertionError`` naming the first few.
"""

from __future__ import annotations

import collections

__all__ = ["Scoreboard"]


class Scoreboard:
    """Compare a stream of actual items with expected items, in order, with ``==``.

    Parameters
    ----------
    name : str
        Used in messages.
    max_report : int
        How many mismatches :meth:`check_done` quotes.
    """

    def __init__(self, name: str, *, max_report: int = 8):
        self.name = name
        self.max_report = max_report
        self.expected: collections.deque = collections.deque()
        self.mismatches: list[tuple[int, object, object]] = []
        self.extra: list = []
        self.matched = 0
        self.seen = 0

    def expect(self, item) -> None:
        self.expected.append(item)

    def expect_many(self, items) -> None:
        self.expected.extend(items)

    def actual(self, item) -> None:
        """Feed one item that came out of the DUT (use as a monitor callback)."""
        index = self.seen
        self.seen += 1
        if not self.expected:
            self.extra.append(item)
            return
        want = self.expected.popleft()
        if want == item:
            self.matched += 1
        else:
            self.mismatches.append((index, want, item))

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.extra)

    def clear(self) -> None:
        """Forget pending expectations (e.g. after resetting the DUT mid-transaction)."""
        self.expected.clear()

    def check_done(self) -> None:
        """Assert every expected item arrived, equal and in order, and nothing extra came."""
        problems = []
        if self.mismatches:
            shown = "; ".join(f"#{i}: expected {w!r}, got {g!r}"
                              for i, w, g in self.mismatches[:self.max_report])
            problems.append(f"{len(self.mismatches)} mismatches ({shown})")
        if self.expected:
            problems.append(f"{len(self.expected)} expected items missing "
                            f"(next {self.expected[0]!r})")
        if self.extra:
            problems.append(f"{len(self.extra)} extra items (first {self.extra[0]!r})")
        if problems:
            raise AssertionError(f"scoreboard {self.name}: {self.matched} matched, "
                                 + ", ".join(problems))
