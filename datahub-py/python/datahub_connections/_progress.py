"""A one-line text progress bar on stderr for ``test_many`` (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import Optional, Protocol, TextIO


class Progress(Protocol):
    """What ``test_many`` calls as results come in: ``done`` of ``total``; ``waiting_s``, when
    more than 0, is how long the server asked to wait before the next test (its rate limit)."""

    def __call__(self, done: int, total: int, waiting_s: float = 0.0) -> None: ...


class ProgressBar:
    """``[#####.....] 12/200 tested`` redrawn in place; at most ~10 redraws a second. While the
    server's test rate limit holds the next test back: ``…, waiting 3 s (rate limit)``."""

    WIDTH = 30

    def __init__(self, label: str = "tested", stream: Optional[TextIO] = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, waiting_s: float = 0.0) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.WIDTH if total <= 0 else int(self.WIDTH * done / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        end = "\n" if done >= total else ""
        note = f", waiting {waiting_s:.0f} s (rate limit)" if waiting_s > 0 and done < total else ""
        # Padded, so a shorter line covers the waiting note it replaces.
        text = f"{done}/{total} {self._label}{note}".ljust(len(str(total)) * 2 + 40)
        try:
            self._stream.write(f"\r[{bar}] {text}{end}")
            self._stream.flush()
        except (OSError, ValueError):
            return
        self._drawn = True
