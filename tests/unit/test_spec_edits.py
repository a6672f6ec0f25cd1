"""A spec edit skips no gate, resolves no page and names who made it (hardening issue, finding 2).

A user refused by the approval policy once patched ``steps: [{setWeight: 100}]`` on a rollout
waiting for approval at 5%: 100% within 0.2 s, and history said "checkout-gates Restarted". A
cosmetic edit of an aborted rollout re-exposed the canary at 1% and resolved its open page."""

from __future__ import annotations

from typing import Any

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.rollout.actions import PageOwner, SetWeights

from .rollouts import HEALTHY, Driver, make_rollout, readings

APPROVE = "gates.checkout.dev/approve"
ABORT = "gates.checkout.dev/abort"
RETRY = "gates.checkout.dev/retry"
PAUSE = "gates.checkout.dev/pause"
CHANGED_BY = "gates.checkout.dev/spec-changed-by"
GATE = {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}}


def edit(driver: Driver, steps: list[dict[str, Any]], *, by: str | None = "mallory") -> None:
    """A new generation of the spec, as kube-apiserver stores it (admission stamps the user)."""
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = steps
    document["metadata"]["generation"] += 1
    annotations = dict(document["metadata"].get("annotations") or {})
    if by is not None:
        annotations[CHANGED_BY] = by
    document["metadata"]["annotations"] = annotations
    driver.rollout = CheckoutRollout.model_validate(document)


def to_approval_at_5(driver: Driver) -> None:
    for _ in range(4):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    assert driver.status.weights.canary == 5


def highest_weight_after(driver: Driver, mark: int) -> int:
    return max((a.weights.canary for a in driver.actions[mark:] if isinstance(a, SetWeights)), default=0)


def test_an_edit_to_a_single_100_percent_step_never_exceeds_what_the_gates_had_passed() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    mark = len(driver.actions)
    edit(driver, [{"setWeight": 100}])
    for _ in range(5):
        driver.step(HEALTHY)
    status = driver.status
    assert highest_weight_after(driver, mark) == 0, "the edit's 100% is never stated; exposure went to 0"
    assert status.phase == "Halted" and "above the 5% it had reached before its spec changed" in status.halt_reason
    assert status.page is not None and "ungated-exposure" in status.page.dedup_key
    restarted = next(e for e in status.history if e.action == "Restarted")
    assert restarted.actor == "mallory" and "spec changed by mallory (generation 1 -> 2)" in restarted.reason
    assert len({a.dedup_key for a in driver.actions if isinstance(a, PageOwner)}) == 1


def test_an_edit_that_steps_up_through_a_gate_goes_on_and_its_own_gates_lift_the_ceiling() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    edit(driver, [{"setWeight": 2}, GATE, {"setWeight": 50}, GATE])
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 2
    assert driver.status.exposure_ceiling == 5
    for _ in range(8):
        driver.step(HEALTHY)
    assert driver.status.exposure_ceiling is None, "a gate step of the new generation passed"
    assert driver.status.phase == "Promoted", driver.status.halt_reason


def test_a_cosmetic_edit_of_an_aborted_rollout_exposes_nothing_and_keeps_its_page_open() -> None:
    driver = Driver(make_rollout())
    driver.step()
    driver.step(readings(duplicates=3))  # a critical gate fails: abort and page
    assert driver.status.phase == "Aborted" and driver.status.page is not None
    mark = len(driver.actions)
    edit(driver, [{"setWeight": 1}, GATE, {"setWeight": 100}])
    for _ in range(5):
        driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Aborted"
    assert highest_weight_after(driver, mark) == 0
    assert status.page is not None and status.page.resolved_at is None, "only on-call resolves the page"
    changed = next(e for e in status.history if e.action == "SpecChanged")
    assert changed.actor == "mallory" and "stays aborted until on-call acts" in changed.reason
    # On-call's retry starts it afresh on the new spec.
    driver.annotate({RETRY: "erin"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 1


def test_an_edit_of_a_halted_rollout_keeps_it_halted_with_its_page_and_takes_exposure_to_0() -> None:
    driver = Driver(make_rollout())
    driver.step()
    for _ in range(3):
        driver.step(readings(canary_approval=0.80))
    assert driver.status.phase == "Halted" and driver.status.page is not None
    edit(driver, [{"setWeight": 5}, GATE, {"setWeight": 100}])
    for _ in range(3):
        driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Halted" and status.weights.canary == 0
    assert status.page is not None and status.page.resolved_at is None
    driver.annotate({RETRY: "erin"})
    for _ in range(6):
        driver.step(HEALTHY)
    assert driver.status.phase == "Promoted", "retried, the new spec runs through its own gates"


def test_an_edit_of_a_paused_rollout_leaves_it_paused() -> None:
    driver = Driver(make_rollout())
    driver.step()
    driver.annotate({PAUSE: "erin"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Paused"
    edit(driver, [{"setWeight": 5}, GATE])
    for _ in range(3):
        driver.step(HEALTHY)
    assert driver.status.phase == "Paused" and driver.status.weights.canary == 0
    driver.annotate({APPROVE: "erin"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 5


def test_an_edit_no_admission_stamped_is_recorded_as_unknown() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    edit(driver, [{"setWeight": 1}, GATE], by=None)
    driver.step()
    restarted = next(e for e in driver.status.history if e.action == "Restarted")
    assert restarted.actor == "unknown (no admission stamp)"


def test_an_abort_given_with_the_edit_still_wins() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    edit(driver, [{"setWeight": 100}])
    driver.annotate({**driver.rollout.metadata.annotations, ABORT: "erin"})
    driver.step()
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0


def test_a_forged_step_beyond_the_spec_aborts_instead_of_promoting() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    forged = driver.status.model_copy(update={"current_step": 99, "phase": "Progressing"})
    driver.rollout = driver.rollout.model_copy(update={"status": forged})
    mark = len(driver.actions)
    driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Aborted" and status.weights.canary == 0
    assert "status names step 99 of a 6-step rollout" in status.halt_reason
    assert highest_weight_after(driver, mark) == 0
    assert "Promoted" not in [e.action for e in status.history]
    pages = {a.dedup_key for a in driver.actions[mark:] if isinstance(a, PageOwner)}
    assert len(pages) == 1
    for _ in range(3):  # and it stays so, paging once
        driver.step(HEALTHY)
    assert driver.status.phase == "Aborted"
    assert {a.dedup_key for a in driver.actions[mark:] if isinstance(a, PageOwner)} == pages


def test_a_negative_step_is_refused_as_an_invalid_status() -> None:
    document = make_rollout().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["status"] = {"currentStep": -1, "phase": "Progressing"}
    assert isinstance(parse_rollout(document), list), "-1 no longer indexes from the end"


def test_a_status_from_a_future_generation_aborts() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    forged = driver.status.model_copy(update={"observed_generation": 7})
    driver.rollout = driver.rollout.model_copy(update={"status": forged})
    driver.step(HEALTHY)
    assert driver.status.phase == "Aborted" and "claims generation 7" in driver.status.halt_reason


def test_the_promotion_honours_the_ceiling_too() -> None:
    """An edit to [setWeight 5, pause] after 25% once promoted to 100% with no gate of its own."""
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    edit(driver, [{"setWeight": 5}, {"pause": {"duration": "10s"}}])
    for _ in range(4):
        driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Halted" and "would promote the canary to 100%" in status.halt_reason
    assert status.weights.canary <= 5 and "Promoted" not in [e.action for e in status.history]


def test_a_forged_generation_aborts_once_and_on_call_can_then_retry() -> None:
    driver = Driver(make_rollout())
    to_approval_at_5(driver)
    forged = driver.status.model_copy(update={"observed_generation": 7})
    driver.rollout = driver.rollout.model_copy(update={"status": forged})
    driver.step(HEALTHY)
    assert driver.status.phase == "Aborted"
    driver.annotate({RETRY: "erin"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Progressing", "not locked: the retry was consumed"
