"""Request durations drawn per histogram bucket: log-normal, scaled by path and by faults.

A tick's n durations are spread over the buckets with one multinomial draw, and the histogram's
sum grows by each bucket's count times the distribution's mean within that bucket, so the cost
does not grow with the request rate.
"""

from __future__ import annotations

import functools
import itertools
import math
import random

from checkout_gates_lab.sim.catalog import LATENCY_BUCKETS, LATENCY_MEDIAN_SECONDS, LATENCY_SIGMA
from checkout_gates_lab.sim.sampling import multinomial
from checkout_gates_lab.sim.totals import LatencyCounts


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@functools.lru_cache(maxsize=256)
def bucket_model(scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each bucket's probability and mean duration, for the base distribution times ``scale``."""
    mu = math.log(LATENCY_MEDIAN_SECONDS * scale)
    sigma = LATENCY_SIGMA
    mean = math.exp(mu + sigma * sigma / 2.0)

    def cdf(bound: float) -> float:
        return _phi((math.log(bound) - mu) / sigma) if bound > 0 else 0.0

    def partial_mean(bound: float) -> float:  # E[X; X <= bound]
        return mean * _phi((math.log(bound) - mu - sigma * sigma) / sigma) if bound > 0 else 0.0

    bounds = (0.0, *LATENCY_BUCKETS, math.inf)
    probabilities, means = [], []
    for low, high in itertools.pairwise(bounds):
        p = (1.0 if high == math.inf else cdf(high)) - cdf(low)
        m = (mean if high == math.inf else partial_mean(high)) - partial_mean(low)
        probabilities.append(max(p, 0.0))
        means.append(m / p if p > 1e-15 else (low if high == math.inf else (low + high) / 2.0))
    return tuple(probabilities), tuple(means)


def draw(rng: random.Random, n: int, scale: float = 1.0) -> LatencyCounts:
    """The durations of n requests, as bucket counts and their sum."""
    if n <= 0:
        return LatencyCounts()
    probabilities, means = bucket_model(round(scale, 6))
    counts = multinomial(rng, n, probabilities)
    return LatencyCounts(buckets=counts, sum=sum(c * m for c, m in zip(counts, means, strict=True)))
