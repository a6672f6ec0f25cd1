"""Four eyes on an approval step (rollout/approvals.py): N distinct approvers, never the author.

The API server's half (the chart's admission policy refusing the author's approval, and
approvers per rollout) is tested with minted users in tests/integration/test_chart.py.
"""

from __future__ import annotations

from checkout_gates.api.resource import CheckoutRollout

from .rollouts import HEALTHY, Driver, rollout_doc
from .test_release import Cluster, ReleaseDriver, release_rollout

APPROVE = "gates.checkout.dev/approve"
REASON = "gates.checkout.dev/reason"
STAMP = "gates.checkout.dev/spec-changed-by"

STEPS = [
    {"setWeight": 5},
    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
    {"approval": {"approvers": 2, "reason": "refund path change: four eyes"}},
    {"setWeight": 100},
]


def awaiting_two(author: str = "dana") -> Driver:
    driver = Driver(CheckoutRollout.model_validate(rollout_doc(STEPS, annotations={STAMP: author})))
    for _ in range(6):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval" and driver.status.current_step == 2
    return driver


def approve(driver: Driver, actor: str, reason: str = "") -> None:
    annotations = {**driver.rollout.metadata.annotations, APPROVE: actor}
    if reason:
        annotations[REASON] = reason
    driver.annotate(annotations)
    driver.step()


def actions(driver: Driver) -> list[tuple[str, str]]:
    return [(entry.action, entry.actor) for entry in driver.status.history]


def test_one_approval_holds_the_same_person_twice_holds_a_second_person_opens_the_step() -> None:
    driver = awaiting_two()
    approve(driver, "alice", "checked the refund dashboards")
    assert driver.status.phase == "AwaitingApproval" and driver.status.current_step == 2
    assert [a.actor for a in driver.status.approvals] == ["alice"]
    assert driver.status.approvals[0].reason == "checked the refund dashboards"
    assert "awaiting 2 approvers (alice)" in driver.status.message
    approve(driver, "alice")  # in the same epoch: taken for the leftover of the first, and consumed
    assert driver.status.phase == "AwaitingApproval", "one person counts once"
    assert [a.actor for a in driver.status.approvals] == ["alice"]
    assert APPROVE not in driver.rollout.metadata.annotations
    approve(driver, "bob", "second pair of eyes")
    assert driver.status.current_step >= 3 and driver.status.weights.canary == 100
    assert driver.status.approvals == [], "emptied when the step changes"
    approved = [entry for entry in driver.status.history if entry.action == "Approved"]
    assert len(approved) == 1 and approved[0].actor == "bob" and "alice, bob" in approved[0].reason
    recorded = [entry for entry in driver.status.history if entry.action == "ApprovalRecorded"]
    assert [entry.actor for entry in recorded] == ["alice"] and "1 of 2" in recorded[0].reason


def test_the_author_of_the_spec_change_cannot_approve_it() -> None:
    driver = awaiting_two(author="dana")
    approve(driver, "dana")
    assert driver.status.phase == "AwaitingApproval" and driver.status.approvals == []
    assert actions(driver)[-1] == ("Ignored", "dana")
    assert "author of a change cannot approve it" in driver.status.history[-1].reason
    approve(driver, "alice")
    approve(driver, "bob")
    assert driver.status.current_step >= 3


def test_a_single_approver_step_still_refuses_the_author() -> None:
    document = rollout_doc(annotations={STAMP: "dana"})
    driver = Driver(CheckoutRollout.model_validate(document))
    for _ in range(6):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    approve(driver, "dana")
    assert driver.status.phase == "AwaitingApproval"
    approve(driver, "alice")
    assert driver.status.phase == "Progressing" and driver.status.current_step > 2


def test_without_an_admission_stamp_nobody_is_taken_for_the_author() -> None:
    driver = Driver(CheckoutRollout.model_validate(rollout_doc(STEPS)))
    for _ in range(6):
        driver.step(HEALTHY)
    approve(driver, "alice")
    approve(driver, "bob")
    assert driver.status.current_step >= 3


def test_the_author_of_the_deployments_revision_cannot_approve_its_rollout() -> None:
    document = release_rollout().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = [
        {"setWeight": 5},
        {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
        {"approval": {"approvers": 2}},
    ]
    cluster = Cluster()
    driver = ReleaseDriver(CheckoutRollout.model_validate(document), cluster)
    driver.until("Promoted")
    cluster.set_image("v2")
    cluster.authors["v2"] = "erin"  # erin ran kubectl set image; admission stamped her
    driver.until("AwaitingApproval", HEALTHY)
    revisions = driver.status.revisions
    assert revisions is not None and revisions.canary is not None and revisions.canary.author == "erin"
    for actor in ("erin", "alice"):
        driver.rollout = driver.rollout.model_copy(
            update={
                "metadata": driver.rollout.metadata.model_copy(
                    update={"annotations": {**driver.rollout.metadata.annotations, APPROVE: actor}}
                )
            }
        )
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    assert [a.actor for a in driver.status.approvals] == ["alice"]
    ignored = [entry for entry in driver.status.history if entry.action == "Ignored"]
    assert [entry.actor for entry in ignored] == ["erin"]


def test_a_spec_change_during_the_approval_step_drops_the_approvals_given() -> None:
    """They approved another change: the new generation restarts and needs its own approvals."""
    driver = awaiting_two()
    approve(driver, "alice")
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["analysis"]["interval"] = "20s"
    document["metadata"]["generation"] += 1
    driver.rollout = CheckoutRollout.model_validate(document)
    driver.step(HEALTHY)
    assert driver.status.approvals == []


def test_a_repeated_approval_after_other_transitions_is_ignored_with_the_reason() -> None:
    driver = awaiting_two(author="dana")
    approve(driver, "alice")
    approve(driver, "dana")  # refused (the author): a transition of its own
    approve(driver, "alice")
    assert driver.status.phase == "AwaitingApproval" and [a.actor for a in driver.status.approvals] == ["alice"]
    assert actions(driver)[-1] == ("Ignored", "alice") and "counts once" in driver.status.history[-1].reason


def test_a_later_change_by_someone_else_does_not_launder_the_first_authors_change() -> None:
    """dana wrote the change; erin edits it mid-rollout (a restart): dana is still an author."""
    driver = awaiting_two(author="dana")
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["analysis"]["failureLimit"] = 3
    document["metadata"]["generation"] += 1
    document["metadata"]["annotations"] = {STAMP: "erin"}
    driver.rollout = CheckoutRollout.model_validate(document)
    for _ in range(8):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    assert set(driver.status.authors) == {"dana", "erin"}
    for actor in ("dana", "erin"):
        approve(driver, actor)
        assert driver.status.approvals == [] and "cannot approve" in driver.status.history[-1].reason


def test_a_revision_restarted_by_someone_else_keeps_its_first_author() -> None:
    document = release_rollout().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = [
        {"setWeight": 5},
        {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
        {"approval": {"approvers": 2}},
    ]
    cluster = Cluster()
    driver = ReleaseDriver(CheckoutRollout.model_validate(document), cluster)
    driver.until("Promoted")
    cluster.set_image("v2")
    cluster.authors["v2"] = "erin"
    driver.step(HEALTHY)
    cluster.set_image("v3")  # `kubectl rollout restart` by an SRE: a new revision, another author
    cluster.authors["v3"] = "sre"
    driver.until("AwaitingApproval", HEALTHY)
    assert {"erin", "sre"} <= set(driver.status.authors)
    driver.rollout = driver.rollout.model_copy(
        update={
            "metadata": driver.rollout.metadata.model_copy(
                update={"annotations": {**driver.rollout.metadata.annotations, APPROVE: "erin"}}
            )
        }
    )
    driver.step(HEALTHY)
    assert driver.status.approvals == [] and driver.status.history[-1].action == "Ignored"


def test_a_pause_neither_wipes_the_approvals_given_nor_restarts_the_deadline() -> None:
    driver = Driver(
        CheckoutRollout.model_validate(
            rollout_doc(
                [
                    {"setWeight": 5},
                    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
                    {"approval": {"approvers": 2, "deadline": "5m"}},
                    {"setWeight": 100},
                ]
            )
        )
    )
    for _ in range(6):
        driver.step(HEALTHY)
    approve(driver, "alice")
    started = driver.status.step_started_at
    driver.annotate({"gates.checkout.dev/pause": "dana"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Paused"
    approve(driver, "dana")  # resumes
    assert driver.status.phase in {"Progressing", "AwaitingApproval"}
    assert [a.actor for a in driver.status.approvals] == ["alice"] and driver.status.step_started_at == started
    for _ in range(12):
        driver.step(HEALTHY)
    assert driver.status.phase == "Halted" and "approval-deadline" in (
        driver.status.page.dedup_key if driver.status.page else ""
    )
