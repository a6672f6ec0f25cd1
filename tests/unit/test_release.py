"""The workload's lifecycle in the pure core (rollout/release.py), against a Deployment that rolls.

``Cluster`` plays the Deployment controller: a scale or a copy takes effect at once, and pods
become Ready a few passes later (never, for a revision that cannot start). The end-to-end version
of these, on kube-apiserver with kwok, is tests/integration/test_release_testbed.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import CheckoutRolloutStatus, Weights
from checkout_gates.gates.observations import SignalReading
from checkout_gates.rollout.actions import (
    ConsumeAnnotation,
    PageOwner,
    RestoreRevision,
    ScaleCanary,
    SetStableRevision,
    SetWeights,
)
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.workload import DeploymentState, WorkloadState

from .rollouts import HEALTHY, T0, readings, rollout_doc, with_annotations, with_status

STEPS = [
    {"setWeight": 5},
    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
    {"setWeight": 50},
    {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
]


def release_rollout(**workload: Any) -> CheckoutRollout:
    document = rollout_doc(STEPS)
    document["spec"]["workloadRef"] = {"name": "checkout-api", **workload}
    return CheckoutRollout.model_validate(document)


@dataclass
class Side:
    revision: str
    replicas: int
    ready_in: int = 0  # passes until its pods are Ready


@dataclass
class Cluster:
    """The user's Deployment and the stable copy; revisions in ``broken`` never become Ready."""

    canary: Side = field(default_factory=lambda: Side("v1", 3))
    stable: Side | None = None
    broken: set[str] = field(default_factory=set)
    start_up: int = 2
    scaled: list[int] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    previous: str = ""  # the stable revision before the copy's current one (the copy keeps both)
    restored: list[str] = field(default_factory=list)
    authors: dict[str, str] = field(default_factory=dict)  # revision -> who admission stamped

    def state(self) -> WorkloadState:
        return WorkloadState(canary=self._state(self.canary), stable=self._state(self.stable) if self.stable else None)

    def _state(self, side: Side) -> DeploymentState:
        ready = side.ready_in <= 0 and side.revision not in self.broken
        return DeploymentState(
            revision=side.revision,
            images=(f"checkout:{side.revision}",),
            replicas=side.replicas,
            ready_replicas=side.replicas if ready else 0,
            ready=ready,
            changed_by=self.authors.get(side.revision, ""),
        )

    def tick(self) -> None:
        for side in (self.canary, self.stable):
            if side is not None:
                side.ready_in -= 1

    def apply(self, action: object) -> None:
        if isinstance(action, ScaleCanary):
            self.scaled.append(action.replicas)
            if action.replicas > self.canary.replicas:
                self.canary.ready_in = self.start_up
            self.canary.replicas = action.replicas
        elif isinstance(action, SetStableRevision):
            if action.revision != self.canary.revision:
                return  # the adapter copies only the revision it was asked for
            self.copies.append(action.revision)
            if self.stable is None or self.stable.revision != action.revision:
                self.previous = self.stable.revision if self.stable else ""
                kept = self.stable.replicas if self.stable is not None and action.keep_replicas else 0
                self.stable = Side(action.revision, max(kept, action.replicas), self.start_up)
            elif action.keep_replicas:  # a floor: an HPA sizes the copy above it
                if self.stable.replicas < action.replicas:
                    self.stable.ready_in = self.start_up
                self.stable.replicas = max(self.stable.replicas, action.replicas)
            else:
                self.stable.replicas = action.replicas

        elif isinstance(action, RestoreRevision):
            kept = {self.previous, self.stable.revision if self.stable else ""} - {""}
            if action.revision in kept and self.canary.revision != action.revision:
                self.restored.append(action.revision)
                self.set_image(action.revision)

    def set_image(self, revision: str) -> None:
        self.canary = replace(self.canary, revision=revision, ready_in=self.start_up)


class ReleaseDriver:
    """decide() on a clock with a cluster that carries out the workload actions and a router
    that confirms weights, the way the controller runs a pass."""

    def __init__(self, rollout: CheckoutRollout, cluster: Cluster | None = None, *, apply: bool = True) -> None:
        self.rollout = rollout
        self.cluster = cluster or Cluster()
        self.apply = apply
        self.now = T0
        self.actions: list[Any] = []
        self.weights_seen: list[tuple[int, bool]] = []  # (canary weight confirmed, canary Ready then)
        self.route_override: Weights | None = None  # a route someone else wrote (a GitOps sync)

    def step(self, obs: dict[str, SignalReading] | None = None, advance: float = 30.0) -> None:
        # The route as the router holds it: what the operator last had confirmed, or nothing yet.
        route = self.route_override or self.rollout.status.router_weights
        observations = Observations(readings=obs or {}, workload=self.cluster.state(), router_weights=route)
        decision = decide(self.rollout, observations, self.now)
        self.actions.extend(decision.actions)
        self.rollout = with_status(self.rollout, decision.status)
        consumed = {a.key for a in decision.actions if isinstance(a, ConsumeAnnotation)}
        if consumed:
            kept = {k: v for k, v in self.rollout.metadata.annotations.items() if k not in consumed}
            self.rollout = with_annotations(self.rollout, kept)
        if self.apply:
            for action in decision.actions:
                self.cluster.apply(action)
            applied = [a.weights for a in decision.actions if isinstance(a, SetWeights)]
            if applied:
                confirmed = {"router_target": applied[-1], "router_weights": applied[-1]}
                self.rollout = with_status(self.rollout, self.status.model_copy(update=confirmed))
                self.weights_seen.append((applied[-1].canary, self.cluster.state().canary.ready))
        self.cluster.tick()
        self.now += timedelta(seconds=advance)

    def run(self, passes: int, obs: dict[str, SignalReading] | None = None, advance: float = 30.0) -> None:
        for _ in range(passes):
            self.step(obs, advance)

    def until(self, phase: str, obs: dict[str, SignalReading] | None = None, limit: int = 60) -> None:
        for _ in range(limit):
            if self.status.phase == phase:
                return
            self.step(obs)
        raise AssertionError(f"never reached {phase}: {self.status.phase} {self.status.message}")

    @property
    def status(self) -> CheckoutRolloutStatus:
        return self.rollout.status

    def of(self, kind: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]


def exposed_at_5_percent(driver: ReleaseDriver) -> None:
    """Deploy v2 and run healthy passes until the canary takes its first 5%."""
    driver.cluster.set_image("v2")
    for _ in range(20):
        driver.step(HEALTHY)
        if driver.status.weights.canary == 5:
            return
    raise AssertionError(f"v2 never reached 5%: {driver.status.phase} {driver.status.message}")


def adopted() -> ReleaseDriver:
    driver = ReleaseDriver(release_rollout())
    driver.until("Promoted")
    return driver


def test_the_first_revision_is_adopted_as_stable_and_traffic_moves_only_once_the_copy_is_ready() -> None:
    driver = ReleaseDriver(release_rollout())
    driver.step()
    assert driver.of(SetStableRevision) == [SetStableRevision("v1", 3, driver.of(SetStableRevision)[0].reason)]
    assert not driver.of(SetWeights), "no weights before the stable copy runs"
    driver.until("Promoted")
    status = driver.status
    assert status.revisions is not None and status.revisions.stable is not None
    assert status.revisions.stable.hash == "v1" and status.revisions.canary is None
    assert status.weights == Weights(stable=100, canary=0) and status.router_target == status.weights
    assert driver.cluster.canary.replicas == 0 and driver.cluster.stable is not None
    assert driver.cluster.stable.replicas == 3, "stable keeps the Deployment's capacity"
    # Replayed pass by pass: the first weights are decided on an observation of a Ready copy.
    replay = ReleaseDriver(release_rollout())
    for _ in range(20):
        seen = replay.cluster.state()
        before = len(replay.actions)
        replay.step()
        if any(isinstance(a, SetWeights) for a in replay.actions[before:]):
            assert seen.stable is not None and seen.stable.ready and seen.stable.revision == "v1"
            break
    else:
        raise AssertionError("no weights were ever written")
    assert "adopted as stable" in status.history[-1].reason


def test_a_new_image_rolls_out_by_itself_and_promotion_makes_it_stable() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.history[-1].action == "Started"
    assert driver.status.revisions is not None and driver.status.revisions.canary is not None
    assert driver.status.revisions.canary.hash == "v2"
    driver.until("Promoted", HEALTHY)
    status = driver.status
    assert status.revisions is not None and status.revisions.stable is not None
    assert status.revisions.stable.hash == "v2" and status.revisions.canary is None
    assert status.weights == Weights(stable=100, canary=0)
    assert driver.cluster.stable is not None and driver.cluster.stable.revision == "v2"
    assert driver.cluster.canary.replicas == 0
    actions = [e.action for e in status.history]
    assert actions.index("CanaryReady") < actions.index("StepAdvanced") < actions.index("Promoting")
    assert all(ready for canary, ready in driver.weights_seen if canary > 0), "no traffic to an unready canary"
    # The order of the promotion: copy, then all traffic to stable, then the canary scaled down.
    last_copy = max(i for i, a in enumerate(driver.actions) if isinstance(a, SetStableRevision))
    to_stable = max(i for i, a in enumerate(driver.actions) if isinstance(a, SetWeights))
    scale_down = max(i for i, a in enumerate(driver.actions) if isinstance(a, ScaleCanary))
    assert last_copy < to_stable < scale_down


def test_an_edit_of_the_spec_after_promotion_changes_no_weight() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    driver.until("Promoted", HEALTHY)
    assert driver.status.revisions is not None and driver.status.revisions.stable is not None
    assert driver.status.revisions.stable.hash == "v2"
    mark = len(driver.actions)
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = [{"setWeight": 1}, *STEPS]
    document["metadata"]["generation"] += 1
    driver.rollout = CheckoutRollout.model_validate(document)
    driver.run(5, HEALTHY)
    assert driver.status.phase == "Promoted"
    assert not [a for a in driver.actions[mark:] if isinstance(a, SetWeights | ScaleCanary | SetStableRevision)]
    assert driver.status.history[-1].action == "SpecChanged"


def test_the_legacy_rollout_keeps_its_weights_on_an_edit_after_promotion() -> None:
    """Without a workloadRef the promoted canary carries 100%; an edit used to send 95% back."""
    document = rollout_doc(STEPS)
    driver = ReleaseDriver(CheckoutRollout.model_validate(document))
    driver.until("Promoted", HEALTHY)
    assert driver.status.weights.canary == 100
    mark = len(driver.actions)
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["analysis"]["interval"] = "10s"
    document["metadata"]["generation"] += 1
    driver.rollout = CheckoutRollout.model_validate(document)
    driver.run(5, HEALTHY)
    assert driver.status.phase == "Promoted" and driver.status.weights.canary == 100
    assert not [a for a in driver.actions[mark:] if isinstance(a, SetWeights)]


def test_a_regressed_revision_aborts_scales_the_canary_down_and_leaves_stable_alone() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.until("Progressing")
    for _ in range(20):
        driver.step(readings(duplicates=3))
        if driver.status.phase == "Aborted":
            break
    assert driver.status.phase == "Aborted"
    driver.run(3)
    assert driver.status.weights.canary == 0 and driver.cluster.canary.replicas == 0
    assert driver.cluster.stable is not None and driver.cluster.stable.revision == "v1"
    assert "v2" not in driver.cluster.copies, "a regressed revision is never copied to stable"
    assert driver.status.revisions is not None and driver.status.revisions.stable is not None
    assert driver.status.revisions.stable.hash == "v1"
    assert len({a.dedup_key for a in driver.of(PageOwner)}) == 1


def test_an_aborted_canary_is_kept_for_debugging_when_asked() -> None:
    driver = ReleaseDriver(release_rollout(onAbort="keep"))
    driver.until("Promoted")
    driver.cluster.set_image("v2")
    driver.run(6, HEALTHY)
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/abort": "erin"})
    driver.run(4)
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0
    assert driver.cluster.canary.replicas == 3


def test_a_canary_that_never_becomes_ready_halts_at_its_progress_deadline_with_one_page() -> None:
    driver = adopted()
    driver.cluster.broken.add("v2")
    driver.cluster.set_image("v2")
    driver.run(25, HEALTHY)  # 12.5 minutes at 30 s a pass, past the default 10m deadline
    status = driver.status
    assert status.phase == "Halted", status.message
    assert "did not become Ready" in status.halt_reason and "0/3 Ready after 10m" in status.halt_reason
    assert status.page is not None and "canary-not-ready" in status.page.dedup_key
    assert len({a.dedup_key for a in driver.of(PageOwner)}) == 1
    assert all(a.weights.canary == 0 for a in driver.of(SetWeights)), "never any traffic to it"
    halted_at = next(e.time for e in status.history if e.action == "Halted")
    started_at = next(e.time for e in status.history if e.action == "Started" and "v2" in e.reason)
    assert timedelta(minutes=10) <= halted_at - started_at < timedelta(minutes=11)


def test_a_revision_changed_mid_rollout_restarts_on_the_newest_from_zero() -> None:
    driver = adopted()
    exposed_at_5_percent(driver)
    assert driver.status.weights.canary == 5
    driver.cluster.set_image("v3")
    driver.step(HEALTHY)
    status = driver.status
    assert status.weights.canary == 0 and status.current_step == 0
    assert status.revisions is not None and status.revisions.canary is not None
    assert status.revisions.canary.hash == "v3" and status.revisions.canary_ready_at is None
    entry = status.history[-1]
    assert entry.action == "NewRevision" and "v3 replaces v2" in entry.reason
    driver.until("Promoted", HEALTHY)
    assert driver.cluster.stable is not None and driver.cluster.stable.revision == "v3"
    assert "v2" not in driver.cluster.copies


def test_going_back_to_the_stable_revision_mid_rollout_cancels_it() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.run(8, HEALTHY)
    driver.cluster.set_image("v1")
    driver.run(3)
    status = driver.status
    assert status.phase == "Promoted" and status.weights.canary == 0
    assert status.history[-1].action in ("Cancelled",) or "Cancelled" in [e.action for e in status.history]
    assert driver.cluster.canary.replicas == 0


def test_between_rollouts_a_canary_scaled_up_by_gitops_is_scaled_down_again() -> None:
    driver = adopted()
    driver.cluster.canary.replicas = 3  # Argo CD re-applied replicas: 3 from Git
    driver.step()
    assert driver.of(ScaleCanary)[-1].replicas == 0 and driver.cluster.canary.replicas == 0


def test_a_repeated_decision_is_the_same_decision_at_every_point_of_a_release() -> None:
    """Feeding a status back with nothing carried out (a crash after the status write) decides
    the same status again and re-states the same targets: nothing doubles."""
    driver = adopted()
    driver.cluster.set_image("v2")
    for _ in range(40):
        observations = Observations(readings=HEALTHY, workload=driver.cluster.state())
        first = decide(driver.rollout, observations, driver.now)
        again = decide(with_status(driver.rollout, first.status), observations, driver.now)
        assert again.status == first.status
        targets = {a for a in first.actions if isinstance(a, ScaleCanary | SetStableRevision)}
        assert {a for a in again.actions if isinstance(a, ScaleCanary | SetStableRevision)} == targets
        driver.step(HEALTHY)
        if driver.status.phase == "Promoted":
            break
    assert driver.status.phase == "Promoted"


def test_actions_lost_in_a_crash_are_stated_again_until_done() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.apply = False  # the operator dies after every status write, before any action
    mark = len(driver.actions)
    driver.run(3, HEALTHY)
    lost = [a.replicas for a in driver.actions[mark:] if isinstance(a, ScaleCanary)]
    assert driver.cluster.canary.replicas == 0 and lost == [3, 3, 3]
    driver.apply = True
    driver.until("Promoted", HEALTHY)
    assert driver.cluster.stable is not None and driver.cluster.stable.revision == "v2"


def test_steps_never_run_while_the_workload_cannot_be_read() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    rollout = driver.rollout
    for index in range(10):
        decision = decide(
            rollout, Observations(workload=None, workload_error="deployments forbidden"), T0 + timedelta(hours=index)
        )
        rollout = with_status(rollout, decision.status)
        assert not [a for a in decision.actions if isinstance(a, SetWeights) and a.weights.canary > 0]
    assert rollout.status.revisions is not None and rollout.status.revisions.error == "deployments forbidden"


def test_adoption_of_a_deployment_that_cannot_be_read_halts_at_the_deadline_naming_the_error() -> None:
    rollout = release_rollout(progressDeadline="1m")
    pages = []
    for index in range(6):
        observations = Observations(workload=None, workload_error="Deployment payments/checkout-api not found")
        decision = decide(rollout, observations, T0 + timedelta(seconds=20 * index))
        rollout = with_status(rollout, decision.status)
        assert not [a for a in decision.actions if isinstance(a, SetWeights)], "no weights claimed"
        pages += [a for a in decision.actions if isinstance(a, PageOwner)]
    status = rollout.status
    assert status.phase == "Halted"
    assert "adopting Deployment checkout-api as the stable revision" in status.halt_reason
    assert "not found" in status.halt_reason and "no traffic was moved" in status.halt_reason
    assert len({page.dedup_key for page in pages}) == 1
    # On-call retries: the wait starts again, and still no weights before the copy is Ready.
    rollout = with_annotations(rollout, {"gates.checkout.dev/retry": "erin"})
    decision = decide(rollout, Observations(workload=None, workload_error="still"), T0 + timedelta(minutes=5))
    assert decision.status.phase == "Progressing"
    assert not [a for a in decision.actions if isinstance(a, SetWeights)]


UNDO = "gates.checkout.dev/undo"


def promoted_on_v2() -> ReleaseDriver:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    driver.until("Promoted", HEALTHY)
    return driver


def stable_of(driver: ReleaseDriver) -> str:
    revisions = driver.status.revisions
    assert revisions is not None and revisions.stable is not None
    return revisions.stable.hash


def test_undo_of_a_promoted_rollout_rolls_the_previous_revision_out_through_the_gates() -> None:
    driver = promoted_on_v2()
    assert driver.status.revisions is not None and driver.status.revisions.previous is not None
    assert driver.status.revisions.previous.hash == "v1"
    driver.rollout = with_annotations(driver.rollout, {UNDO: "erin"})
    driver.step()
    requested = next(e for e in driver.status.history if e.action == "UndoRequested")
    assert requested.actor == "erin" and "goes back to revision v1" in requested.reason
    assert driver.cluster.restored == ["v1"] and driver.cluster.canary.revision == "v1"
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.history[-1].action == "Started"
    driver.until("Promoted", HEALTHY)
    assert stable_of(driver) == "v1" and driver.cluster.stable is not None and driver.cluster.stable.revision == "v1"
    actions = [e.action for e in driver.status.history]
    assert actions.count("CanaryReady") == 2, "v1 went through the gates again, like any revision"


def test_undo_mid_rollout_takes_the_deployment_back_to_stable_and_cancels() -> None:
    driver = adopted()
    exposed_at_5_percent(driver)
    driver.rollout = with_annotations(driver.rollout, {UNDO: "erin"})
    driver.run(4)
    status = driver.status
    assert status.phase == "Promoted" and status.weights.canary == 0 and stable_of(driver) == "v1"
    assert "Cancelled" in [e.action for e in status.history]
    assert driver.cluster.canary.replicas == 0 and "v2" not in driver.cluster.copies


def test_undo_with_nothing_to_go_back_to_is_ignored_with_the_reason() -> None:
    driver = adopted()
    driver.rollout = with_annotations(driver.rollout, {UNDO: "erin"})
    driver.step()
    entry = driver.status.history[-1]
    assert entry.action == "Ignored" and "no earlier stable revision" in entry.reason
    legacy = ReleaseDriver(CheckoutRollout.model_validate(rollout_doc(STEPS, annotations={UNDO: "erin"})))
    legacy.step()
    assert any("undo needs a workloadRef" in e.reason for e in legacy.status.history)


def test_an_undo_lost_in_a_crash_is_stated_again() -> None:
    driver = promoted_on_v2()
    driver.rollout = with_annotations(driver.rollout, {UNDO: "erin"})
    driver.apply = False
    driver.run(2)
    assert driver.cluster.restored == [] and len(driver.of(RestoreRevision)) == 2
    driver.apply = True
    driver.step()
    assert driver.cluster.restored == ["v1"]
    mark = len(driver.actions)
    driver.run(3)
    assert driver.status.revisions is not None and driver.status.revisions.undo is None
    assert not [a for a in driver.actions[mark:] if isinstance(a, RestoreRevision)], "spent once the Deployment moved"


def test_a_stable_copy_deleted_between_rollouts_is_re_created_from_the_deployment() -> None:
    driver = promoted_on_v2()
    driver.cluster.stable = None  # kubectl delete deployment checkout-api-stable
    driver.step()
    recreated = driver.of(SetStableRevision)[-1]
    assert recreated.revision == "v2" and recreated.replicas == 3
    assert driver.cluster.stable is not None and driver.cluster.stable.revision == "v2"
    assert driver.status.phase == "Promoted"


def test_a_stable_copy_deleted_mid_rollout_halts_and_pages() -> None:
    driver = adopted()
    exposed_at_5_percent(driver)
    driver.cluster.stable = None
    mark = len(driver.actions)
    driver.step(HEALTHY)
    status = driver.status
    assert status.phase == "Halted" and "checkout-api-stable is gone" in status.halt_reason
    assert status.page is not None and "stable-missing" in status.page.dedup_key
    assert not [a for a in driver.actions[mark:] if isinstance(a, SetStableRevision)], "v2 is never copied unpromoted"


def test_with_scale_with_weight_the_canary_grows_with_its_weight_capacity_first() -> None:
    driver = ReleaseDriver(release_rollout(scaleWithWeight={"minReplicas": 1}))
    driver.cluster.canary.replicas = 10
    driver.until("Promoted")
    assert driver.cluster.stable is not None and driver.cluster.stable.replicas == 10
    driver.cluster.set_image("v2")
    seen: list[tuple[int, int, bool]] = []  # (weight confirmed, canary replicas, Ready)
    for _ in range(60):
        driver.step(HEALTHY)
        state = driver.cluster.state().canary
        seen.append((driver.status.weights.canary, state.replicas, state.ready))
        if driver.status.phase == "Promoted":
            break
    assert driver.status.phase == "Promoted" and stable_of(driver) == "v2"
    replicas_at: dict[int, int] = {}
    for weight, replicas, _ in seen:
        replicas_at.setdefault(weight, replicas)  # when the weight was first in force
    assert replicas_at[5] == 1, "5% of 10 replicas needs one pod, not ten"
    assert replicas_at[50] == 5
    raised = [(w, r, ok) for (before, _, _), (w, r, ok) in itertools.pairwise(seen) if w > before]
    assert raised and all(ok and r >= -(-10 * w // 100) for w, r, ok in raised), "Ready capacity, then the weight"
    scaled = [a.replicas for a in driver.of(ScaleCanary)]
    assert scaled[scaled.index(1) :][:2] == [1, 5], "grown before the weight moved"


def test_a_canary_that_cannot_grow_for_its_next_weight_halts_with_exposure_held() -> None:
    driver = ReleaseDriver(release_rollout(scaleWithWeight={"minReplicas": 1}, progressDeadline="2m"))
    driver.cluster.canary.replicas = 10
    driver.until("Promoted")
    driver.cluster.set_image("v2")
    for _ in range(12):
        driver.step(HEALTHY)
        if driver.status.weights.canary == 5 and driver.status.current_step == 2:
            break
    driver.cluster.broken.add("v2")  # the new pods never become Ready (no room on the nodes)
    driver.run(12, HEALTHY)
    status = driver.status
    assert status.phase == "Halted" and "did not grow to 5 Ready replicas for 50%" in status.halt_reason
    assert status.weights.canary == 5 and status.page is not None and "canary-capacity" in status.page.dedup_key


# --- the adversarial review's sequences -----------------------------------------------------------


def test_a_failed_adoption_holds_even_with_on_halt_abort_and_never_routes_to_the_empty_stable_side() -> None:
    document = rollout_doc(STEPS, on_halt="abort")
    document["spec"]["workloadRef"] = {"name": "checkout-api", "progressDeadline": "1m"}
    rollout = CheckoutRollout.model_validate(document)
    for index in range(6):
        decision = decide(rollout, Observations(workload_error="quota exceeded"), T0 + timedelta(seconds=20 * index))
        rollout = with_status(rollout, decision.status)
        assert not [a for a in decision.actions if isinstance(a, SetWeights)]
    assert rollout.status.phase == "Halted", "held, not aborted: an abort would send 100% to a Service with no pods"
    acknowledged = decide(
        with_annotations(rollout, {"gates.checkout.dev/abort": "erin"}), Observations(), T0 + timedelta(minutes=3)
    )
    assert acknowledged.status.phase == "Halted" and acknowledged.status.page is not None
    assert acknowledged.status.page.resolved_at is not None, "on-call's abort acknowledges the page"
    assert not [a for a in acknowledged.actions if isinstance(a, SetWeights)]
    rollout = with_annotations(rollout, {"gates.checkout.dev/retry": "erin"})
    retried = decide(rollout, Observations(workload_error="quota exceeded"), T0 + timedelta(minutes=5))
    assert retried.status.phase == "Progressing" and retried.status.current_step == len(STEPS), "adoption again"


def test_a_revision_arriving_before_the_promotion_copy_is_made_rolls_out_instead() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    for _ in range(40):
        driver.step(HEALTHY)
        if driver.status.revisions is not None and driver.status.revisions.promoting:
            break
    assert driver.status.revisions is not None and driver.status.revisions.promoting
    driver.cluster.stable = Side("v1", 3)  # the copy was not made (say a webhook refused it)
    driver.cluster.set_image("v3")
    driver.apply = False
    driver.step(HEALTHY)
    status = driver.status
    assert status.weights.canary == 0 and status.revisions is not None and status.revisions.canary is not None
    assert status.revisions.canary.hash == "v3" and not status.revisions.promoting
    assert "before its promotion" in status.history[-1].reason
    driver.apply = True
    driver.until("Promoted", HEALTHY)
    assert stable_of(driver) == "v3"
    assert not [e for e in driver.status.history if e.action == "Promoted" and "v2" in e.reason]


def test_a_revision_arriving_after_the_copy_was_made_gets_no_traffic_and_rolls_out_after() -> None:
    cluster = Cluster(start_up=6)  # the copy's rolling update takes a while
    driver = ReleaseDriver(release_rollout(), cluster)
    driver.until("Promoted")
    driver.cluster.set_image("v2")
    driver.step()
    for _ in range(60):
        driver.step(HEALTHY)
        stable = driver.cluster.stable
        if stable is not None and stable.revision == "v2":
            break
    assert driver.status.phase == "Progressing" and driver.status.weights.canary == 50, "copying, canary at 50%"
    driver.cluster.set_image("v3")
    driver.step(HEALTHY)
    assert driver.status.weights.canary == 0, "v3 is unvetted: no traffic while v2 finishes its promotion"
    driver.until("Promoted", HEALTHY)
    assert stable_of(driver) == "v2"
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.revisions is not None
    assert driver.status.revisions.canary is not None and driver.status.revisions.canary.hash == "v3"


def test_a_route_put_back_by_gitops_after_promotion_is_reasserted_before_the_canary_shrinks() -> None:
    driver = adopted()
    driver.cluster.canary.replicas = 3  # a sync put both the replicas and the route back
    driver.route_override = Weights(stable=0, canary=100)
    mark = len(driver.actions)
    driver.step()
    actions = driver.actions[mark:]
    assert [a.weights for a in actions if isinstance(a, SetWeights)] == [Weights(stable=100, canary=0)]
    assert not [a for a in actions if isinstance(a, ScaleCanary)], "not while the route still sends it traffic"
    driver.route_override = None
    driver.step()
    assert driver.of(ScaleCanary)[-1].replicas == 0


def test_a_deployment_deleted_mid_rollout_aborts_its_traffic_and_pages() -> None:
    driver = adopted()
    exposed_at_5_percent(driver)
    rollout = driver.rollout
    gone = Observations(workload_error="Deployment payments/checkout-api not found", workload_missing=True)
    decision = decide(rollout, gone, driver.now)
    assert decision.status.phase == "Aborted" and decision.status.weights.canary == 0
    assert decision.status.page is not None and "canary-gone" in decision.status.page.dedup_key


def test_a_new_image_during_adoption_is_not_copied_ungated() -> None:
    driver = ReleaseDriver(release_rollout())
    for _ in range(30):
        driver.step()
        copy = driver.cluster.stable
        if copy is not None and copy.ready_in <= 0 and driver.status.router_target is not None:
            break
    driver.cluster.set_image("v2")  # weights already on the copy (v1), the Deployment not yet at 0
    driver.until("Promoted")
    assert stable_of(driver) == "v1" and driver.cluster.copies == ["v1"]
    driver.step()
    assert driver.status.phase == "Progressing", "v2 rolls out through the gates"


def test_a_new_revision_after_a_halt_resolves_the_halts_page_so_no_page_is_left_open_under_another() -> None:
    driver = adopted()
    driver.cluster.broken.add("v2")
    driver.cluster.set_image("v2")
    driver.run(25, HEALTHY)
    assert driver.status.phase == "Halted" and driver.status.page is not None
    first = driver.status.page.dedup_key
    driver.cluster.set_image("v3")
    driver.step(HEALTHY)
    assert driver.status.page is not None and driver.status.page.resolved_at is not None
    assert driver.status.page.dedup_key == first and "superseded by revision v3" in driver.status.history[-2].reason


def test_a_legacy_rollout_that_gains_a_workload_ref_adopts_the_deployment() -> None:
    driver = ReleaseDriver(CheckoutRollout.model_validate(rollout_doc(STEPS)))
    driver.until("Promoted", HEALTHY)
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["workloadRef"] = {"name": "checkout-api"}
    document["metadata"]["generation"] += 1
    driver.rollout = CheckoutRollout.model_validate(document)
    driver.step()
    assert driver.status.phase == "Progressing" and "adopting" in driver.status.history[-1].reason
    driver.until("Promoted")
    assert stable_of(driver) == "v1"


def test_resuming_after_a_pause_longer_than_the_deadline_does_not_halt_at_once() -> None:
    driver = adopted()
    driver.cluster.set_image("v2")
    driver.step()
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/pause": "erin"})
    driver.run(2)
    assert driver.status.phase == "Paused"
    driver.run(30, advance=60)  # half an hour paused
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/approve": "erin"})
    driver.run(3, HEALTHY)
    assert driver.status.phase == "Progressing", driver.status.halt_reason


def test_an_undo_never_overwrites_a_newer_change_and_gives_up_at_the_deadline() -> None:
    driver = promoted_on_v2()
    driver.rollout = with_annotations(driver.rollout, {UNDO: "erin"})
    driver.apply = False
    driver.step()
    restores = driver.of(RestoreRevision)
    assert restores[-1].replacing == "v2", "only while the Deployment still has v2"
    driver.run(25)  # never carried out (say the template was too large to keep): 12 minutes
    assert driver.status.revisions is not None and driver.status.revisions.undo is None
    assert "UndoFailed" in [e.action for e in driver.status.history]


def test_an_abort_while_the_copy_takes_the_new_revision_is_refused_with_the_reason() -> None:
    cluster = Cluster(start_up=6)
    driver = ReleaseDriver(release_rollout(), cluster)
    driver.until("Promoted")
    driver.cluster.set_image("v2")
    driver.step()
    for _ in range(60):
        driver.step(HEALTHY)
        if driver.status.revisions is not None and driver.status.revisions.promoting:
            break
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/abort": "erin"})
    driver.step()
    ignored = next(e for e in reversed(driver.status.history) if e.action == "Ignored")
    assert "wait for Promoted, then undo" in ignored.reason
    driver.until("Promoted")
    assert stable_of(driver) == "v2"
