"""A Deployment with an HPA (workloadRef.autoscalerRef): its replicas are respected, never fought.

``HpaCluster`` adds to test_release.py's Cluster what the HPA controller does between passes:
it leaves a Deployment at 0 alone (an HPA never wakes a target at 0), and otherwise sets the
replicas it wants within [min, max]; the stable copy has such an HPA only once the operator has
mirrored the Deployment's. The end-to-end version, with kube-controller-manager's HPA controller,
is in tests/integration/test_release_testbed.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.rollout.actions import ScaleCanary, SetStableRevision, SyncStableAutoscaler
from checkout_gates.rollout.workload import AutoscalerState, WorkloadState

from .rollouts import HEALTHY
from .test_release import Cluster, ReleaseDriver, release_rollout


@dataclass
class HpaCluster(Cluster):
    min_replicas: int = 2
    max_replicas: int = 8
    canary_wants: int = 2  # the HPA's own choice for the canary (little load at small weights)
    stable_wants: int = 6  # and for stable (all of checkout)
    mirrored: tuple[int, int] | None = None  # the stable copy's HPA (min, max), once synced

    def state(self) -> WorkloadState:
        base = super().state()
        in_sync = self.mirrored == (self.min_replicas, self.max_replicas)
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
        if self.canary.replicas > 0:
            self.canary.replicas = max(self.min_replicas, min(self.max_replicas, self.canary_wants))
        if self.stable is not None and self.mirrored is not None and self.stable.replicas > 0:
            low, high = self.mirrored
            self.stable.replicas = max(low, min(high, self.stable_wants))


def autoscaled_rollout() -> CheckoutRollout:
    return release_rollout(autoscalerRef={"name": "checkout-api"})


def adopted_with_hpa(cluster: HpaCluster | None = None) -> ReleaseDriver:
    driver = ReleaseDriver(autoscaled_rollout(), cluster or HpaCluster())
    driver.until("Promoted")
    return driver


def test_adoption_mirrors_the_hpa_onto_the_stable_copy_and_leaves_the_deployment_at_zero() -> None:
    driver = adopted_with_hpa()
    cluster = driver.cluster
    assert isinstance(cluster, HpaCluster)
    assert cluster.mirrored == (2, 8), "the stable copy scales like the Deployment"
    (first, *_) = driver.of(SetStableRevision)
    assert first.replicas == 3 and first.keep_replicas, "created at the Deployment's replicas, then the HPA's"
    driver.run(5)
    assert cluster.stable is not None and cluster.stable.replicas == 6, "the mirror's HPA sizes stable"
    assert cluster.canary.replicas == 0
    assert len(driver.of(SyncStableAutoscaler)) == 1, "synced once, not on every pass"


def test_a_release_under_an_hpa_never_resets_the_replicas_the_hpa_chose() -> None:
    driver = adopted_with_hpa()
    cluster = driver.cluster
    assert isinstance(cluster, HpaCluster)
    driver.run(3)
    mark = len(driver.actions)
    cluster.set_image("v2")
    driver.step(HEALTHY)
    driver.until("Promoted", HEALTHY)
    assert driver.status.revisions is not None and driver.status.revisions.stable is not None
    assert driver.status.revisions.stable.hash == "v2"
    scales = [a.replicas for a in driver.actions[mark:] if isinstance(a, ScaleCanary)]
    # Woken once from 0 at stable's size (the HPA then shrank it to 2: not scaled back), and put
    # back to 0 after the promotion.
    assert scales == [6, 0], scales
    copies = [a for a in driver.actions[mark:] if isinstance(a, SetStableRevision)]
    assert copies and all(a.keep_replicas for a in copies)
    assert cluster.stable is not None and cluster.stable.revision == "v2" and cluster.stable.replicas == 6


def test_an_hpa_shrinking_the_canary_is_not_a_capacity_halt() -> None:
    """Without an HPA a canary below stable's replicas waits and halts at the deadline; with one,
    the HPA's count is the capacity (it may take a 5% canary down to its minimum)."""
    driver = adopted_with_hpa(HpaCluster(canary_wants=1, min_replicas=1))
    driver.cluster.set_image("v2")
    driver.step(HEALTHY)
    driver.until("Promoted", HEALTHY)
    assert not [e for e in driver.status.history if e.action == "Halted"]


def test_an_edit_of_the_deployments_hpa_is_mirrored_onto_the_copy() -> None:
    driver = adopted_with_hpa()
    cluster = driver.cluster
    assert isinstance(cluster, HpaCluster)
    cluster.min_replicas, cluster.max_replicas = 4, 12
    driver.run(2)
    assert cluster.mirrored == (4, 12)
    assert len(driver.of(SyncStableAutoscaler)) == 2


def test_a_canary_woken_from_zero_starts_within_the_hpas_bounds() -> None:
    """Stable at 6 when the HPA is edited to at most 4 and v2 arrives: waking the canary at 6
    would be undone by its HPA at once."""
    driver = adopted_with_hpa()
    cluster = driver.cluster
    assert isinstance(cluster, HpaCluster)
    driver.run(3)
    assert cluster.stable is not None and cluster.stable.replicas == 6
    mark = len(driver.actions)
    cluster.max_replicas = 4
    cluster.set_image("v2")
    driver.step(HEALTHY)
    assert [a.replicas for a in driver.actions[mark:] if isinstance(a, ScaleCanary)] == [4]
