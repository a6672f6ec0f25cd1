"""The views of `status`, `list` and the on-call commands, from statuses the real state machine made."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import Revision, Revisions
from checkout_gates.cli.render import (
    age,
    list_json,
    render_list,
    render_status,
    request_outcome,
    status_json,
    step_label,
    view_of,
)
from checkout_gates.gates.observations import Sample, SignalReading
from tests.unit.rollouts import HEALTHY, T0, Driver, make_rollout, ratio_sample, readings, rollout_doc

APPROVE = "gates.checkout.dev/approve"


def _drive(steps: int, obs: dict[str, SignalReading] = HEALTHY) -> Driver:
    driver = Driver(make_rollout())
    for _ in range(steps):
        driver.step(obs)
    return driver


def _two_providers(adyen: float, stripe: float) -> dict[str, SignalReading]:
    """auth-approval with two segments: adyen and stripe, each with its own canary approval."""
    adyen_key, stripe_key = (("provider", "adyen"),), (("provider", "stripe"),)
    base = readings()
    return {
        **base,
        "auth-approval": SignalReading(
            gate="auth-approval",
            canary={adyen_key: ratio_sample(1000, adyen), stripe_key: ratio_sample(1000, stripe)},
            stable={adyen_key: ratio_sample(10000, 0.97), stripe_key: ratio_sample(10000, 0.97)},
            window_seconds=30,
        ),
        "duplicate-charges": SignalReading(
            gate="duplicate-charges", canary={(): Sample(value=0)}, stable={(): Sample(value=0)}, window_seconds=30
        ),
    }


def _wire(rollout: CheckoutRollout, **metadata: Any) -> dict[str, Any]:
    """The rollout as the API server returns it, with server-set metadata."""
    raw = rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["metadata"].update(metadata)
    return raw


@pytest.fixture
def progressing() -> Driver:
    return _drive(3)


@pytest.fixture
def halted() -> Driver:
    driver = _drive(6, _two_providers(adyen=0.80, stripe=0.90))
    assert driver.status.phase == "Halted"
    return driver


@pytest.fixture
def promoted() -> Driver:
    driver = _drive(8)
    driver.annotate({APPROVE: "alice"})
    for _ in range(8):
        driver.step(HEALTHY)
    assert driver.status.phase == "Promoted"
    return driver


def test_progressing_marks_the_current_step_and_shows_both_weights(progressing: Driver) -> None:
    raw = _wire(progressing.rollout, creationTimestamp="2026-11-27T09:58:00Z")
    text = render_status(view_of(raw), now=progressing.now)
    lines = text.splitlines()
    assert lines[0] == "payments/checkout-api  Progressing  step 1/6  canary 5%  age 3m"
    assert "  >  1  gate auth-approval, duplicate-charges for 1m" in lines
    assert "     0  setWeight 5%" in lines and "     2  approval" in lines
    assert "weights:  stable 95%  canary 5%" in lines
    assert "router:   stable 95%  canary 5%" in lines
    gate_row = next(line for line in lines if line.startswith("  auth-approval"))
    assert gate_row.split()[1:5] == ["Pass", "provider=adyen", "97.00%", "97.00%"]
    assert "page:     none" in lines
    assert "\x1b[" not in text, "no colour unless asked for"


def test_halted_names_the_failing_segments_and_the_page(halted: Driver) -> None:
    text = render_status(view_of(halted.rollout), now=halted.now)
    lines = text.splitlines()
    assert lines[0].startswith("payments/checkout-api  Halted  step 1/6  canary 5%")
    assert "gate auth-approval failed 2 times" in lines[1]
    gate_at = next(i for i, line in enumerate(lines) if line.startswith("  auth-approval"))
    # The deciding segment on the gate's row, the other failing segment on the row below it.
    assert lines[gate_at].split()[1:5] == ["Fail", "provider=adyen", "80.00%", "97.00%"]
    assert lines[gate_at + 1].split()[:4] == ["Fail", "provider=stripe", "90.00%", "97.00%"]
    page = halted.status.page
    assert page is not None
    assert f"page:     open  key {page.dedup_key}" in lines
    assert any(line.startswith("  triggered 2026-11-27T10:01:00Z") and "resolved -" in line for line in lines)
    assert "  page[0]:alertmanager: not sent yet" in lines
    history = lines[lines.index(next(line for line in lines if line.startswith("history"))) + 2]
    assert history.split()[:3] == ["2026-11-27T10:01:00Z", "checkout-gates", "Halted"]


def test_promoted_marks_no_step_and_shows_the_newest_five_history_entries(promoted: Driver) -> None:
    lines = render_status(view_of(promoted.rollout), now=promoted.now).splitlines()
    assert lines[0].startswith("payments/checkout-api  Promoted  step 6/6  canary 100%")
    assert not [line for line in lines if line.startswith("  > ")]
    assert "weights:  stable 0%  canary 100%" in lines
    title = next(i for i, line in enumerate(lines) if line.startswith("history"))
    assert lines[title] == f"history (newest first, 5 of {len(promoted.status.history)}):"
    rows = lines[title + 2 : title + 7]
    assert [row.split()[2] for row in rows] == ["Promoted", "StepAdvanced", "StepAdvanced", "StepAdvanced", "Approved"]
    assert rows[-1].split()[1] == "alice"
    assert len(lines) == title + 7


def test_colour_only_when_asked(halted: Driver) -> None:
    text = render_status(view_of(halted.rollout), now=halted.now, colour=True)
    assert "\x1b[31mHalted\x1b[0m" in text and "\x1b[31mFail" in text


@pytest.mark.parametrize("name", ["progressing", "halted", "promoted"])
def test_json_is_valid_and_states_the_same_facts(name: str, request: pytest.FixtureRequest) -> None:
    driver: Driver = request.getfixturevalue(name)
    view = view_of(driver.rollout)
    facts = json.loads(json.dumps(status_json(view, now=driver.now)))
    status = driver.status
    assert facts["phase"] == status.phase and facts["currentStep"] == status.current_step
    assert facts["weights"] == {"stable": status.weights.stable, "canary": status.weights.canary}
    assert facts["routerWeights"] == status.weights.to_wire()
    assert [s["step"] for s in facts["steps"]] == list(view.steps)
    assert [s["index"] for s in facts["steps"] if s["current"]] == ([] if name == "promoted" else [1])
    assert [(g["name"], g["verdict"], g["segment"]) for g in facts["gates"]] == [
        (g.name, g.verdict, g.segment) for g in status.gates
    ]
    assert [(e["actor"], e["action"]) for e in facts["history"]] == [(e.actor, e.action) for e in status.history[-5:]]
    if name == "halted":
        assert status.page is not None and facts["page"]["dedupKey"] == status.page.dedup_key
        assert facts["page"]["triggeredAt"] == "2026-11-27T10:01:00Z"
        assert {s["segment"]: s["verdict"] for s in facts["gates"][0]["segments"]} == {
            "provider=adyen": "Fail",
            "provider=stripe": "Fail",
        }
    else:
        assert facts["page"] is None


def test_pending_requests_are_shown() -> None:
    driver = _drive(3)
    driver.annotate({APPROVE: "bob"})
    view = view_of(driver.rollout)
    assert "  pending: approve by bob" in render_status(view, now=driver.now).splitlines()
    assert status_json(view, now=driver.now)["pending"] == [{"command": "approve", "actor": "bob"}]


def test_list_is_a_table_sorted_by_namespace_and_name(progressing: Driver, halted: Driver) -> None:
    other = _wire(halted.rollout, namespace="checkout", name="tax", creationTimestamp="2026-11-26T09:00:00Z")
    views = [view_of(_wire(progressing.rollout, creationTimestamp="2026-11-27T10:00:00Z")), view_of(other)]
    lines = render_list(views, now=progressing.now).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "STEP", "CANARY", "VERDICT", "AGE"]
    assert lines[1].split() == [
        "checkout",
        "tax",
        "Halted",
        "1/6",
        "5%",
        "Fail:",
        "auth-approval",
        "provider=adyen",
        "25h",
    ]
    assert lines[2].split() == ["payments", "checkout-api", "Progressing", "1/6", "5%", "Pass", "90s"]
    assert list_json(views, now=progressing.now)[0]["verdict"] == "Fail: auth-approval provider=adyen"
    assert render_list([], now=T0) == "no CheckoutRollouts found"


def test_approval_outcome_names_the_actor_and_the_move() -> None:
    driver = _drive(8)
    assert driver.status.phase == "AwaitingApproval"
    before = view_of(driver.rollout)
    driver.annotate({APPROVE: "alice"})
    driver.step(HEALTHY)
    outcome = request_outcome(before, view_of(driver.rollout), command="approve", actor="alice")
    assert outcome.applied
    assert outcome.line == "Approved by alice: step 2 -> step 4, canary 5% -> 25%; phase Progressing"


def test_the_first_of_two_approvals_is_counted_and_says_the_step_still_waits() -> None:
    steps = [
        {"setWeight": 5},
        {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
        {"approval": {"approvers": 2}},
        {"setWeight": 100},
    ]
    driver = Driver(CheckoutRollout.model_validate(rollout_doc(steps)))
    for _ in range(6):
        driver.step(HEALTHY)
    before = view_of(driver.rollout)
    driver.annotate({APPROVE: "alice"})
    driver.step(HEALTHY)
    outcome = request_outcome(before, view_of(driver.rollout), command="approve", actor="alice")
    assert outcome.applied
    assert outcome.line == "ApprovalRecorded by alice: at step 2, canary 5%; phase AwaitingApproval"


def test_approval_with_nothing_to_approve_is_ignored_with_the_reason(progressing: Driver) -> None:
    before = view_of(progressing.rollout)
    progressing.annotate({APPROVE: "alice"})
    progressing.step(HEALTHY)
    outcome = request_outcome(before, view_of(progressing.rollout), command="approve", actor="alice")
    assert not outcome.applied
    assert outcome.line == "Ignored: nothing awaits approval in phase Progressing"


def test_abort_outcome_and_a_request_that_left_no_trace(progressing: Driver) -> None:
    before = view_of(progressing.rollout)
    progressing.annotate({"gates.checkout.dev/abort": "bob"})
    progressing.step(HEALTHY)
    after = view_of(progressing.rollout)
    outcome = request_outcome(before, after, command="abort", actor="bob")
    assert outcome == outcome.__class__(True, "Aborted by bob: at step 1, canary 5% -> 0%; phase Aborted")
    silent = request_outcome(after, after, command="abort", actor="bob")
    assert not silent.applied and silent.line.startswith("Ignored:")


def test_step_labels_and_ages() -> None:
    assert step_label({"setWeight": 25}) == "setWeight 25%"
    assert step_label({"gate": {"pass": ["a", "b"], "window": "10m"}}) == "gate a, b for 10m"
    assert step_label({"approval": {}}) == "approval"
    assert step_label({"approval": {"reason": "finance sign-off"}}) == "approval (finance sign-off)"
    assert step_label({"pause": {"duration": "5m"}}) == "pause 5m"
    assert [age(T0 - timedelta(seconds=s), T0) for s in (5, 119, 600, 7300, 3 * 86400)] == [
        "5s",
        "119s",
        "10m",
        "2h",
        "3d",
    ]
    assert age(None, T0) == "-"


def test_control_characters_in_recorded_strings_never_reach_the_terminal(halted: Driver) -> None:
    """A status is whatever someone with write access made it: an ANSI escape (clear screen, a
    fake prompt, a terminal title) in a history reason, the message or an actor is shown escaped."""
    raw = _wire(halted.rollout)
    entry = dict(raw["status"]["history"][-1])
    entry.update(reason="looks fine\x1b[2J\x1b[1;1Hall gates Pass", actor="mallory\x1b]0;owned\x07")
    raw["status"]["history"].append(entry)
    raw["status"]["message"] = "halted\r\x1b[32mPromoted\x1b[0m"
    raw["status"]["gates"][0]["reason"] = "bad\x00reason\u202e"
    raw["metadata"]["annotations"] = {APPROVE: "eve\x1b[8m"}
    view = view_of(raw)
    for text in (render_status(view, now=halted.now), render_list([view], now=halted.now)):
        assert "\x1b" not in text and "\x00" not in text and "\r" not in text and "\u202e" not in text
        assert all(line.isprintable() for line in text.splitlines())
    text = render_status(view, now=halted.now)
    assert "looks fine\\x1b[2J\\x1b[1;1Hall gates Pass" in text
    assert "mallory\\x1b]0;owned\\x07" in text
    assert "halted \\x1b[32mPromoted\\x1b[0m" in text.splitlines()[1]
    assert "bad\\x00reason\\u202e" in text
    # Colour, when asked for, is still the CLI's own: it paints around the escaped text.
    coloured = render_status(view, now=halted.now, colour=True)
    assert "\x1b[31mHalted\x1b[0m" in coloured and "\x1b[2J" not in coloured


def test_a_release_shows_which_revision_each_side_runs() -> None:
    driver = _drive(2)
    revisions = Revisions(
        stable=Revision(hash="f92f23fe38", images=["checkout:v1"]),
        canary=Revision(hash="13ce60bcf0", images=["checkout:v2"]),
        canary_ready_at=T0,
        error="cannot scale Deployment payments/checkout-api: HTTP 403",
    )
    rollout = driver.rollout.model_copy(update={"status": driver.status.model_copy(update={"revisions": revisions})})
    lines = render_status(view_of(_wire(rollout)), now=driver.now).splitlines()
    assert "stable:   f92f23fe38 (checkout:v1)" in lines
    assert "canary:   13ce60bcf0 (checkout:v2), Ready" in lines
    assert "workload: cannot scale Deployment payments/checkout-api: HTTP 403" in lines
    plain = render_status(view_of(_wire(driver.rollout)), now=driver.now).splitlines()
    assert not [line for line in plain if line.startswith(("stable:", "canary:"))], "nothing without a workloadRef"
