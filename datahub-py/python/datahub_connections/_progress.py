"""A one-line text progress bar on stderr for ``test_many`` (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    """``[#####.....] 12/200 tested`` redrawn in place; at most ~10 redraws a second."""

    WIDTH = 30

    def __init__(self, label: str = "tested", stream: Optional[TextIO] = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.WIDTH if total <= 0 else int(self.WIDTH * done / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        end = "\n" if done >= total else ""
        try:
            self._stream.write(f"\r[{bar}] {done}/{total} {self._label}{end}")
            self._stream.flush()
        except (OSError, ValueError):
            return
        self._drawn = True
