"""A retry after a halt on router drift re-applies the weights; the router reading taken before
the retry (still the hand-edited weights) must not halt the rollout again in the same decision."""

from __future__ import annotations

from checkout_gates.api.status import Weights
from checkout_gates.rollout.actions import SetWeights
from checkout_gates.rollout.machine import Observations, decide

from .rollouts import Driver, make_rollout, with_annotations, with_status

RETRY = "gates.checkout.dev/retry"


def test_retry_after_drift_reapplies_and_goes_on() -> None:
    driver = Driver(make_rollout())
    driver.step()  # start, setWeight 5, enter the gate step
    assert driver.status.phase == "Progressing"
    edited = Weights.canary_at(40)
    halted = decide(driver.rollout, Observations(router_weights=edited), driver.now)
    assert halted.status.phase == "Halted"
    driver.rollout = with_annotations(with_status(driver.rollout, halted.status), {RETRY: "carol"})
    retried = decide(driver.rollout, Observations(router_weights=edited), driver.now)
    assert retried.status.phase == "Progressing", retried.status.halt_reason
    assert [a.weights for a in retried.actions if isinstance(a, SetWeights)] == [driver.status.weights]
    assert [e.action for e in retried.status.history][-1] == "Retried"
    # the next pass sees the re-applied weights: no drift
    driver.rollout = with_annotations(with_status(driver.rollout, retried.status), {})
    after = decide(driver.rollout, Observations(router_weights=driver.status.weights), driver.now)
    assert after.status.phase == "Progressing"
    # but a person who edits the route again is caught again
    again = decide(driver.rollout, Observations(router_weights=edited), driver.now)
    assert again.status.phase == "Halted"
