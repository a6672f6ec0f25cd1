"""Nobody waits in silence: notices to owner.notify, and an approval step's deadline.

The controller's half (delivering notices to a real receiver, across a restart) is in
tests/integration/test_operator_paging.py.
"""

from __future__ import annotations

from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.rollout.actions import Notify, PageOwner
from checkout_gates.rollout.notices import MAX_ATTEMPTS
from checkout_gates.rollout.pages import record_delivery

from .rollouts import HEALTHY, Driver, rollout_doc

APPROVE = "gates.checkout.dev/approve"
HOOK = {"webhook": {"url": "http://127.0.0.1:9999/notices"}}


def rollout(approval: dict[str, Any], notify: list[dict[str, Any]] | None = None) -> CheckoutRollout:
    document = rollout_doc(
        [
            {"setWeight": 5},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
            {"approval": approval},
            {"setWeight": 100},
        ]
    )
    document["spec"]["owner"]["notify"] = [HOOK] if notify is None else notify
    return CheckoutRollout.model_validate(document)


def waiting(approval: dict[str, Any] | None = None, notify: list[dict[str, Any]] | None = None) -> Driver:
    driver = Driver(rollout(approval or {"approvers": 2}, notify))
    for _ in range(6):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    return driver


def notifies(driver: Driver, *, resolved: bool | None = None) -> list[Notify]:
    return [a for a in driver.actions if isinstance(a, Notify) and (resolved is None or a.resolved == resolved)]


def deliver(driver: Driver, error: str = "") -> None:
    """Run one pass and record what the controller would of the notice it sent: each target's outcome."""
    before = len(driver.actions)
    driver.step()
    sent = [a for a in driver.actions[before:] if isinstance(a, Notify)]
    if not sent:
        return
    last = sent[-1]
    status = driver.status
    for index in last.targets:
        target = f"notify[{index}]:{driver.rollout.spec.owner.notify[index].kind}"
        status = record_delivery(
            status, target, dedup_key=last.dedup_key, resolved=last.resolved, error=error, now=driver.now
        )
    driver.rollout = driver.rollout.model_copy(update={"status": status})


def test_a_step_waiting_for_approval_notifies_once_with_the_approve_command() -> None:
    driver = waiting()
    assert len({n.dedup_key for n in notifies(driver)}) == 1, "one notice, however many passes"
    sent = notifies(driver)[-1]
    assert sent.targets == (0,) and not sent.resolved
    assert "step 2 waits for approval" in sent.summary
    assert sent.details["approve"] == "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/approve=$USER"
    assert sent.details["approvals"] == "0 of 2" and sent.details["event"] == "AwaitingApproval"
    assert "auth-approval Pass" in sent.details["gates"], "what the gates saw so far"
    deliver(driver)
    after = len(driver.actions)
    for _ in range(4):
        driver.step(HEALTHY)
    assert not [a for a in driver.actions[after:] if isinstance(a, Notify)], "delivered: never sent again"
    (notice,) = driver.status.notices
    assert notice.deliveries[0].delivered_at is not None


def test_the_approval_notice_is_resolved_once_the_step_is_approved() -> None:
    driver = waiting({"approvers": 1})
    deliver(driver)
    driver.annotate({APPROVE: "alice"})
    driver.step(HEALTHY)
    resolution = notifies(driver, resolved=True)[-1]
    assert resolution.dedup_key == driver.status.notices[0].dedup_key and resolution.targets == (0,)
    deliver(driver)
    (notice, *_) = driver.status.notices
    assert notice.deliveries[0].resolved_at is not None
    after = len(driver.actions)
    driver.step(HEALTHY)
    assert not [a for a in driver.actions[after:] if isinstance(a, Notify) and a.resolved]


def test_a_target_that_keeps_failing_is_given_up_with_its_last_error_kept() -> None:
    driver = waiting()
    for _ in range(MAX_ATTEMPTS + 3):
        deliver(driver, error="webhook 127.0.0.1: HTTP 503")
    (notice,) = driver.status.notices
    assert notice.deliveries[0].attempts == MAX_ATTEMPTS
    assert notice.deliveries[0].error == "webhook 127.0.0.1: HTTP 503"


def test_started_and_promoted_are_notified_only_to_the_targets_that_ask() -> None:
    quiet = {"webhook": {"url": "http://127.0.0.1:9999/quiet"}, "on": ["Started", "Promoted"]}
    driver = waiting({"approvers": 1}, notify=[HOOK, quiet])
    events = {(n.details.get("event"), n.targets) for n in notifies(driver, resolved=False)}
    assert events == {("Started", (1,)), ("AwaitingApproval", (0,))}
    driver.annotate({APPROVE: "alice"})
    for _ in range(4):
        driver.step(HEALTHY)
    assert driver.status.phase == "Promoted"
    assert ("Promoted", (1,)) in {(n.details.get("event"), n.targets) for n in notifies(driver, resolved=False)}


def test_without_notify_targets_nothing_is_sent() -> None:
    driver = waiting(notify=[])
    assert not notifies(driver) and driver.status.notices == []


def test_an_approval_deadline_halts_holding_exposure_and_pages_once() -> None:
    driver = waiting({"approvers": 2, "deadline": "2m"})
    deliver(driver)
    driver.annotate({APPROVE: "alice"})
    for _ in range(8):  # 4 minutes of passes: the deadline passes once
        driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Halted" and status.weights.canary == 5, "exposure held where it was"
    assert "not approved within 2m (1 of 2 approvers: alice)" in status.halt_reason
    assert status.page is not None and "approval-deadline" in status.page.dedup_key
    assert len({a.dedup_key for a in driver.actions if isinstance(a, PageOwner)}) == 1
    assert [e.action for e in status.history].count("Halted") == 1
    resolutions = notifies(driver, resolved=True)
    assert resolutions, "the approval notice is resolved: the rollout no longer waits for approvers"


def test_an_approval_deadline_with_on_deadline_abort_takes_the_canary_to_zero() -> None:
    driver = waiting({"approvers": 1, "deadline": "5m", "onDeadline": "abort"})
    for _ in range(12):
        driver.step(HEALTHY)
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0
    assert driver.status.page is not None and "approval-deadline" in driver.status.page.dedup_key


def test_an_approval_in_time_beats_the_deadline() -> None:
    driver = waiting({"approvers": 1, "deadline": "10m"})
    driver.annotate({APPROVE: "alice"})
    driver.step(HEALTHY)
    for _ in range(30):
        driver.step(HEALTHY)
    assert driver.status.phase == "Promoted"
