"""Properties of decide over random histories of evaluations, annotations, time and spec changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkout_gates.rollout.actions import PageOwner, SetWeights
from checkout_gates.rollout.machine import Observations, decide

from .rollouts import Driver, make_rollout, readings, with_status

OBSERVATIONS = {
    "healthy": readings(),
    "failing": readings(canary_approval=0.90),
    "low-traffic": readings(canary_total=10),
    "critical": readings(duplicates=3),
    "unreachable": readings(error="connection refused"),
    "none": {},
}
COMMANDS = ("approve", "abort", "retry", "pause")

events = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.sampled_from(sorted(OBSERVATIONS))),
        st.tuples(st.just("annotate"), st.sets(st.sampled_from(COMMANDS), min_size=1, max_size=2)),
        st.tuples(st.just("wait"), st.sampled_from([1, 30, 600])),
        st.tuples(st.just("respec"), st.just(None)),
    ),
    max_size=40,
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def play(history: list[tuple[str, Any]], check: Any) -> Driver:
    driver = Driver(make_rollout(on_halt="hold"))
    for kind, arg in history:
        if kind == "observe":
            obs = OBSERVATIONS[arg]
            before = driver.rollout
            driver.step(obs, advance=30)
            check(before, obs, driver)
        elif kind == "annotate":
            driver.annotate({f"gates.checkout.dev/{command}": "oncall" for command in arg})
        elif kind == "wait":
            driver.now += timedelta(seconds=arg)
        else:
            meta = driver.rollout.metadata
            driver.rollout = driver.rollout.model_copy(
                update={"metadata": meta.model_copy(update={"generation": meta.generation + 1})}
            )
    return driver


@PROPERTY_SETTINGS
@given(events)
def test_decide_is_idempotent(history: list[tuple[str, Any]]) -> None:
    def check(before: Any, obs: Any, driver: Driver) -> None:
        now = driver.now - timedelta(seconds=30)
        first = decide(before, Observations(readings=obs), now)
        again = decide(before, Observations(readings=obs), now)
        assert first == again
        fed_back = decide(with_status(before, first.status), Observations(), now)
        assert fed_back.status == first.status
        restated = [a.weights for a in fed_back.actions if isinstance(a, SetWeights)]
        assert restated in ([], [first.status.weights]), "only the same target may be stated again"

    play(history, check)


@PROPERTY_SETTINGS
@given(events)
def test_exposure_only_grows_except_to_zero(history: list[tuple[str, Any]]) -> None:
    driver = play(history, lambda *_: None)
    last = 0
    for action in driver.actions:
        if isinstance(action, SetWeights):
            canary = action.weights.canary
            assert canary == 0 or canary >= last, f"{last} -> {canary}"
            last = canary


@PROPERTY_SETTINGS
@given(events)
def test_inconclusive_never_advances_a_step(history: list[tuple[str, Any]]) -> None:
    def check(before: Any, obs: Any, driver: Driver) -> None:
        inconclusive = obs is OBSERVATIONS["low-traffic"] or obs is OBSERVATIONS["unreachable"]
        settled = not before.metadata.annotations and before.status.phase != "Pending"
        same_generation = before.status.observed_generation == before.metadata.generation
        index = before.status.current_step
        at_gate = index < len(before.spec.steps) and before.spec.steps[index].gate is not None
        if inconclusive and settled and same_generation and at_gate:
            assert driver.status.current_step == index

    play(history, check)


@PROPERTY_SETTINGS
@given(events)
def test_abort_always_ends_at_weight_zero(history: list[tuple[str, Any]]) -> None:
    driver = play(history, lambda *_: None)
    driver.annotate({"gates.checkout.dev/abort": "oncall"})
    driver.step()
    if driver.status.phase != "Promoted":
        assert driver.status.phase == "Aborted"
        assert driver.status.weights.canary == 0


@PROPERTY_SETTINGS
@given(events)
def test_one_page_per_halt(history: list[tuple[str, Any]]) -> None:
    driver = play(history, lambda *_: None)
    halts = [
        e
        for e in driver.status.history
        if e.action == "Halted" or (e.action == "Aborted" and e.actor == "checkout-gates")
    ]
    keys = {a.dedup_key for a in driver.actions if isinstance(a, PageOwner) and not a.escalation}
    # History is bounded; over these short histories it holds every halt.
    assert len(keys) == len(halts)
