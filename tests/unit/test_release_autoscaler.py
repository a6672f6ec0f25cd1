"""A Deployment with an HPA (workloadRef.autoscalerRef): its replicas are respected, never fought.

``HpaCluster`` adds to test_release.py's Cluster what the HPA controller does between passes:
it leaves a Deployment at 0 alone (an HPA never wakes a target at 0); otherwise it sizes each side
for its share of the load (``load`` replicas for all of checkout), within [min, max], at once when
that means more pods and only after ``stabilization`` passes of wanting fewer (the HPA's
scale-down stabilization window). The stable copy has such an HPA only once the operator has
mirrored the Deployment's. The end-to-end version, with kube-controller-manager's HPA controller,
is in tests/integration/test_release_testbed.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.gates.observations import SignalReading
from checkout_gates.rollout.actions import EmitEvent, ScaleCanary, SetStableRevision, SetWeights, SyncStableAutoscaler
from checkout_gates.rollout.workload import AutoscalerState, WorkloadState

from .rollouts import HEALTHY, with_annotations
from .test_release import STEPS, Cluster, ReleaseDriver, Side, release_rollout


@dataclass
class HpaCluster(Cluster):
    min_replicas: int = 2
    max_replicas: int = 8
    load: int = 6  # the replicas all of checkout needs
    stabilization: int = 3
    weight: int = 0  # the canary's share of traffic, as the route gives it
    mirrored: tuple[int, int] | None = None  # the stable copy's HPA (min, max), once synced
    wanting_fewer: dict[str, int] = field(default_factory=dict)
    unreadable: str = ""  # why the HPA cannot be read, if it cannot

    def state(self) -> WorkloadState:
        base = super().state()
        in_sync = self.mirrored == (self.min_replicas, self.max_replicas)
        if self.unreadable:
            return WorkloadState(canary=base.canary, stable=base.stable, autoscaler_error=self.unreadable)
        return WorkloadState(
            canary=base.canary,
            stable=base.stable,
            autoscaler=AutoscalerState(self.min_replicas, self.max_replicas, stable_in_sync=in_sync),
        )

    def apply(self, action: object) -> None:
        if isinstance(action, SyncStableAutoscaler):
            assert self.stable is not None, "no HPA is aimed at a copy that does not exist"
            self.mirrored = (self.min_replicas, self.max_replicas)
            return
        super().apply(action)

    def tick(self) -> None:
        super().tick()
        self._autoscale("canary", self.canary, self.weight, (self.min_replicas, self.max_replicas))
        if self.stable is not None and self.mirrored is not None:
            self._autoscale("stable", self.stable, 100 - self.weight, self.mirrored)

    def _autoscale(self, name: str, side: Side, share: int, bounds: tuple[int, int]) -> None:
        if side.replicas == 0:
            return  # an HPA leaves a target at 0 alone
        low, high = bounds
        wanted = max(low, min(high, math.ceil(self.load * share / 100)))
        if wanted > side.replicas:
            side.replicas, side.ready_in = wanted, self.start_up
            self.wanting_fewer[name] = 0
        elif wanted < side.replicas:
            self.wanting_fewer[name] = self.wanting_fewer.get(name, 0) + 1
            if self.wanting_fewer[name] >= self.stabilization:
                side.replicas, self.wanting_fewer[name] = wanted, 0
        else:
            self.wanting_fewer[name] = 0


class HpaDriver(ReleaseDriver):
    """Tells the simulated HPAs the share of traffic each side gets before every pass."""

    def __init__(self, rollout: CheckoutRollout, cluster: HpaCluster) -> None:
        super().__init__(rollout, cluster)
        self.moves: list[tuple[int, int, int]] = []  # (canary weight, canary Ready, stable Ready) seen before it

    def step(self, obs: dict[str, SignalReading] | None = None, advance: float = 30.0) -> None:
        assert isinstance(self.cluster, HpaCluster)
        confirmed = self.rollout.status.router_target
        self.cluster.weight = confirmed.canary if confirmed is not None else 0
        seen, mark = self.cluster.state(), len(self.actions)
        super().step(obs, advance)
        for action in self.actions[mark:]:
            if isinstance(action, SetWeights):
                stable = seen.stable.ready_replicas if seen.stable is not None else 0
                self.moves.append((action.weights.canary, seen.canary.ready_replicas, stable))


def autoscaled_rollout() -> CheckoutRollout:
    return release_rollout(autoscalerRef={"name": "checkout-api"})


def adopted_with_hpa(cluster: HpaCluster | None = None) -> HpaDriver:
    driver = HpaDriver(autoscaled_rollout(), cluster or HpaCluster())
    driver.until("Promoted")
    driver.run(4)  # the mirror's HPA settles stable at the load
    driver.moves.clear()  # adoption moves traffic to a copy of what served it: not a share
    return driver


def hpa(driver: ReleaseDriver) -> HpaCluster:
    assert isinstance(driver.cluster, HpaCluster)
    return driver.cluster


def released(driver: HpaDriver) -> None:
    hpa(driver).set_image("v2")
    driver.step(HEALTHY)
    driver.until("Promoted", HEALTHY)
    assert driver.status.revisions is not None and driver.status.revisions.stable is not None
    assert driver.status.revisions.stable.hash == "v2"


def test_adoption_mirrors_the_hpa_onto_the_stable_copy_only_once_it_takes_all_traffic() -> None:
    driver = HpaDriver(autoscaled_rollout(), HpaCluster())
    driver.until("Promoted")
    syncs = [i for i, a in enumerate(driver.actions) if isinstance(a, SyncStableAutoscaler)]
    weights = [i for i, a in enumerate(driver.actions) if isinstance(a, SetWeights)]
    assert not syncs or syncs[0] > weights[0], "a new HPA has no history to slow a scale-down"
    driver.run(4)
    cluster = hpa(driver)
    assert cluster.mirrored == (2, 8), "the stable copy scales like the Deployment"
    (first, *_) = driver.of(SetStableRevision)
    assert first.replicas == 3 and first.keep_replicas, "created at the Deployment's replicas, then the HPA's"
    assert cluster.stable is not None and cluster.stable.replicas == 6, "the mirror's HPA sizes stable"
    assert cluster.canary.replicas == 0
    assert len(driver.of(SyncStableAutoscaler)) == 1, "synced once, not on every pass"


def test_a_release_under_an_hpa_only_ever_scales_up_to_capacity_and_never_against_the_hpa() -> None:
    driver = adopted_with_hpa()
    mark = len(driver.actions)
    released(driver)
    scales = [a.replicas for a in driver.actions[mark:] if isinstance(a, ScaleCanary)]
    assert scales[0] == 6 and scales[-1] == 0, scales  # woken at stable's size; 0 once promoted
    copies = [a for a in driver.actions[mark:] if isinstance(a, SetStableRevision)]
    assert copies and all(a.keep_replicas for a in copies), "a floor, never a count the HPA must follow"
    assert not [e for e in driver.status.history if e.action == "Halted"]


def test_traffic_moves_onto_a_side_only_with_the_ready_pods_its_share_needs() -> None:
    """The canary's HPA shrinks it to its minimum at 5%; before 50% moves onto it, it is scaled up
    to its share; before promotion moves all traffic to stable (which its HPA shrank to half),
    stable is scaled up to what both sides ran."""
    driver = adopted_with_hpa()
    released(driver)
    load = hpa(driver).load
    for canary_weight, canary_ready, stable_ready in driver.moves:
        canary_needs = max(2, math.ceil(load * canary_weight / 100)) if canary_weight else 0
        stable_needs = max(2, math.ceil(load * (100 - canary_weight) / 100)) if canary_weight < 100 else 0
        assert canary_ready >= canary_needs, (canary_weight, canary_ready, driver.moves)
        assert stable_ready >= stable_needs, (canary_weight, stable_ready, driver.moves)


def test_an_edit_of_the_deployments_hpa_is_mirrored_onto_the_copy() -> None:
    driver = adopted_with_hpa()
    cluster = hpa(driver)
    cluster.min_replicas, cluster.max_replicas = 4, 12
    driver.run(2)
    assert cluster.mirrored == (4, 12)
    assert len(driver.of(SyncStableAutoscaler)) == 2


def test_a_canary_woken_from_zero_starts_within_the_hpas_bounds() -> None:
    """Stable at 6 when the HPA is edited to at most 4 and v2 arrives: waking the canary at 6
    would be undone by its HPA at once."""
    driver = adopted_with_hpa()
    cluster = hpa(driver)
    assert cluster.stable is not None and cluster.stable.replicas == 6
    mark = len(driver.actions)
    cluster.max_replicas = 4
    cluster.set_image("v2")
    driver.step(HEALTHY)
    assert [a.replicas for a in driver.actions[mark:] if isinstance(a, ScaleCanary)] == [4]


def test_an_abort_keeps_the_canary_until_stable_has_room_for_all_traffic() -> None:
    document = autoscaled_rollout().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["steps"] = [*STEPS[:3], {"approval": {}}]  # held at 50%
    driver = HpaDriver(CheckoutRollout.model_validate(document), HpaCluster())
    driver.until("Promoted")
    driver.run(4)
    cluster = hpa(driver)
    cluster.set_image("v2")
    driver.step(HEALTHY)
    for _ in range(12):
        driver.step(HEALTHY)
        if driver.status.weights.canary >= 50 and driver.status.router_target == driver.status.weights:
            break
    assert driver.status.weights.canary == 50
    driver.run(4, HEALTHY)  # stable's HPA shrinks it to its half
    assert cluster.stable is not None and cluster.stable.replicas == 3
    driver.rollout = with_annotations(driver.rollout, {"gates.checkout.dev/abort": "bob"})
    driver.step(HEALTHY)
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0, "exposure stops at once"
    scaled_down = 0
    for _ in range(10):
        before = cluster.state()
        mark = len(driver.actions)
        driver.step(HEALTHY)
        if any(isinstance(a, ScaleCanary) and a.replicas == 0 for a in driver.actions[mark:]):
            assert before.stable is not None and before.stable.ready_replicas >= 6, before
            scaled_down += 1
    assert scaled_down == 1 and cluster.canary.replicas == 0


def test_a_stable_copy_scaled_to_zero_by_hand_is_woken() -> None:
    driver = adopted_with_hpa()
    cluster = hpa(driver)
    assert cluster.stable is not None
    cluster.stable.replicas = 0
    driver.step()
    assert cluster.stable.replicas >= 2
    assert any(e.reason == "StableCopyWoken" for e in driver.of(EmitEvent))


def test_an_unreadable_hpa_still_tends_the_deployments_and_says_why() -> None:
    driver = adopted_with_hpa()
    cluster = hpa(driver)
    cluster.unreadable = "HorizontalPodAutoscaler payments/checkout-api not found (spec.workloadRef.autoscalerRef.name)"
    cluster.stable = None  # deleted by hand meanwhile
    driver.step()
    assert cluster.stable is not None, "the copy is re-created: the Deployments are still read"
    assert driver.status.revisions is not None and "not found" in driver.status.revisions.error
