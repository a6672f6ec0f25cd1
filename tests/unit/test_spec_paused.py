"""spec.paused (rollout/paused.py): a declarative pause that never restarts the rollout."""

from __future__ import annotations

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.rollout.actions import SetWeights

from .rollouts import HEALTHY, Driver, make_rollout

APPROVE = "gates.checkout.dev/approve"
PAUSE = "gates.checkout.dev/pause"
STAMP = "gates.checkout.dev/spec-changed-by"


def edited(driver: Driver, *, by: str = "argocd", **spec: object) -> None:
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"].update(spec)
    document["metadata"]["generation"] += 1
    document["metadata"]["annotations"] = {**document["metadata"].get("annotations", {}), STAMP: by}
    driver.rollout = CheckoutRollout.model_validate(document)


def at_first_gate() -> Driver:
    driver = Driver(make_rollout())
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 5
    return driver


def test_pausing_from_the_spec_holds_the_weight_and_resuming_goes_on_without_a_restart() -> None:
    driver = at_first_gate()
    edited(driver, paused=True)
    mark = len(driver.actions)
    for _ in range(6):
        driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Paused" and status.current_step == 1 and status.weights.canary == 5
    assert status.message == "paused by spec.paused at step 1; set it to false to resume"
    assert not [a for a in driver.actions[mark:] if isinstance(a, SetWeights)], "no restart, no weight change"
    actions = [(e.action, e.actor) for e in status.history]
    assert ("SpecChanged", "argocd") in actions and ("Paused", "argocd") in actions and "Restarted" not in dict(actions)
    edited(driver, paused=False)
    driver.step(HEALTHY)
    assert driver.status.phase == "Progressing" and driver.status.current_step == 1
    for _ in range(4):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval", "the gate held again after the resume, and the rollout went on"


def test_on_call_cannot_resume_what_the_spec_holds() -> None:
    driver = at_first_gate()
    edited(driver, paused=True)
    driver.step(HEALTHY)
    driver.annotate({**driver.rollout.metadata.annotations, APPROVE: "alice"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Paused"
    assert "spec.paused is true" in driver.status.history[-1].reason


def test_unpausing_the_spec_does_not_resume_on_calls_own_pause() -> None:
    driver = at_first_gate()
    driver.annotate({PAUSE: "alice"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Paused" and not driver.status.paused_by_spec
    edited(driver, paused=True)
    driver.step(HEALTHY)
    edited(driver, paused=False)
    driver.step(HEALTHY)
    assert driver.status.phase == "Paused", "alice paused it: alice (or another approver) resumes it"


def test_a_real_spec_change_together_with_paused_still_restarts() -> None:
    driver = at_first_gate()
    edited(driver, paused=True, onHalt="abort")
    driver.step(HEALTHY)
    assert [e.action for e in driver.status.history if e.action in ("Restarted", "SpecChanged")][-1] == "Restarted"
    status = driver.status
    assert (status.phase, status.current_step, status.weights.canary) == ("Paused", 0, 0), "from step 0, then held"


def test_a_rollout_created_paused_waits_before_its_first_step() -> None:
    document = make_rollout().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["paused"] = True
    driver = Driver(CheckoutRollout.model_validate(document))
    driver.step()
    assert driver.status.phase == "Paused" and driver.status.weights.canary == 0
