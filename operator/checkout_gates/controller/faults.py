"""Deterministic crash points for the reliability tests; inert unless the environment names one.

``CHECKOUT_GATES_CRASH_AT=<point>`` makes the process kill itself (SIGKILL, no clean-up, like an
OOM kill or a node loss) the first time it reaches that point; ``CHECKOUT_GATES_CRASH_MARKER``
names a file created just before, so a test can tell that the crash happened and restart the
operator without the variable.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_POINTS = (
    "before-status-write",
    "after-status-write",
    "after-weights-patch",
    "after-annotation-removed",
    "after-event",
    "after-page-delivery",
    "after-outcome-write",
    "mid-approval",
    "after-promotion-write",
    "after-abort-write",
)


def crash_point(name: str) -> None:
    if os.environ.get("CHECKOUT_GATES_CRASH_AT") != name:
        return
    marker = os.environ.get("CHECKOUT_GATES_CRASH_MARKER")
    if marker:
        Path(marker).write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
