"""The pure engine: request rate, canary weight, scenario and a seeded RNG in, per-tick counts out.

No clock and no I/O: a tick is ``tick`` seconds of simulated time, however fast the caller steps,
so a benchmark can simulate hours in seconds and a seed gives the same counts every run.

Per variant and tick: checkout attempts are Poisson; attempts spread over paths and over
payment segments (provider, method) by the catalog's mix; each segment draws its outcomes
binomially with the healthy rate moved by the active faults. Refund requests arrive in proportion
to traffic. The mismatch queue has two parts: mismatches that reconciliation clears on its own
(each after an exponential time, mean ``reconcileSeconds``), and mismatches that need manual work
(silent declines, ``mismatchRate``, ``mismatchGrowthPerMinute``), cleared at the manual capacity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from checkout_gates_lab.sim import latency
from checkout_gates_lab.sim.catalog import (
    ATTEMPTS,
    AUTH_ERROR,
    AUTHORIZATIONS,
    CAPTURE_SUCCESS,
    CAPTURES,
    COMPLETIONS,
    DUPLICATE_CHARGES,
    DUPLICATE_ORDERS,
    PATH_PROFILES,
    PAYMENT_PROFILES,
    PROVIDERS,
    REFUND_PROFILES,
    REFUNDS,
    VARIANTS,
    provider_shares,
)
from checkout_gates_lab.sim.faults import FaultSchedule, added, multiplied
from checkout_gates_lab.sim.sampling import binomial, multinomial, poisson
from checkout_gates_lab.sim.scenario import Fault, Scenario
from checkout_gates_lab.sim.totals import LatencyCounts, Tick, Totals

PATH_WEIGHTS = tuple(profile.share for profile in PATH_PROFILES)
PAYMENT_WEIGHTS = tuple(profile.share for profile in PAYMENT_PROFILES)
PROVIDER_WEIGHTS = tuple(provider_shares()[provider] for provider in PROVIDERS)
KIND_WEIGHTS = tuple(profile.share for profile in REFUND_PROFILES)


def _clamp(p: float) -> float:
    return min(max(p, 0.0), 1.0)


class Engine:
    """Simulated checkout traffic for two variants; ``step`` advances one tick."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        rate: float,
        seed: int | None = None,
        rng: random.Random | None = None,
        tick: float = 0.1,
    ) -> None:
        if rate < 0 or tick <= 0:
            raise ValueError("rate must be >= 0 and tick > 0")
        self.scenario = scenario or Scenario()
        self.rate = rate
        self.tick = tick
        self.rng = rng or random.Random(seed)
        self.schedule = FaultSchedule(self.scenario)
        self.totals = Totals()
        self.ticks = 0
        self._auto = dict.fromkeys(VARIANTS, 0)  # mismatches reconciliation clears by itself
        self._manual = dict.fromkeys(VARIANTS, 0)  # mismatches that need manual work

    @property
    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        return self.ticks * self.tick

    def step(self, canary_weight: float, canary_faulty: bool = True) -> Tick:
        """One tick with the canary at ``canary_weight`` percent of traffic (clamped to 0..100);
        ``canary_faulty`` False leaves out the faults of the canary alone (it runs a good build)."""
        weight = min(max(canary_weight, 0.0), 100.0)
        self.schedule.update(self.elapsed, weight)
        self.ticks += 1
        tick = Tick(elapsed=self.elapsed, canary_weight=weight)
        faults = self.schedule.active
        if not canary_faulty:
            faults = tuple(fault for fault in faults if fault.variant != "canary")
        for variant, share in (("stable", 1.0 - weight / 100.0), ("canary", weight / 100.0)):
            self._variant(tick, variant, share, faults)
        self.totals.add(tick)
        return tick

    def run(self, seconds: float, canary_weight: float | Callable[[float], float]) -> Totals:
        """Step for ``seconds`` of simulated time; the weight may be a function of elapsed seconds."""
        end = self.ticks + round(seconds / self.tick)
        while self.ticks < end:
            self.step(canary_weight(self.elapsed) if callable(canary_weight) else canary_weight)
        return self.totals

    def _variant(self, tick: Tick, variant: str, share: float, faults: tuple[Fault, ...]) -> None:
        mean = self.rate * self.tick * share
        attempts = poisson(self.rng, mean)
        auto_in, manual_in = self._checkouts(tick, variant, attempts, faults)
        manual_in += self._payments(tick, variant, attempts, faults)
        self._refunds(tick, variant, poisson(self.rng, mean * self.scenario.baseline.refunds_per_checkout), faults)
        growth = added(faults, "mismatch_growth_per_minute", variant)
        manual_in += poisson(self.rng, growth * self.tick / 60.0)
        tick.mismatch_queue[variant] = self._reconcile(variant, auto_in, manual_in)

    def _checkouts(self, tick: Tick, variant: str, attempts: int, faults: tuple[Fault, ...]) -> tuple[int, int]:
        """Attempts, completions, duplicate orders and durations per path; returns mismatch inflows."""
        rng, baseline = self.rng, self.scenario.baseline
        durations = LatencyCounts()
        duplicates = auto_in = manual_in = 0
        for profile, n in zip(PATH_PROFILES, multinomial(rng, attempts, PATH_WEIGHTS), strict=True):
            if n == 0:
                continue
            path = profile.name
            completion = profile.completion - added(faults, "completion_drop", variant, path=path)
            completed = binomial(rng, n, _clamp(completion))
            tick.add(ATTEMPTS, (variant, path), n)
            tick.add(COMPLETIONS, (variant, path), completed)
            duplicate_rate = baseline.duplicate_order_rate + added(faults, "duplicate_order_rate", variant, path=path)
            duplicates += binomial(rng, completed, _clamp(duplicate_rate))
            auto_in += binomial(rng, n, baseline.mismatch_rate)
            manual_in += binomial(rng, n, _clamp(added(faults, "mismatch_rate", variant, path=path)))
            scale = profile.latency_factor * multiplied(faults, "latency_multiplier", variant, path=path)
            durations.add(latency.draw(rng, n, scale))
        tick.add(DUPLICATE_ORDERS, (variant,), duplicates)
        tick.latency[variant] = durations
        return auto_in, manual_in

    def _payments(self, tick: Tick, variant: str, attempts: int, faults: tuple[Fault, ...]) -> int:
        """Authorizations, captures and duplicate charges per segment; returns the silent declines."""
        rng, baseline = self.rng, self.scenario.baseline
        silent_total = 0
        for profile, n in zip(PAYMENT_PROFILES, multinomial(rng, attempts, PAYMENT_WEIGHTS), strict=True):
            if n == 0:
                continue
            segment = {"provider": profile.provider, "method": profile.method}
            approval = _clamp(profile.approval - added(faults, "auth_approval_drop", variant, **segment))
            approved = binomial(rng, n, approval)
            errors = binomial(rng, n - approved, AUTH_ERROR / (1.0 - approval)) if approval < 1.0 else 0
            silent = binomial(rng, approved, _clamp(added(faults, "silent_decline_rate", variant, **segment)))
            to_capture = approved - silent
            capture_failure = 1.0 - CAPTURE_SUCCESS + added(faults, "capture_failure_rate", variant, **segment)
            failed = binomial(rng, to_capture, _clamp(capture_failure))
            duplicate_rate = baseline.duplicate_charge_rate + added(faults, "duplicate_charge_rate", variant, **segment)
            duplicates = binomial(rng, to_capture - failed, _clamp(duplicate_rate))
            key = (variant, profile.provider, profile.method)
            tick.add(AUTHORIZATIONS, (*key, "approved"), approved)
            tick.add(AUTHORIZATIONS, (*key, "declined"), n - approved - errors)
            tick.add(AUTHORIZATIONS, (*key, "error"), errors)
            tick.add(CAPTURES, (*key, "succeeded"), to_capture - failed)
            tick.add(CAPTURES, (*key, "failed"), failed)
            tick.add(DUPLICATE_CHARGES, (variant, profile.provider), duplicates)
            silent_total += silent
        return silent_total

    def _refunds(self, tick: Tick, variant: str, refunds: int, faults: tuple[Fault, ...]) -> None:
        rng = self.rng
        for provider, n in zip(PROVIDERS, multinomial(rng, refunds, PROVIDER_WEIGHTS), strict=True):
            for profile, k in zip(REFUND_PROFILES, multinomial(rng, n, KIND_WEIGHTS), strict=True):
                if k == 0:
                    continue
                extra = added(faults, "refund_failure_rate", variant, provider=provider, kind=profile.kind)
                failed = binomial(rng, k, _clamp(1.0 - profile.success + extra))
                tick.add(REFUNDS, (variant, provider, profile.kind, "succeeded"), k - failed)
                tick.add(REFUNDS, (variant, provider, profile.kind, "failed"), failed)

    def _reconcile(self, variant: str, auto_in: int, manual_in: int) -> int:
        """Drain and refill the mismatch queue; returns its size."""
        baseline = self.scenario.baseline
        cleared = binomial(self.rng, self._auto[variant], 1.0 - math.exp(-self.tick / baseline.reconcile_seconds))
        self._auto[variant] += auto_in - cleared
        capacity = poisson(self.rng, baseline.manual_reconcile_per_minute * self.tick / 60.0)
        self._manual[variant] += manual_in - min(self._manual[variant], capacity)
        return self._auto[variant] + self._manual[variant]
