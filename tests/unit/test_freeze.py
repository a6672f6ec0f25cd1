"""CheckoutFreeze: the windows (rollout/freeze.py), what a freeze holds in a rollout, break-glass,
and its CRD. The operator against kube-apiserver is tests/integration/test_freeze_testbed.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from checkout_gates.api.crd import freeze_crd_yaml
from checkout_gates.api.freeze import CheckoutFreezeSpec
from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.cli.main import main
from checkout_gates.controller.freezes import ClusterFreezes
from checkout_gates.rollout.actions import Notify, SetWeights
from checkout_gates.rollout.freeze import Active, Freeze, active
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.plan import next_pass_delay
from tests.unit.bad_specs import REPO

from .rollouts import HEALTHY, T0, make_rollout, rollout_doc, with_annotations, with_status

BREAK = "gates.checkout.dev/break-freeze"
REASON = "gates.checkout.dev/reason"


def first(freezes: list[Freeze], namespace: str, now: datetime) -> Active | None:
    found = active(freezes, namespace, now)
    return found[0] if found else None


def freeze(name: str = "peak", **spec: Any) -> Freeze:
    return Freeze(name, CheckoutFreezeSpec.model_validate({"reason": "Black Friday peak", **spec}))


def window(start: datetime, minutes: float) -> dict[str, str]:
    return {"start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}


# --- windows --------------------------------------------------------------------------------------


def test_a_fixed_window_holds_from_its_start_up_to_its_end() -> None:
    peak = freeze(windows=[window(T0, 60)])
    assert first([peak], "payments", T0 - timedelta(seconds=1)) is None
    found = first([peak], "payments", T0)
    assert found is not None and found.until == T0 + timedelta(minutes=60) and found.name == "peak"
    assert first([peak], "payments", T0 + timedelta(minutes=60)) is None


def test_a_recurring_window_is_in_its_time_zone_across_midnight_and_daylight_saving() -> None:
    # Fridays 22:00 to 02:00 Berlin time; 2026-03-27 is a Friday (CET, +01:00), 2026-03-28/29 DST starts.
    nightly = freeze(recurring=[{"days": ["Fri"], "from": "22:00", "to": "02:00", "timeZone": "Europe/Berlin"}])
    friday_2230 = datetime(2026, 3, 27, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    found = first([nightly], "payments", friday_2230)
    assert found is not None and found.until == datetime(2026, 3, 28, 1, 0, tzinfo=UTC)  # 02:00 CET
    saturday_0130 = datetime(2026, 3, 28, 0, 30, tzinfo=UTC)  # 01:30 Saturday in Berlin: still Friday's window
    assert first([nightly], "payments", saturday_0130) is not None
    assert first([nightly], "payments", datetime(2026, 3, 28, 1, 0, tzinfo=UTC)) is None
    assert first([nightly], "payments", datetime(2026, 3, 26, 21, 30, tzinfo=UTC)) is None, "a Thursday"
    # After the switch to CEST (+02:00) the same local times are an hour earlier in UTC.
    april = first([nightly], "payments", datetime(2026, 4, 3, 20, 30, tzinfo=UTC))
    assert april is not None and april.until == datetime(2026, 4, 4, 0, 0, tzinfo=UTC)


def test_a_freeze_for_some_namespaces_holds_only_their_rollouts() -> None:
    refunds = freeze(windows=[window(T0, 60)], namespaces=["refunds"])
    assert first([refunds], "payments", T0) is None and first([refunds], "refunds", T0) is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "at least one window"),
        ({"windows": [{"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T09:00:00Z"}]}, "is not after start"),
        ({"windows": [{"start": "2026-11-27T10:00:00", "end": "2026-11-27T11:00:00Z"}]}, "timezone"),
        (
            {"recurring": [{"days": ["Fri"], "from": "22:00", "to": "02:00", "timeZone": "Europe/Berlinn"}]},
            "Europe/Berlin",
        ),
        ({"recurring": [{"days": ["Friday"], "from": "22:00", "to": "02:00"}]}, "'Mon'"),
        ({"recurring": [{"days": ["Fri"], "from": "25:00", "to": "02:00"}]}, "pattern"),
    ],
)
def test_bad_freezes_are_refused_with_the_field_and_the_reason(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CheckoutFreezeSpec.model_validate({"reason": "peak", **spec})
    assert message in str(caught.value)


def test_the_freeze_crd_is_committed_current_and_printed_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    committed = (REPO / "crds" / "checkoutfreezes.gates.checkout.dev.yaml").read_text(encoding="utf-8")
    assert freeze_crd_yaml() == committed, "run `make crd` and commit it"
    assert main(["crd", "--freeze"]) == 0
    assert capsys.readouterr().out == committed


# --- what it holds ----------------------------------------------------------------------------------


class FreezeDriver:
    def __init__(self, rollout: CheckoutRollout, freezes: list[Freeze], error: str | None = None) -> None:
        self.rollout, self.freezes, self.error = rollout, freezes, error
        self.now = T0
        self.actions: list[Any] = []

    def step(self, readings: Any = HEALTHY, annotations: dict[str, str] | None = None) -> None:
        if annotations is not None:
            self.rollout = with_annotations(self.rollout, annotations)
        for _ in range(3):  # like the controller: a confirmed weight passes again at once
            observations = Observations(
                readings=readings, freezes=tuple(self.freezes), freezes_error=self.error,
                router_weights=self.rollout.status.router_target,
            )  # fmt: skip
            decision = decide(self.rollout, observations, self.now)
            self.actions.extend(decision.actions)
            self.rollout = with_status(self.rollout, decision.status)
            consumed = {
                a.key for a in decision.actions if hasattr(a, "key") and type(a).__name__ == "ConsumeAnnotation"
            }
            if consumed:
                kept = {k: v for k, v in self.rollout.metadata.annotations.items() if k not in consumed}
                self.rollout = with_annotations(self.rollout, kept)
            applied = [a.weights for a in decision.actions if isinstance(a, SetWeights)]
            if not applied:
                break
            confirmed = {"router_target": applied[-1], "router_weights": applied[-1]}
            self.rollout = with_status(self.rollout, self.rollout.status.model_copy(update=confirmed))
            readings = {}
        self.now += timedelta(seconds=30)


def test_a_freeze_holds_a_progressing_rollout_at_its_weight_and_lets_it_go_on_when_it_ends() -> None:
    driver = FreezeDriver(make_rollout(), [])
    driver.step()
    assert driver.rollout.status.weights.canary == 5
    driver.freezes = [freeze(windows=[window(driver.now, 10)])]
    for _ in range(10):
        driver.step()
    status = driver.rollout.status
    assert status.phase == "AwaitingApproval", "gates and approval steps go on in a freeze"
    driver.step(annotations={"gates.checkout.dev/approve": "alice"})
    for _ in range(4):
        driver.step()
    status = driver.rollout.status
    assert status.weights.canary == 5 and status.freeze is not None and status.freeze.name == "peak"
    assert status.message.startswith("Frozen until ") and "Black Friday peak" in status.message
    assert [e.action for e in status.history].count("Frozen") == 1
    for _ in range(16):  # the window ends
        driver.step()
    status = driver.rollout.status
    assert status.freeze is None and status.weights.canary > 5
    assert "FreezeEnded" in [e.action for e in status.history]


def test_an_abort_still_works_in_a_freeze() -> None:
    driver = FreezeDriver(make_rollout(), [])
    driver.step()
    driver.freezes = [freeze(windows=[window(driver.now, 60)])]
    driver.step()
    driver.step(annotations={"gates.checkout.dev/abort": "bob"})
    assert driver.rollout.status.phase == "Aborted" and driver.rollout.status.weights.canary == 0


def test_break_glass_needs_a_reason_lets_exposure_grow_and_is_paged() -> None:
    driver = FreezeDriver(
        CheckoutRollout.model_validate(rollout_doc([{"setWeight": 5}, {"setWeight": 50}, {"setWeight": 100}])), []
    )
    driver.freezes = [freeze(windows=[window(driver.now, 60)])]
    driver.step()
    assert driver.rollout.status.weights.canary == 0, "the first step grows exposure too"
    driver.step(annotations={BREAK: "alice"})
    assert driver.rollout.status.weights.canary == 0 and "needs a reason" in driver.rollout.status.history[-1].reason
    driver.step(annotations={BREAK: "alice", REASON: "the 3-D Secure fix is the peak's fix"})
    for _ in range(4):
        driver.step()
    status = driver.rollout.status
    assert status.phase == "Promoted" and status.freeze is None
    broken = [e for e in status.history if e.action == "FreezeBroken"]
    assert len(broken) == 1 and broken[0].actor == "alice"
    sent = [a for a in driver.actions if isinstance(a, Notify) and a.prefix == "page"]
    assert sent and "freeze peak broken by alice" in sent[0].summary


def test_freezes_that_cannot_be_read_hold_exposure_and_say_why() -> None:
    driver = FreezeDriver(make_rollout(), [], error="cannot list CheckoutFreezes: HTTP 403 Forbidden")
    driver.step()
    status = driver.rollout.status
    assert status.weights.canary == 0 and status.freeze is not None and "HTTP 403" in status.freeze.reason
    driver.error = None
    driver.step()
    assert driver.rollout.status.weights.canary == 5


def test_a_break_is_for_its_own_freeze_and_window_and_survives_a_failed_list() -> None:
    """alice breaks "peak"; a second, shorter freeze still holds; one failed list of the freezes
    does not take the break back; and a later window of "peak" holds again."""
    steps = [{"setWeight": 5}, {"setWeight": 50}, {"setWeight": 100}]
    driver = FreezeDriver(CheckoutRollout.model_validate(rollout_doc(steps)), [])
    start = driver.now
    driver.freezes = [freeze(windows=[window(start, 60), window(start + timedelta(hours=2), 60)])]
    driver.step()
    driver.step(annotations={BREAK: "alice", REASON: "the peak's own fix"})
    assert driver.rollout.status.freeze is None and driver.rollout.status.weights.canary > 0
    driver.freezes.append(freeze("month-end", windows=[window(start, 30)]))
    driver.step()
    status = driver.rollout.status
    assert status.freeze is not None and status.freeze.name == "month-end", "another freeze still holds"
    driver.freezes = driver.freezes[:1]
    driver.error = "cannot list CheckoutFreezes: HTTP 429"
    driver.step()
    driver.error = None
    driver.step()
    assert driver.rollout.status.freeze is None, "the failed list did not take alice's break back"


def test_promote_full_in_a_freeze_is_refused_rather_than_left_to_run_unattended() -> None:
    driver = FreezeDriver(make_rollout(), [])
    driver.step()
    driver.freezes = [freeze(windows=[window(driver.now, 60)])]
    driver.step()
    driver.step(annotations={"gates.checkout.dev/promote-full": "alice", REASON: "go"})
    status = driver.rollout.status
    assert status.history[-1].action == "Ignored" and "break-freeze first" in status.history[-1].reason


def test_a_break_given_as_the_window_begins_finds_its_freeze() -> None:
    driver = FreezeDriver(make_rollout(), [])
    driver.step()
    driver.freezes = [freeze(windows=[window(driver.now, 60)])]
    driver.step(annotations={BREAK: "alice", REASON: "the fix"})
    assert [e.action for e in driver.rollout.status.history].count("FreezeBroken") == 1


def test_a_freeze_this_operator_cannot_read_holds_only_its_own_namespaces_and_can_be_broken() -> None:
    unreadable = Freeze(
        "typo", None, "spec.recurring.0.timeZone: 'Europe/Berln' is not a known time zone", ("refunds",)
    )
    assert active([unreadable], "payments", T0) == []
    driver = FreezeDriver(CheckoutRollout.model_validate(rollout_doc()), [unreadable])
    driver.rollout = driver.rollout.model_copy(
        update={"metadata": driver.rollout.metadata.model_copy(update={"namespace": "refunds"})}
    )
    driver.step()
    status = driver.rollout.status
    assert status.freeze is not None and "Europe/Berln" in status.freeze.reason and status.weights.canary == 0
    driver.step(annotations={BREAK: "alice", REASON: "the freeze is a typo; the fix must ship"})
    assert driver.rollout.status.weights.canary == 5


def test_a_frozen_rollout_does_not_pass_again_at_once_but_by_the_windows_end() -> None:
    steps = [{"setWeight": 5}, {"setWeight": 50}]
    driver = FreezeDriver(CheckoutRollout.model_validate(rollout_doc(steps)), [freeze(windows=[window(T0, 10)])])
    driver.step()
    status = driver.rollout.status
    assert status.freeze is not None and status.phase == "Progressing" and status.weights.canary == 0
    decided_at = driver.now - timedelta(seconds=30)  # the driver's clock moved on after the pass
    delay = next_pass_delay(driver.rollout, decided_at, failed=False)
    assert 1 <= delay <= (status.freeze.until - decided_at).total_seconds(), delay


# --- the reader --------------------------------------------------------------------------------------


class FakeList:
    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, 0

    def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return type("Response", (), {"data": json.dumps(self.answer).encode()})()


def reader(answer: Any, clock: list[float]) -> tuple[ClusterFreezes, FakeList]:
    freezes = ClusterFreezes(ApiClient(), clock=lambda: clock[0])
    fake = FakeList(answer)
    freezes._api = fake
    return freezes, fake


def test_the_reader_lists_once_per_few_seconds_and_tells_a_missing_crd_from_a_refusal() -> None:
    clock = [100.0]
    good = {"items": [{"metadata": {"name": "peak"}, "spec": {"reason": "peak", "windows": [window(T0, 60)]}}]}
    freezes, fake = reader(good, clock)
    found, error = freezes.read()
    assert [f.name for f in found] == ["peak"] and error is None
    freezes.read()
    assert fake.calls == 1, "cached"
    clock[0] += 6
    freezes.read()
    assert fake.calls == 2
    assert reader(ApiException(status=404), clock)[0].read() == ((), None), "no CRD: no freeze"
    found, error = reader(ApiException(status=403, reason="Forbidden"), clock)[0].read()
    assert found == () and error is not None and "HTTP 403" in error


def test_the_reader_keeps_a_freeze_it_cannot_read_as_one_of_its_namespaces() -> None:
    typo = {
        "reason": "peak",
        "recurring": [{"days": ["Fri"], "from": "22:00", "to": "02:00", "timeZone": "Europe/Berln"}],
    }
    answer = {"items": [{"metadata": {"name": "typo"}, "spec": {**typo, "namespaces": ["refunds"]}}]}
    (found,), error = reader(answer, [0.0])[0].read()
    assert error is None and found.spec is None and found.namespaces == ("refunds",)
    assert "timeZone" in found.error and "Europe/Berlin" in found.error


def test_a_passing_list_failure_serves_the_last_good_list_for_a_minute_then_fails_closed() -> None:
    clock = [0.0]
    good = {"items": [{"metadata": {"name": "peak"}, "spec": {"reason": "peak", "windows": [window(T0, 60)]}}]}
    freezes, fake = reader(good, clock)
    assert freezes.read()[1] is None
    fake.answer = ApiException(status=429, reason="Too Many Requests")
    clock[0] += 10
    found, error = freezes.read()
    assert error is None and [f.name for f in found] == ["peak"]
    clock[0] += 60
    found, error = freezes.read()
    assert found == () and error is not None and "HTTP 429" in error
