"""The simulator's pure parts: sampling, the engine under faults, scenario files, weights, options.

Every engine run is seeded, so these checks are deterministic; the tolerances are still set at
about four standard errors, so that they would hold for almost any seed.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from pathlib import Path
from typing import Any, get_args

import pytest

from checkout_gates_lab.commands import simulate
from checkout_gates_lab.sim import Engine, Scenario, ScenarioError, Totals, catalog, load_scenario, parse_scenario
from checkout_gates_lab.sim import scenario as scenario_module
from checkout_gates_lab.sim.catalog import (
    ATTEMPTS,
    AUTHORIZATIONS,
    CAPTURES,
    COMPLETIONS,
    DUPLICATE_CHARGES,
    DUPLICATE_ORDERS,
    REFUNDS,
)
from checkout_gates_lab.sim.options import config_from
from checkout_gates_lab.sim.sampling import binomial, multinomial, poisson
from checkout_gates_lab.sim.scenario import Baseline
from checkout_gates_lab.sim.weights import WeightError, canary_percent

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
NO_DUPLICATES = {"duplicateChargeRate": 0.0, "duplicateOrderRate": 0.0}


def scenario(*faults: dict[str, Any], baseline: dict[str, Any] | None = None) -> Scenario:
    return parse_scenario({"name": "test", "baseline": baseline or {}, "faults": list(faults)})


def approval(totals: Totals, variant: str, **labels: str) -> tuple[float, int]:
    """The approval rate and the number of authorizations behind it."""
    total = totals.count(AUTHORIZATIONS, variant=variant, **labels)
    assert total > 0
    return totals.count(AUTHORIZATIONS, variant=variant, outcome="approved", **labels) / total, total


def z_difference(p1: float, n1: int, p2: float, n2: int) -> float:
    """(p1 - p2) in standard errors of the difference of two proportions."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    error = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return (p1 - p2) / error if error > 0 else 0.0


# --- sampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.0, 0.05, 3.0, 29.0, 31.0, 500.0, 20_000.0])
def test_poisson_has_its_mean_and_variance(mean: float) -> None:
    rng = random.Random(1)
    draws = [poisson(rng, mean) for _ in range(4000)]
    assert abs(statistics.fmean(draws) - mean) <= 4 * math.sqrt(max(mean, 1e-9) / len(draws)) + 1e-9
    if mean >= 1:
        assert statistics.variance(draws) == pytest.approx(mean, rel=0.1)


@pytest.mark.parametrize(
    ("n", "p"), [(0, 0.5), (10, 0.0), (10, 1.0), (50, 0.03), (50, 0.97), (1000, 0.2), (10**6, 0.4)]
)
def test_binomial_has_its_mean_and_variance(n: int, p: float) -> None:
    rng = random.Random(2)
    draws = [binomial(rng, n, p) for _ in range(4000)]
    assert all(0 <= d <= n for d in draws)
    variance = n * p * (1 - p)
    assert abs(statistics.fmean(draws) - n * p) <= 4 * math.sqrt(variance / len(draws)) + 1e-9
    if variance >= 1:
        assert statistics.variance(draws) == pytest.approx(variance, rel=0.1)


def test_multinomial_keeps_every_item_and_follows_the_weights() -> None:
    rng = random.Random(3)
    weights = (0.5, 0.0, 0.3, 0.2, 0.0)
    sums = [0] * len(weights)
    for _ in range(2000):
        counts = multinomial(rng, 40, weights)
        assert sum(counts) == 40
        assert counts[1] == counts[4] == 0
        sums = [a + b for a, b in zip(sums, counts, strict=True)]
    assert [s / (2000 * 40) for s in sums] == pytest.approx(weights, abs=0.01)


# --- the engine ----------------------------------------------------------------------------------


def test_auth_approval_drop_hits_one_provider_on_the_canary_only() -> None:
    faulty = scenario({"variant": "canary", "provider": "adyen", "effect": {"authApprovalDrop": 0.03}})
    totals = Engine(faulty, rate=400, seed=11, tick=1.0).run(900, 50)
    for provider in catalog.PROVIDERS:
        canary, n_canary = approval(totals, "canary", provider=provider)
        stable, n_stable = approval(totals, "stable", provider=provider)
        error = 4 * math.sqrt(canary * (1 - canary) / n_canary + stable * (1 - stable) / n_stable)
        expected = -0.03 if provider == "adyen" else 0.0
        assert canary - stable == pytest.approx(expected, abs=error), provider
    # Within adyen, every method loses about 3 points; the stable side keeps its healthy rate.
    for profile in catalog.PAYMENT_PROFILES:
        if profile.provider == "adyen":
            canary, n = approval(totals, "canary", provider="adyen", method=profile.method)
            assert canary == pytest.approx(profile.approval - 0.03, abs=4 * math.sqrt(canary * (1 - canary) / n))
            stable, n = approval(totals, "stable", provider="adyen", method=profile.method)
            assert stable == pytest.approx(profile.approval, abs=4 * math.sqrt(stable * (1 - stable) / n))


def test_duplicate_charge_fault_increments_only_the_canary() -> None:
    shipped = load_scenario(SCENARIOS / "duplicate-charges.yaml")
    quiet = shipped.model_copy(update={"baseline": Baseline(duplicate_charge_rate=0.0)})
    totals = Engine(quiet, rate=200, seed=5, tick=1.0).run(600, 20)
    assert totals.count(DUPLICATE_CHARGES, variant="stable") == 0
    duplicates = totals.count(DUPLICATE_CHARGES, variant="canary")
    captured = totals.count(CAPTURES, variant="canary", outcome="succeeded")
    assert duplicates > 0
    assert duplicates / captured == pytest.approx(0.005, abs=4 * math.sqrt(0.005 / captured))


def test_at_canary_weight_starts_the_fault_when_the_weight_first_reaches_it() -> None:
    faulty = scenario(
        {"name": "late", "start": {"atCanaryWeight": 5}, "effect": {"duplicateChargeRate": 0.05}},
        baseline=NO_DUPLICATES,
    )
    engine = Engine(faulty, rate=200, seed=7, tick=0.5)
    engine.run(300, 4.9)
    assert engine.totals.count(DUPLICATE_CHARGES) == 0
    assert engine.schedule.flags() == {"late": False}
    engine.run(60, 5)
    assert engine.schedule.started_at() == {"late": 300.0}
    after_five = engine.totals.count(DUPLICATE_CHARGES, variant="canary")
    assert after_five > 0
    engine.run(300, 1)  # the weight falls back: a started fault stays on
    assert engine.schedule.flags() == {"late": True}
    assert engine.totals.count(DUPLICATE_CHARGES, variant="canary") > after_five
    assert engine.totals.count(DUPLICATE_CHARGES, variant="stable") == 0


def test_after_seconds_and_for_seconds_bound_the_fault() -> None:
    faulty = scenario(
        {"variant": "both", "start": {"afterSeconds": 60}, "forSeconds": 30, "effect": {"duplicateOrderRate": 0.2}},
        baseline=NO_DUPLICATES,
    )
    engine = Engine(faulty, rate=100, seed=8, tick=0.5)
    before = engine.run(60, 50).count(DUPLICATE_ORDERS)
    during = engine.run(30, 50).count(DUPLICATE_ORDERS) - before
    after = engine.run(60, 50).count(DUPLICATE_ORDERS) - before - during
    assert (before, after) == (0, 0)
    assert engine.totals.count(DUPLICATE_ORDERS, variant="stable") > 0
    assert engine.totals.count(DUPLICATE_ORDERS, variant="canary") > 0
    assert engine.schedule.flags() == {"fault-1": False}


def test_aa_rates_are_equal_within_sampling_error() -> None:
    totals = Engine(load_scenario(SCENARIOS / "aa.yaml"), rate=400, seed=13, tick=1.0).run(900, 50)
    attempts = {v: totals.count(ATTEMPTS, variant=v) for v in catalog.VARIANTS}
    assert attempts["canary"] / sum(attempts.values()) == pytest.approx(
        0.5, abs=4 * math.sqrt(0.25 / sum(attempts.values()))
    )
    assert sum(attempts.values()) / 900 == pytest.approx(400, rel=0.01)

    def rates(variant: str) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        for path in catalog.PATHS:
            n = totals.count(ATTEMPTS, variant=variant, path=path)
            out[f"completion/{path}"] = (totals.count(COMPLETIONS, variant=variant, path=path) / n, n)
        for p in catalog.PAYMENT_PROFILES:
            out[f"approval/{p.provider}/{p.method}"] = approval(totals, variant, provider=p.provider, method=p.method)
        for metric, good in ((CAPTURES, "succeeded"), (REFUNDS, "succeeded")):
            n = totals.count(metric, variant=variant)
            out[metric.name] = (totals.count(metric, variant=variant, outcome=good) / n, n)
        return out

    canary, stable = rates("canary"), rates("stable")
    for signal, (p1, n1) in canary.items():
        p2, n2 = stable[signal]
        assert abs(z_difference(p1, n1, p2, n2)) < 4, signal
    means = {v: totals.latency[v].sum / totals.latency[v].count for v in catalog.VARIANTS}
    assert means["canary"] == pytest.approx(means["stable"], rel=0.01)
    assert max(totals.mismatch_queue.values()) < 10  # small and reconciled


def test_healthy_rates_are_realistic() -> None:
    totals = Engine(rate=500, seed=17, tick=1.0).run(600, 0)
    completion = totals.count(COMPLETIONS) / totals.count(ATTEMPTS)
    assert 0.96 < completion < 0.98
    assert 0.95 < approval(totals, "stable")[0] < 0.97
    assert totals.count(CAPTURES, outcome="succeeded") / totals.count(CAPTURES) == pytest.approx(0.998, abs=0.001)
    assert totals.count(REFUNDS, outcome="succeeded") / totals.count(REFUNDS) == pytest.approx(0.99, abs=0.004)
    assert totals.count(ATTEMPTS, variant="canary") == 0  # weight 0: the canary gets nothing


def test_a_seed_gives_the_same_counts() -> None:
    faulty = load_scenario(SCENARIOS / "webhook-out-of-order.yaml")
    first = Engine(faulty, rate=300, seed=21).run(60, 25)
    second = Engine(faulty, rate=300, seed=21).run(60, 25)
    other = Engine(faulty, rate=300, seed=22).run(60, 25)
    assert first.counters == second.counters
    assert first.latency == second.latency
    assert first.mismatch_queue == second.mismatch_queue
    assert first.counters != other.counters


def _failed_checkouts(t: Totals, v: str) -> float:
    return 1 - t.count(COMPLETIONS, variant=v, path="gift_card") / t.count(ATTEMPTS, variant=v, path="gift_card")


def _declines(t: Totals, v: str) -> float:
    return 1 - approval(t, v, provider="stripe")[0]


def _failed_captures(t: Totals, v: str) -> float:
    return t.count(CAPTURES, variant=v, outcome="failed") / t.count(CAPTURES, variant=v)


def _failed_refunds(t: Totals, v: str) -> float:
    return t.count(REFUNDS, variant=v, provider="adyen", outcome="failed") / t.count(
        REFUNDS, variant=v, provider="adyen"
    )


def _duplicate_charges(t: Totals, v: str) -> float:
    return t.count(DUPLICATE_CHARGES, variant=v) / t.count(CAPTURES, variant=v)


def _duplicate_orders(t: Totals, v: str) -> float:
    return t.count(DUPLICATE_ORDERS, variant=v) / t.count(COMPLETIONS, variant=v)


def _mismatch_queue(t: Totals, v: str) -> float:
    return t.mismatch_queue[v]


def _mean_latency(t: Totals, v: str) -> float:
    return t.latency[v].sum / t.latency[v].count


# Each seed failure mode, and a signal (higher is worse) that it must make worse on the canary.
SYMPTOMS = {
    "payment-state-mismatch": (_failed_captures, _mismatch_queue),
    "duplicate-charges": (_duplicate_charges,),
    "refund-regression": (_failed_refunds,),
    "edge-path-completion": (_failed_checkouts,),
    "webhook-out-of-order": (_mismatch_queue, _duplicate_orders),
    "silent-declines": (_mismatch_queue,),
    "latency-regression": (_mean_latency,),
    "operator-intervention-load": (_mismatch_queue,),
}


def test_every_scenario_file_parses() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    names = {path.stem for path in files}
    assert names == {"aa", "shared-provider-outage", *SYMPTOMS}
    for path in files:
        parsed = load_scenario(path)
        assert parsed.name == path.stem
        assert parsed.description
        assert bool(parsed.faults) == (path.stem != "aa")


@pytest.mark.parametrize("name", sorted(SYMPTOMS))
def test_every_failure_mode_shows_on_the_canary(name: str) -> None:
    totals = Engine(load_scenario(SCENARIOS / f"{name}.yaml"), rate=400, seed=23, tick=1.0).run(1200, 50)
    for symptom in SYMPTOMS[name]:
        assert symptom(totals, "canary") > 1.5 * symptom(totals, "stable") + 1e-3, symptom.__name__


def test_a_shared_provider_outage_hits_both_variants_alike() -> None:
    engine = Engine(load_scenario(SCENARIOS / "shared-provider-outage.yaml"), rate=400, seed=29, tick=1.0)
    engine.run(300, 50)
    assert _declines(engine.totals, "canary") < 0.06  # before the outage

    def stripe(variant: str, **labels: str) -> int:
        return engine.totals.count(AUTHORIZATIONS, variant=variant, provider="stripe", **labels)

    before = {v: (stripe(v, outcome="approved"), stripe(v)) for v in catalog.VARIANTS}
    engine.run(600, 50)
    during = {}
    for v, (good, total) in before.items():
        n = stripe(v) - total
        during[v] = ((stripe(v, outcome="approved") - good) / n, n)
    assert during["canary"][0] == pytest.approx(0.962 - 0.15, abs=0.01)
    assert abs(z_difference(*during["canary"], *during["stable"])) < 4
    assert engine.schedule.flags() == {"stripe-partial-outage": True}  # in force in the last tick
    engine.step(50)
    assert engine.schedule.flags() == {"stripe-partial-outage": False}  # over after ten minutes


# --- scenario files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"faults": [{"effect": {"authApprovalDrop": 1.5}}]}, "faults[0].effect.authApprovalDrop"),
        ({"faults": [{"effect": {"authAprovalDrop": 0.1}}]}, "faults[0].effect.authAprovalDrop"),
        ({"faults": [{"effect": {}}]}, "faults[0].effect"),
        ({"faults": [{"variant": "blue", "effect": {"completionDrop": 0.1}}]}, "faults[0].variant"),
        ({"faults": [{"provider": "paypal", "effect": {"authApprovalDrop": 0.1}}]}, "faults[0].provider[0]"),
        ({"faults": [{"path": "guest", "effect": {"authApprovalDrop": 0.1}}]}, "faults[0].path"),
        ({"faults": [{"kind": [], "effect": {"refundFailureRate": 0.1}}]}, "faults[0].kind"),
        (
            {"faults": [{"start": {"afterSeconds": 1, "atCanaryWeight": 5}, "effect": {"completionDrop": 0.1}}]},
            "faults[0].start",
        ),
        (
            {"faults": [{"start": {"atCanaryWeight": 120}, "effect": {"completionDrop": 0.1}}]},
            "faults[0].start.atCanaryWeight",
        ),
        (
            {"faults": [{"effect": {"completionDrop": 0.1}}, {"effect": {"latencyMultiplier": 0}}]},
            "faults[1].effect.latencyMultiplier",
        ),
        ({"baseline": {"reconcileSeconds": 0}}, "baseline.reconcileSeconds"),
        ({"fault": []}, "fault"),
    ],
)
def test_a_bad_scenario_names_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(document, "bad.yaml")
    assert any(problem.startswith(f"{field}: ") for problem in caught.value.problems), caught.value.problems
    assert str(caught.value).startswith("bad.yaml: ")


def test_a_selector_that_does_not_apply_says_which_effect_it_misses() -> None:
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.method: .*duplicateOrderRate selects by path"):
        parse_scenario({"faults": [{"method": "card", "effect": {"duplicateOrderRate": 0.1, "mismatchRate": 0.1}}]})
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.provider: .*mismatchGrowthPerMinute selects by nothing"):
        parse_scenario({"faults": [{"provider": "adyen", "effect": {"mismatchGrowthPerMinute": 3}}]})


def test_unreadable_scenario_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("faults: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_scenario(empty).faults == ()


def test_scenario_values_match_the_catalog() -> None:
    assert get_args(scenario_module.Provider) == catalog.PROVIDERS
    assert get_args(scenario_module.Method) == catalog.METHODS
    assert get_args(scenario_module.CheckoutPath) == catalog.PATHS
    assert get_args(scenario_module.Kind) == catalog.KINDS
    assert {p.provider for p in catalog.PAYMENT_PROFILES} == set(catalog.PROVIDERS)
    assert {p.method for p in catalog.PAYMENT_PROFILES} == set(catalog.METHODS)
    assert sum(p.share for p in catalog.PAYMENT_PROFILES) == pytest.approx(1)
    assert sum(p.share for p in catalog.PATH_PROFILES) == pytest.approx(1)


# --- weights and options -------------------------------------------------------------------------


def route(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"rules": [{"backendRefs": list(refs)}]}}


def test_canary_percent_of_an_http_route() -> None:
    s, c = "checkout-stable", "checkout-canary"
    assert canary_percent(route({"name": s, "weight": 90}, {"name": c, "weight": 10}), s, c) == 10
    assert canary_percent(route({"name": s, "weight": 3}, {"name": c, "weight": 1}), s, c) == 25
    assert canary_percent(route({"name": s}, {"name": c}), s, c) == 50  # weight defaults to 1
    assert canary_percent(route({"name": s, "weight": 100}), s, c) == 0
    assert canary_percent(route({"name": c, "weight": 5}), s, c) == 100
    assert canary_percent(route({"name": s, "weight": 0}, {"name": c, "weight": 0}), s, c) == 0
    with pytest.raises(WeightError, match="names neither"):
        canary_percent(route({"name": "other", "weight": 1}), s, c)
    with pytest.raises(WeightError, match=r"spec.rules\[0\]"):
        canary_percent({"spec": {}}, s, c)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_simulate_options() -> None:
    arguments = _parse(
        "--port", "9200", "--rate", "120", "--canary-weight", "10", "--seed", "4", "--duration", "30",
        "--scenario", str(SCENARIOS / "refund-regression.yaml"),
    )  # fmt: skip
    assert arguments.handler is simulate.run
    config = config_from(arguments)
    assert (config.port, config.rate, config.canary_weight, config.seed, config.duration) == (9200, 120, 10, 4, 30)
    assert config.scenario.name == "refund-regression"
    assert config.route is None

    following = config_from(
        _parse("--http-route", "checkout-api", "--stable-service", "s", "--canary-service", "c", "--namespace", "p")
    )
    assert following.route is not None
    assert (following.route.http_route, following.route.namespace, following.route.canary_service) == (
        "checkout-api",
        "p",
        "c",
    )
    assert config_from(_parse()).scenario.faults == ()

    for argv, message in (
        (("--http-route", "r", "--canary-weight", "5", "--stable-service", "s", "--canary-service", "c"), "exclude"),
        (("--http-route", "r"), "needs --stable-service"),
        (("--stable-service", "s"), "only go with --http-route"),
    ):
        with pytest.raises(ValueError, match=message):
            config_from(_parse(*argv))
    with pytest.raises(SystemExit):
        _parse("--canary-weight", "150")


def test_simulate_exits_2_on_a_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - effect: {authApprovalDrop: 2}\n")
    assert simulate.run(_parse("--scenario", str(bad))) == 2
    assert "faults[0].effect.authApprovalDrop" in capsys.readouterr().err
