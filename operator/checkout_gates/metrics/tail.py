"""A tail signal's counters: the bound its test uses and the two counters it reads.

A ``tail`` gate tests the share of requests slower than one bucket bound of a histogram, canary
against stable, as a count of slow requests per request (``_count`` minus ``_bucket{le=...}``).
The bound is given (``tail.le``) or chosen from stable's requests in the hour *before* the
rollout's evidence began: the smallest bound that at most ``1 - quantile`` of them exceeded.
Chosen from data the test never sees, the bound cannot bend the test towards a halt (an A/A
rollout stays inside its false-halt budget, as far as the arms' requests are alike but for the
version: pods that differ are outside it, docs/gates.md); and every evaluation, before or after a
restart, asks the same settled hour and so tests the same bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from checkout_gates.api.spec import BUCKET_BOUND, HISTOGRAM_SELECTOR, TailSignal

# How much of stable's history before the evidence began chooses the bound.
BOUND_LOOKBACK = "1h"


class NoBoundError(Exception):
    """Why no bound could be chosen, in words for the reading's error."""


def _parts(histogram: str) -> tuple[str, str]:
    """(metric name, the label matchers inside the braces, possibly empty) of a bare selector."""
    found = re.match(HISTOGRAM_SELECTOR, histogram)
    if found is None:  # the spec refuses these; a reading's error, should one get through
        raise NoBoundError(f"tail.histogram is not a bare selector: {histogram[:120]!r}")
    braces = (found.group(2) or "{}").strip()
    return found.group(1), braces[1:-1].strip().rstrip(",").strip()


def _selector(name: str, matchers: str, extra: str = "") -> str:
    inside = ", ".join(part for part in (matchers, extra) if part)
    return f"{name}{{{inside}}}"


def bound_query(tail: TailSignal) -> str:
    """The query (a template, rendered for stable) whose answer at the evidence's start chooses
    the bound: stable's requests per bucket over the hour before."""
    name, matchers = _parts(tail.histogram)
    return f"sum by (le) (increase({_selector(name + '_bucket', matchers)}[{BOUND_LOOKBACK}]))"


def spellings(bound: str, seen: Iterable[str] = ()) -> list[str]:
    """Every way the ``le`` label may spell ``bound``: as given, as Prometheus 3 normalises it
    ("1" is stored as "1.0"), as clients write it ("1"), and as any label ``seen`` with its value.
    Pods of two client versions (or a Prometheus upgrade) may spell one bound two ways; a selector
    of one spelling would count the other's requests as all slow."""
    value = float(bound)
    found = {bound, repr(value), f"{value:g}"}
    for label in seen:
        try:
            same = float(label) == value
        except ValueError:
            continue
        if same:
            found.add(label)
    return sorted(one for one in found if re.match(BUCKET_BOUND, one))


def counter_templates(tail: TailSignal, bound: str, seen: Iterable[str] = ()) -> tuple[str, str]:
    """(requests at most ``bound``, all requests): the bare counter selectors the test reads."""
    name, matchers = _parts(tail.histogram)
    if not re.match(BUCKET_BOUND, bound) or not math.isfinite(float(bound)):
        raise ValueError(f"{bound!r} is not a finite bucket bound")
    # Only digits, '.', 'e', '+' and '-' (BUCKET_BOUND): '.' and '+' escaped for RE2, the
    # backslash doubled for the PromQL string.
    alternatives = "|".join(one.replace(".", "\\\\.").replace("+", "\\\\+") for one in spellings(bound, seen))
    return _selector(name + "_bucket", matchers, f'le=~"{alternatives}"'), _selector(name + "_count", matchers)


def choose_bound(buckets: Sequence[tuple[str, float]], quantile: float) -> str:
    """The smallest finite bucket bound that at most ``1 - quantile`` of the requests exceeded,
    from (le label, cumulative requests) pairs; as the le label spells it. Two spellings of one
    bound ("1" and "1.0": pods of different client versions) are one bucket."""
    counts: dict[float, float] = {}
    labels: dict[float, str] = {}
    for label, count in buckets:
        if label != "+Inf" and not re.match(BUCKET_BOUND, label):
            continue  # not a bucket bound as a client spells one: never quoted into a query
        bound = float(label)
        if math.isfinite(count):
            counts[bound] = counts.get(bound, 0.0) + count
            labels.setdefault(bound, label)
    parsed = sorted((bound, labels[bound], count) for bound, count in counts.items())
    if counts and math.inf not in counts:
        raise NoBoundError("stable's histogram has no +Inf bucket, so its requests cannot be counted: give tail.le")
    total = counts.get(math.inf, 0.0)
    if total <= 0.0:
        raise NoBoundError(
            f"stable served no requests in the {BOUND_LOOKBACK} before the evidence began, so no bound "
            "can be chosen from it: give tail.le"
        )
    allowed = (1.0 - quantile) * (1.0 + 1e-9)  # 1 - 0.9 is 0.0999...: a share of exactly 10% is at most 10%
    for bound, label, count in parsed:
        if math.isfinite(bound) and (total - count) / total <= allowed:
            return label
    raise NoBoundError(
        f"more than {1 - quantile:.3g} of stable's requests exceeded the largest finite bucket: give tail.le, "
        "or a histogram with higher buckets"
    )
