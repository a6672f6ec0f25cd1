"""Drift: the route no longer states the weights the operator last set (someone edited it by hand)."""

from __future__ import annotations

from checkout_gates.api.status import Weights


def drifted(expected: Weights, observed: Weights | None) -> str | None:
    """A message when ``observed`` differs from ``expected``; None when they agree.

    ``expected`` is what the router's ``set_weights`` last read back (``status.routerWeights``),
    not the step's target: a router that cannot express the target exactly (replica counts) reads
    back the nearest split it can make, and that is not drift.
    """
    if observed is None:
        return (
            f"the route states no traffic split, but the operator set stable {expected.stable}% / "
            f"canary {expected.canary}%: it was edited outside the operator"
        )
    if observed.stable == expected.stable and observed.canary == expected.canary:
        return None
    return (
        f"the route sends stable {observed.stable}% / canary {observed.canary}%, but the operator set "
        f"stable {expected.stable}% / canary {expected.canary}%: it was edited outside the operator"
    )
