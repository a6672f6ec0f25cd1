"""Emergency controls (rollout/emergency.py): skip-step and promote-full, by an approver with a
reason, recorded, sent to the owner's page targets; never by the author, never without a reason.

The API server's half (approvers only, a reason in the same request) is in
tests/integration/test_chart.py; the CLI's in tests/integration/test_cli_oncall.py.
"""

from __future__ import annotations

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.rollout.actions import Notify, PageOwner, SetWeights
from checkout_gates.rollout.pages import record_delivery

from .rollouts import HEALTHY, Driver, make_rollout, readings, rollout_doc

SKIP = "gates.checkout.dev/skip-step"
PROMOTE = "gates.checkout.dev/promote-full"
REASON = "gates.checkout.dev/reason"
STAMP = "gates.checkout.dev/spec-changed-by"


def at_first_gate(author: str = "") -> Driver:
    annotations = {STAMP: author} if author else {}
    driver = Driver(CheckoutRollout.model_validate(rollout_doc(annotations=annotations)))
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.current_step == 1
    return driver


def request(driver: Driver, key: str, actor: str, reason: str = "") -> None:
    annotations = {**driver.rollout.metadata.annotations, key: actor}
    if reason:
        annotations[REASON] = reason
    driver.annotate(annotations)
    driver.step()


def test_promote_full_jumps_to_the_final_step_with_one_record_and_one_notice_to_the_pagers() -> None:
    driver = at_first_gate()
    request(driver, PROMOTE, "alice", "fix for the 3-D Secure outage must reach everyone now")
    status = driver.status
    assert status.phase == "Promoted" and status.weights.canary == 100
    records = [e for e in status.history if e.action == "PromotedFull"]
    assert len(records) == 1 and records[0].actor == "alice" and "3-D Secure outage" in records[0].reason
    sent = [a for a in driver.actions if isinstance(a, Notify)]
    assert sent and {a.prefix for a in sent} == {"page"} and {a.severity for a in sent} == {"warning"}
    assert len({a.dedup_key for a in sent}) == 1 and sent[0].targets == (0,)
    assert "promoted by alice past steps 1..5" in sent[0].summary
    assert not [a for a in driver.actions if isinstance(a, PageOwner)], "no halt: nothing to resolve later"


def test_skip_step_skips_one_step_only() -> None:
    driver = at_first_gate()
    request(driver, SKIP, "alice", "the gate's query is broken, fixed in the next release")
    status = driver.status
    assert status.current_step == 2 and status.phase == "AwaitingApproval", "the approval step is not skipped too"
    (record,) = [e for e in status.history if e.action == "StepSkipped"]
    assert "step 1 skipped (gate auth-approval, duplicate-charges) by alice" in record.reason


def test_an_override_without_a_reason_is_refused() -> None:
    driver = at_first_gate()
    request(driver, PROMOTE, "alice")
    assert driver.status.phase == "Progressing" and driver.status.current_step == 1
    assert "needs a reason" in driver.status.history[-1].reason
    assert not [a for a in driver.actions if isinstance(a, Notify)]


def test_the_author_cannot_override_the_gates_of_his_own_change() -> None:
    driver = at_first_gate(author="dana")
    request(driver, SKIP, "dana", "trust me")
    assert driver.status.current_step == 1 and driver.status.history[-1].action == "Ignored"
    assert "cannot override its gates" in driver.status.history[-1].reason


def test_a_halted_rollout_can_be_promoted_in_an_emergency_and_its_halt_page_is_resolved() -> None:
    driver = Driver(make_rollout())
    driver.step()
    bad = readings(canary_approval=0.80)
    for _ in range(4):
        driver.step(bad)
    assert driver.status.phase == "Halted" and driver.status.page is not None
    request(driver, PROMOTE, "alice", "the decline is the provider's outage, not the release")
    assert driver.status.phase == "Promoted"
    assert driver.status.page is not None and driver.status.page.resolved_at is not None


def test_nothing_to_override_once_promoted_or_aborted() -> None:
    driver = at_first_gate()
    request(driver, "gates.checkout.dev/abort", "bob")
    weights = [a for a in driver.actions if isinstance(a, SetWeights)]
    request(driver, PROMOTE, "alice", "go")
    assert (
        driver.status.phase == "Aborted" and "cannot promote-full in phase Aborted" in driver.status.history[-1].reason
    )
    assert [a for a in driver.actions if isinstance(a, SetWeights)] == weights


FOUR_EYES = [
    {"setWeight": 5},
    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
    {"approval": {"approvers": 2}},
    {"setWeight": 100},
]


def test_one_person_cannot_override_a_step_that_asks_for_two() -> None:
    for key, steps_before in ((SKIP, 6), (PROMOTE, 1)):
        driver = Driver(CheckoutRollout.model_validate(rollout_doc(FOUR_EYES)))
        for _ in range(steps_before):
            driver.step(HEALTHY)
        request(driver, key, "bob", "in a hurry")
        assert driver.status.phase != "Promoted" and driver.status.history[-1].action == "Ignored"
        assert "asks for 2 approvers: one person's" in driver.status.history[-1].reason


def test_an_override_notice_is_retried_until_it_reaches_the_pager() -> None:
    driver = at_first_gate()
    request(driver, PROMOTE, "alice", "outage")
    (notice,) = driver.status.notices
    for _ in range(12):  # more failures than a notice of the owner.notify kind is given
        status = record_delivery(
            driver.status,
            notice.deliveries[0].target,
            dedup_key=notice.dedup_key,
            resolved=False,
            error="503",
            now=driver.now,
        )
        driver.rollout = driver.rollout.model_copy(update={"status": status})
        mark = len(driver.actions)
        driver.step()
        assert [a for a in driver.actions[mark:] if isinstance(a, Notify)], "still sent"


def test_promote_full_gets_a_rollout_out_of_an_ungated_exposure_halt_at_its_last_step() -> None:
    """A spec edit at 25% onto steps with no gate before 100%: the promotion halts (it would go past
    what was reached ungated); retry would only halt again, promote-full is the way out."""
    driver = Driver(
        CheckoutRollout.model_validate(
            rollout_doc(
                [
                    {"setWeight": 25},
                    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
                    {"approval": {}},
                    {"setWeight": 50},
                ]
            )
        )
    )
    for _ in range(8):
        driver.step(HEALTHY)
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = [{"setWeight": 10}]
    document["metadata"]["generation"] += 1
    driver.rollout = CheckoutRollout.model_validate(document)
    for _ in range(4):
        driver.step(HEALTHY)
    assert driver.status.phase == "Halted" and "ungated-exposure" in (
        driver.status.page.dedup_key if driver.status.page else ""
    )
    request(driver, PROMOTE, "alice", "the edit was the fix; ship it")
    assert driver.status.phase == "Promoted" and driver.status.weights.canary == 100
