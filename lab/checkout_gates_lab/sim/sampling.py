"""Exact Poisson, binomial and multinomial draws on a ``random.Random``.

Small means use the direct methods (Knuth's product of uniforms, binomial inversion); large ones
split the problem with a gamma or beta order statistic (Knuth, TAOCP 3.4.1), so a draw costs
O(log n) however many requests a tick holds. Every draw comes from the one generator passed in,
so a seeded generator gives the same counts every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

DIRECT_LIMIT = 30.0  # below this mean, the direct methods are both exact and cheap


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count with the given mean (0 for a mean <= 0)."""
    total = 0
    while mean > DIRECT_LIMIT:
        # The m-th arrival of a unit-rate process comes at Gamma(m, 1).
        m = int(mean * 7 / 8)
        arrival = rng.gammavariate(m, 1.0)
        if arrival >= mean:
            # The m-th arrival is late: the arrivals before `mean` are m-1 uniforms thinned.
            return total + binomial(rng, m - 1, mean / arrival)
        total += m
        mean -= arrival
    if mean <= 0.0:
        return total
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return total + count


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in n trials of probability p (p is clamped to [0, 1])."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p >= DIRECT_LIMIT:
        # The i-th smallest of n uniforms is Beta(i, n + 1 - i); it tells which side holds i of them.
        i = n // 2 + 1
        order = rng.betavariate(i, n + 1 - i)
        if order < p:
            return i + binomial(rng, n - i, (p - order) / (1.0 - order))
        return binomial(rng, i - 1, p / order)
    return _inversion(rng, n, p)


def _inversion(rng: random.Random, n: int, p: float) -> int:
    """Binomial by sequential search of the CDF (p <= 0.5, n * p small)."""
    q = 1.0 - p
    ratio = p / q
    a = (n + 1) * ratio
    mass = q**n
    u = rng.random()
    count = 0
    while u > mass and count < n:
        u -= mass
        count += 1
        mass *= a / count - ratio
    return count


def multinomial(rng: random.Random, n: int, weights: Sequence[float]) -> list[int]:
    """n items spread over categories in proportion to weights (which need not sum to 1)."""
    counts = [0] * len(weights)
    # Suffix sums from the end: the last category with weight takes the rest exactly (p = 1).
    suffix = [0.0] * (len(weights) + 1)
    for index in range(len(weights) - 1, -1, -1):
        suffix[index] = suffix[index + 1] + max(weights[index], 0.0)
    remaining = n
    for index, weight in enumerate(weights):
        if remaining <= 0 or suffix[index] <= 0.0:
            break
        drawn = binomial(rng, remaining, max(weight, 0.0) / suffix[index])
        counts[index] = drawn
        remaining -= drawn
    return counts
