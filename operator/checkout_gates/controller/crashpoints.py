"""Deterministic crash points for the reliability tests; inert unless the environment names one.

``CHECKOUT_GATES_CRASH_AT=<point>`` makes the process kill itself (SIGKILL, no clean-up, like an
OOM kill or a node loss) when it reaches that point; ``CHECKOUT_GATES_CRASH_MARKER`` names a file
created just before, so a test can tell that the crash happened and restart the operator without
the variable. ``CHECKOUT_GATES_CRASH_SKIP=<n>`` lets the point pass ``n`` times first (to crash in
the middle of a rollout rather than at its first pass).

The points, in the order one reconcile pass reaches them (see reconcile.py; status is written
before any action, so there is no point "after the weights patch, before the status write"):

- ``before-status-write``: decided, nothing written;
- ``after-status-write``: the decision's status (intended weights, consumed annotations, page
  to send) is stored; no action carried out; ``after-halt-write``, ``after-abort-write`` and
  ``after-promotion-write`` are the same place, reached only by the write that moved the phase to
  Halted, Aborted or Promoted;
- ``after-weights-patch``: the router has the new weights; status does not yet say it confirmed them;
- ``after-stable-copy``: the stable copy was created or given a revision; status does not say so;
- ``after-canary-scale``: the workload's Deployment was scaled; status does not say so;
- ``mid-approval``: an approval is recorded in status, its annotation not yet removed;
- ``after-annotation-removed``: a consumed annotation is gone; Events, pages and outcomes still due;
- ``after-event``: an Event is posted; pages and outcomes still due;
- ``before-page-delivery``: a page (or its resolution) is about to be sent;
- ``after-page-delivery``: the page reached its targets; status does not yet record the delivery;
- ``before-audit-delivery``: audit records are about to go to the sink (``run --audit-url``);
- ``after-audit-delivery``: the sink took them; status does not yet say so (they go again, same keys);
- ``after-outcome-write``: the second write (router confirmation, deliveries) is stored.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_POINTS = (
    "before-status-write",
    "after-status-write",
    "after-halt-write",
    "after-abort-write",
    "after-promotion-write",
    "after-weights-patch",
    "after-stable-copy",
    "after-canary-scale",
    "mid-approval",
    "after-annotation-removed",
    "after-event",
    "before-page-delivery",
    "after-page-delivery",
    "before-audit-delivery",
    "after-audit-delivery",
    "after-outcome-write",
)
# Reached only by rollouts with a workloadRef; exercised on the kwok testbed
# (tests/integration/test_release_crash_points.py), the others in test_crash_points.py.
WORKLOAD_CRASH_POINTS = ("after-stable-copy", "after-canary-scale")

_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here if the environment names this point (and its skip count is used up); else nothing."""
    if os.environ.get("CHECKOUT_GATES_CRASH_AT") != name:
        return
    reached = _reached.get(name, 0)
    _reached[name] = reached + 1
    if reached < int(os.environ.get("CHECKOUT_GATES_CRASH_SKIP", "0") or 0):
        return
    marker = os.environ.get("CHECKOUT_GATES_CRASH_MARKER")
    if marker:
        Path(marker).write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
