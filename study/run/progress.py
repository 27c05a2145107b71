"""How a running batch tells the store how far it has got, at most every few seconds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

PROGRESS_SECONDS = 5.0  # how often a running batch says how far it has got


def throttled(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None]:
    """A callback taking the iterations done that passes (done, ``total``) on to ``progress`` at most every
    ``PROGRESS_SECONDS`` and always at the end, so that writing a marker file never slows the inner loop."""
    heard = [-math.inf]

    def report(done: int) -> None:
        if progress is not None and (time.perf_counter() - heard[0] >= PROGRESS_SECONDS or done == total):
            heard[0] = time.perf_counter()
            progress(done, total)

    return report
