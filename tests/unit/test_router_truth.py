"""State that never claims what the router did not do (hardening issue, finding 6).

A route the operator cannot read or write (a third backendRef, a 403, a denying webhook) once let a
rollout pass its 5% and 25% gates judged on the 1% actually routed and record "Promoted". Now: a
setWeight step completes only when the router confirms it, gates are judged only on confirmed
weights, failures in a row halt and page, and a repaired router never makes exposure jump."""

from __future__ import annotations

from datetime import timedelta

from checkout_gates.api.status import Weights
from checkout_gates.rollout.actions import PageOwner, SetWeights
from checkout_gates.rollout.machine import ROUTER_ERROR_LIMIT, Observations, decide
from checkout_gates.rollout.outcomes import Outcomes, apply_outcomes

from .rollouts import HEALTHY, Driver, make_rollout, readings, with_annotations, with_status

RETRY = "gates.checkout.dev/retry"
BROKEN = "cannot patch HTTPRoute payments/checkout rule 0: HTTP 422: a third backendRef"


def confirm(driver: Driver) -> None:
    status = driver.status
    driver.rollout = with_status(
        driver.rollout,
        apply_outcomes(
            driver.rollout, Outcomes(router_target=status.weights, router_weights=status.weights), driver.now
        ),
    )


def fail_write(driver: Driver) -> None:
    driver.rollout = with_status(
        driver.rollout, apply_outcomes(driver.rollout, Outcomes(router_error=BROKEN), driver.now)
    )


def test_a_set_weight_step_waits_for_the_router_and_no_gate_is_judged_meanwhile() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()  # setWeight 5 stated
    for _ in range(20):  # the router never applies it; healthy readings come all the while
        driver.step(HEALTHY)
    status = driver.status
    assert status.current_step == 0, "the setWeight step is not complete: the router never confirmed 5%"
    assert status.gates == [], "no gate was judged on a split that is not in effect"
    assert status.phase == "Progressing"
    assert all(a.weights.canary == 5 for a in driver.actions if isinstance(a, SetWeights)), "only restated"


def test_gates_judged_only_once_the_router_confirms() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    confirm(driver)
    driver.step()  # the setWeight step completes
    assert driver.status.current_step == 1
    driver.step(HEALTHY)
    assert [g.verdict for g in driver.status.gates] == ["Pass", "Pass"]


def test_router_failures_in_a_row_halt_and_page_once() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    for _ in range(ROUTER_ERROR_LIMIT - 1):
        fail_write(driver)
    assert driver.status.router_errors == ROUTER_ERROR_LIMIT - 1
    assert driver.status.phase == "Progressing"
    decision = decide(driver.rollout, Observations(router_error="HTTP 403: forbidden"), driver.now)
    status = decision.status
    assert status.phase == "Halted"
    assert "router failed 3 times in a row" in status.halt_reason and "HTTP 403" in status.halt_reason
    assert status.page is not None and "router-error" in status.page.dedup_key
    assert status.weights.canary == 5, "held at the intended weight; the router is re-told, never more"
    assert len([a for a in decision.actions if isinstance(a, PageOwner)]) == 1


def test_a_good_read_or_write_resets_the_count() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    fail_write(driver)
    fail_write(driver)
    confirm(driver)
    assert driver.status.router_errors == 0
    decision = decide(driver.rollout, Observations(router_error="timeout"), driver.now)
    assert decision.status.router_errors == 1
    back = decide(
        with_status(driver.rollout, decision.status), Observations(router_weights=Weights.canary_at(5)), driver.now
    )
    assert back.status.router_errors == 0


def test_after_a_repair_exposure_never_jumps_it_holds_until_retried_and_then_moves_one_step() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    for _ in range(ROUTER_ERROR_LIMIT):
        fail_write(driver)
    driver.step(HEALTHY)
    assert driver.status.phase == "Halted"
    # The route is repaired: the weights the rollout kept restating are applied.
    confirm(driver)
    for _ in range(10):
        driver.step(HEALTHY)
    assert driver.status.phase == "Halted", "a repair alone resumes nothing: on-call decides"
    assert driver.status.weights.canary == 5
    driver.annotate({RETRY: "erin"})
    driver.router_confirms = True
    driver.step(HEALTHY)
    assert driver.status.phase == "Progressing"
    assert driver.status.weights.canary == 5, "retry re-runs the held step, no further"
    assert max(a.weights.canary for a in driver.actions if isinstance(a, SetWeights)) == 5


def test_promoted_only_once_the_router_confirms_all_traffic() -> None:
    rollout = make_rollout(steps=[{"setWeight": 50}])
    driver = Driver(rollout, router_confirms=False)
    driver.step()
    confirm(driver)
    driver.step()  # setWeight 50 completes; the promotion states 100
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 100
    driver.now += timedelta(seconds=1)
    confirm(driver)
    driver.step()
    assert driver.status.phase == "Promoted"
    assert [e.action for e in driver.status.history][-1] == "Promoted"


def test_annotations_keep_working_while_the_router_is_broken() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/abort": "erin"})
    driver.step()
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0


def test_a_route_that_reads_but_refuses_every_patch_still_halts() -> None:
    """Good reads between failed writes must not reset the count (a denying webhook, get without patch)."""
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()
    for _ in range(ROUTER_ERROR_LIMIT + 2):
        fail_write(driver)
        decision = decide(driver.rollout, Observations(router_weights=Weights.canary_at(0)), driver.now)
        driver.rollout = with_status(driver.rollout, decision.status)
    assert driver.status.phase == "Halted" and "router failed" in driver.status.halt_reason


def test_a_critical_gate_still_aborts_while_the_next_split_waits_for_the_router() -> None:
    driver = Driver(make_rollout())
    for _ in range(5):
        driver.step(HEALTHY)
    driver.annotate({"gates.checkout.dev/approve": "erin"})
    driver.router_confirms = False
    driver.step(HEALTHY)  # approved: setWeight 25 stated, the router never confirms it
    assert driver.status.weights.canary == 25 and driver.status.router_target == Weights.canary_at(5)
    driver.step(readings(duplicates=50))
    assert driver.status.phase == "Aborted", "duplicate charges at the confirmed 5% abort"
    assert driver.status.weights.canary == 0


def test_a_router_error_halt_holds_the_confirmed_weights_not_the_refused_ones() -> None:
    driver = Driver(make_rollout())
    for _ in range(5):
        driver.step(HEALTHY)
    driver.annotate({"gates.checkout.dev/approve": "erin"})
    driver.router_confirms = False
    driver.step(HEALTHY)  # 25% stated, never applied
    for _ in range(ROUTER_ERROR_LIMIT):
        fail_write(driver)
    driver.step(HEALTHY)
    assert driver.status.phase == "Halted"
    assert driver.status.weights == Weights.canary_at(5), "held at what the router confirmed"
    mark = len(driver.actions)
    driver.step(HEALTHY)
    assert all(a.weights.canary == 5 for a in driver.actions[mark:] if isinstance(a, SetWeights))


def test_an_aborted_canary_that_the_route_still_feeds_is_taken_back_to_0() -> None:
    driver = Driver(make_rollout())
    driver.step()
    driver.annotate({"gates.checkout.dev/abort": "erin"})
    driver.step()
    assert driver.status.phase == "Aborted"
    # A patch of a pass that the abort cut short lands afterwards: the route sends 5% again.
    decision = decide(driver.rollout, Observations(router_weights=Weights.canary_at(5)), driver.now)
    assert [a.weights.canary for a in decision.actions if isinstance(a, SetWeights)] == [0]
