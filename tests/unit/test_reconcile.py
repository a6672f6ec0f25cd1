"""The reconcile pass (controller/reconcile.py) against an in-memory API server and router.

The fakes implement the pass's ports (controller/ports.py, routing/base.py) with the semantics the
pass relies on: a status write carries the resourceVersion it was read at and is refused (409)
once the object moved on; the watch's copy may be older than the server's. Every write goes to one
journal, so the order of writes across the API server and the router is what the tests read.
No gate evaluation is due in these passes (a step that has just started), so no Prometheus query
is made.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import Weights
from checkout_gates.controller.ports import ConflictError, Raw
from checkout_gates.controller.reconcile import INVALID_RETRY, MAX_CONFLICTS, Reconciler
from checkout_gates.rollout.plan import MIN_DELAY, RETRY_SOON

from .rollouts import T0, rollout_doc

NAMESPACE, NAME = "payments", "checkout-api"
Journal = list[tuple[str, str]]


class MemoryApiServer:
    """One CheckoutRollout on an API server, and the copy of it the watch last delivered."""

    def __init__(self, document: Raw, journal: Journal) -> None:
        self.journal = journal
        self.version = 1
        self.stored: Raw = copy.deepcopy(document)
        self.stored["metadata"]["resourceVersion"] = "1"
        self.watched: Raw = copy.deepcopy(self.stored)
        self.reads: list[str] = []  # "watch" or "fresh", one per get_rollout
        self.status_write_versions: list[tuple[str, str]] = []  # (sent, the server's) per attempt
        self.before_status_write: Callable[[], None] | None = None

    # --- the port ---

    async def get_rollout(self, namespace: str, name: str, *, fresh: bool = False) -> Raw | None:
        assert (namespace, name) == (NAMESPACE, NAME)
        self.reads.append("fresh" if fresh else "watch")
        if fresh:
            self.watched = copy.deepcopy(self.stored)
        return copy.deepcopy(self.watched)

    async def replace_status(self, raw: Raw, status: Raw) -> Raw:
        if self.before_status_write is not None:
            self.before_status_write()
        sent = raw["metadata"]["resourceVersion"]
        self.status_write_versions.append((sent, self.stored["metadata"]["resourceVersion"]))
        if sent != self.stored["metadata"]["resourceVersion"]:
            self.journal.append(("status write refused", f"at version {sent}"))
            raise ConflictError("changed since it was read")
        self.journal.append(("write status", summary(status)))
        self.stored["status"] = copy.deepcopy(status)
        self._bump()
        self.watched = copy.deepcopy(self.stored)  # as KubeApi remembers its own write
        return copy.deepcopy(self.stored)

    async def patch_status(self, namespace: str, name: str, status: Raw) -> None:
        self.journal.append(("patch status", ", ".join(sorted(status))))
        self.stored["status"] = {**self.stored.get("status", {}), **copy.deepcopy(status)}
        self._bump()

    async def remove_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        annotations = self.stored["metadata"].setdefault("annotations", {})
        if annotations.get(key) != value:
            return False
        self.journal.append(("remove annotation", f"{key}={value}"))
        del annotations[key]
        self._bump()
        return True

    async def secret_values(self, namespace: str, refs: Any) -> dict[tuple[str, str], str]:
        return {}

    async def create_event(self, raw: Raw, kind: str, reason: str, message: str) -> None:
        self.journal.append(("post event", reason))

    async def run(self, call: Callable[[], Any]) -> Any:
        return call()

    def close(self) -> None:
        pass

    # --- what the tests do to it ---

    def someone_else_writes(self, change: Callable[[Raw], None]) -> None:
        """Another client's write: the server moves on, the watch has not delivered it yet."""
        change(self.stored)
        self._bump()

    def rollout(self) -> CheckoutRollout:
        parsed = parse_rollout(copy.deepcopy(self.stored))
        assert isinstance(parsed, CheckoutRollout), parsed
        return parsed

    def _bump(self) -> None:
        self.version += 1
        self.stored["metadata"]["resourceVersion"] = str(self.version)


class ProcessKilledError(BaseException):
    """The operator dies where this is raised (a BaseException: no handler of the pass catches it)."""


class MemoryRouter:
    """An HTTPRoute's split, starting with everything on stable."""

    description = "HTTPRoute payments/checkout (in memory)"

    def __init__(self, server: MemoryApiServer, journal: Journal) -> None:
        self.server = server
        self.journal = journal
        self.weights: Weights | None = Weights.canary_at(0)
        self.status_canary_at_patches: list[int] = []  # what stored status intended at each patch
        self.killed_at_next_patch = False

    def read_weights(self) -> Weights | None:
        return self.weights

    def set_weights(self, target: Weights) -> Weights:
        if self.killed_at_next_patch:
            self.killed_at_next_patch = False
            raise ProcessKilledError("killed before the weights patch")
        self.status_canary_at_patches.append(self.server.rollout().status.weights.canary)
        self.journal.append(("patch router", f"canary {target.canary}"))
        self.weights = target
        return target


def summary(status: Raw) -> str:
    weights = status.get("weights", {})
    confirmed = status.get("routerTarget")
    router = f"router confirmed {confirmed['canary']}" if confirmed else "router unconfirmed"
    return f"{status.get('phase')}, step {status.get('currentStep')}, canary {weights.get('canary')}, {router}"


class FakeCluster:
    """The rollout's API server and route, one journal of their writes, and the clock the passes get."""

    def __init__(self, document: Raw, now: datetime = T0) -> None:
        self.journal: Journal = []
        self.server = MemoryApiServer(document, self.journal)
        self.router = MemoryRouter(self.server, self.journal)
        self.now = now

    def routers(self, spec: CheckoutRolloutSpec, namespace: str) -> MemoryRouter:
        return self.router  # the rollout's one route, whichever pass asks

    async def run_pass(self) -> float | None:
        """One pass by a freshly started Reconciler (so nothing is carried over in its memory)."""
        reconciler = Reconciler(self.server, routers=self.routers, clock=lambda: self.now)
        try:
            return await reconciler.reconcile(NAMESPACE, NAME)
        finally:
            await reconciler.close()


def pending_rollout() -> Raw:
    """A new rollout (no status yet): 5 %, a gate step, then everything."""
    return rollout_doc(
        [
            {"setWeight": 5},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "10m"}},
            {"setWeight": 100},
        ]
    )


# --- (a) the order of writes ---------------------------------------------------------------------


async def test_a_pass_that_steps_the_weight_writes_status_then_patches_the_router_then_records_outcomes() -> None:
    cluster = FakeCluster(pending_rollout())
    delay = await cluster.run_pass()
    assert cluster.journal == [
        ("write status", "Progressing, step 0, canary 5, router unconfirmed"),
        ("patch router", "canary 5"),
        ("post event", "Progressing"),
        ("write status", "Progressing, step 0, canary 5, router confirmed 5"),
    ]
    assert cluster.router.status_canary_at_patches == [5], "the patch came after the status that intends it"
    status = cluster.server.rollout().status
    assert status.router_weights == Weights.canary_at(5)
    assert [entry.action for entry in status.history] == ["Started"], "the step waits for the router's word"
    assert delay == MIN_DELAY, "confirmed: the next pass comes at once, to complete the step"

    cluster.journal.clear()
    await cluster.run_pass()
    assert cluster.journal == [
        ("write status", "Progressing, step 1, canary 5, router confirmed 5"),
        ("post event", "StepAdvanced"),
    ], "the setWeight step completes on the confirmed weights, with no second patch"
    assert [entry.action for entry in cluster.server.rollout().status.history] == ["Started", "StepAdvanced"]


# --- (b) a conflict is re-read and re-decided, never forced ---------------------------------------


def a_new_spec_starting_at_20_percent(stored: Raw) -> None:
    stored["spec"]["steps"][0] = {"setWeight": 20}
    stored["metadata"]["generation"] += 1


async def test_a_conflicting_status_write_is_re_decided_on_a_fresh_read_and_never_forced() -> None:
    cluster = FakeCluster(pending_rollout())
    server = cluster.server

    def new_spec_lands_first() -> None:  # between the pass's read and its status write
        server.before_status_write = None
        server.someone_else_writes(a_new_spec_starting_at_20_percent)

    server.before_status_write = new_spec_lands_first
    await cluster.run_pass()

    assert server.reads == ["watch", "fresh"], "after the 409 the pass reads the object again, from the server"
    assert server.status_write_versions == [("1", "2"), ("2", "2"), ("3", "3")], (
        "every write is at the version its pass read: the stale one is refused, and not sent again"
    )
    assert cluster.journal == [
        ("status write refused", "at version 1"),
        ("write status", "Progressing, step 0, canary 20, router unconfirmed"),
        ("patch router", "canary 20"),
        ("post event", "Progressing"),
        ("write status", "Progressing, step 0, canary 20, router confirmed 20"),
    ], "decided again on the new spec: the decision on the stale copy (canary 5) is never carried out"
    await cluster.run_pass()  # the step completes on the confirmed weights
    status = server.rollout().status
    assert status.observed_generation == 2
    assert [entry.reason for entry in status.history if entry.action == "StepAdvanced"] == ["step 0: canary weight 20%"]


async def test_a_status_that_keeps_conflicting_is_never_forced_and_nothing_is_carried_out() -> None:
    cluster = FakeCluster(pending_rollout())
    server = cluster.server
    server.before_status_write = lambda: server.someone_else_writes(lambda stored: None)
    delay = await cluster.run_pass()
    assert delay == RETRY_SOON
    assert server.reads == ["watch"] + ["fresh"] * (MAX_CONFLICTS - 1)
    assert cluster.journal == [("status write refused", f"at version {v}") for v in range(1, MAX_CONFLICTS + 1)]
    assert cluster.router.weights == Weights.canary_at(0)
    assert "status" not in server.stored


# --- (c) idempotence -----------------------------------------------------------------------------


async def test_a_pass_repeated_over_the_object_it_left_changes_nothing() -> None:
    cluster = FakeCluster(pending_rollout())
    await cluster.run_pass()
    await cluster.run_pass()  # the setWeight step completes on the confirmed weights
    settled = copy.deepcopy(cluster.server.stored)
    cluster.journal.clear()
    for _ in range(3):
        await cluster.run_pass()
    assert cluster.journal == []
    assert cluster.server.stored == settled, "not even the resourceVersion moved"


async def test_a_pass_repeated_after_a_crash_before_the_router_patch_carries_out_the_same_intent_once() -> None:
    cluster = FakeCluster(pending_rollout())
    cluster.router.killed_at_next_patch = True
    with pytest.raises(ProcessKilledError):
        await cluster.run_pass()
    assert cluster.journal == [("write status", "Progressing, step 0, canary 5, router unconfirmed")]
    intended = cluster.server.rollout().status
    cluster.journal.clear()

    await cluster.run_pass()  # the restarted operator
    assert cluster.journal == [
        ("patch router", "canary 5"),
        ("write status", "Progressing, step 0, canary 5, router confirmed 5"),
    ], "the decision is not made (nor written) again: only its weights are stated again"
    status = cluster.server.rollout().status
    assert status.history == intended.history
    assert status.epoch == intended.epoch


# --- (d) an invalid spec --------------------------------------------------------------------------


async def test_an_invalid_spec_is_reported_with_the_injected_clocks_time() -> None:
    document = pending_rollout()
    document["spec"]["steps"] = [{"setWeight": 5}, {"gate": {"pass": ["no-such-gate"], "window": "1m"}}]
    cluster = FakeCluster(document, now=datetime.fromisoformat("2031-05-04T03:02:01+00:00"))
    delay = await cluster.run_pass()
    assert delay == INVALID_RETRY
    assert cluster.journal == [("patch status", "conditions, message")]
    [condition] = cluster.server.stored["status"]["conditions"]
    assert condition["type"] == "SpecValid" and condition["status"] == "False"
    assert condition["lastTransitionTime"] == "2031-05-04T03:02:01Z"
    assert "no-such-gate" in cluster.server.stored["status"]["message"]
    assert cluster.router.weights == Weights.canary_at(0), "nothing is carried out for an invalid spec"
