"""metrics/fairness.py: the in-flight queries of one Prometheus shared fairly between namespaces and
rollouts, and through PrometheusSource: rollouts whose queries hang cannot starve a healthy one."""

from __future__ import annotations

import asyncio
import json

import pytest

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import PrometheusSpec
from checkout_gates.metrics import prometheus
from checkout_gates.metrics.fairness import Caller, FairLimiter
from checkout_gates.metrics.prometheus import PrometheusSource

from .rollouts import rollout_doc


async def hold(limiter: FairLimiter, caller: Caller, release: asyncio.Event, served: list[Caller]) -> None:
    async with limiter.place(caller):
        served.append(caller)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_namespace_gets_every_place() -> None:
    limiter, release, served = FairLimiter(4), asyncio.Event(), []
    tasks = [asyncio.create_task(hold(limiter, ("hog", f"r{i}"), release, served)) for i in range(6)]
    await settle()
    assert len(served) == 4 and limiter.waiting == 2, "work-conserving: nothing idle while anyone waits"
    release.set()
    await asyncio.gather(*tasks)
    assert len(served) == 6


async def test_a_freed_place_goes_to_the_waiting_namespace_that_holds_least() -> None:
    limiter, served = FairLimiter(2), []
    hog_release, healthy_release = asyncio.Event(), asyncio.Event()
    hogs = [asyncio.create_task(hold(limiter, ("hostile", f"h{i}"), hog_release, served)) for i in range(2)]
    await settle()
    more_hogs = [asyncio.create_task(hold(limiter, ("hostile", f"h{i}"), hog_release, served)) for i in range(2, 6)]
    await settle()
    healthy = asyncio.create_task(hold(limiter, ("payments", "checkout"), healthy_release, served))
    await settle()
    assert served == [("hostile", "h0"), ("hostile", "h1")]

    # One hostile query ends (cancelled here, as a timeout would end it): the healthy rollout,
    # though it asked last, is served before the four hostile queries queued before it.
    hogs[0].cancel()
    await settle()
    assert served[-1] == ("payments", "checkout")
    healthy_release.set()
    await healthy
    hog_release.set()
    await asyncio.gather(*hogs[1:], *more_hogs, return_exceptions=True)
    assert limiter.held(("payments", "checkout")) == 0 and limiter.waiting == 0


async def test_within_a_namespace_the_rollout_holding_least_goes_first() -> None:
    limiter, release, served = FairLimiter(1), asyncio.Event(), []
    blocker = asyncio.Event()
    first = asyncio.create_task(hold(limiter, ("payments", "busy"), blocker, served))
    await settle()
    queued = [asyncio.create_task(hold(limiter, ("payments", "busy"), release, served)) for _ in range(3)]
    await settle()
    quiet = asyncio.create_task(hold(limiter, ("payments", "quiet"), release, served))
    await settle()
    blocker.set()
    await first
    await settle()
    assert served[1] == ("payments", "quiet"), served
    release.set()
    await asyncio.gather(*queued, quiet)


async def test_a_cancelled_waiter_leaves_no_trace_and_loses_no_place() -> None:
    limiter, release, served = FairLimiter(1), asyncio.Event(), []
    holder = asyncio.create_task(hold(limiter, ("a", "x"), release, served))
    await settle()
    waiter = asyncio.create_task(hold(limiter, ("b", "y"), release, served))
    await settle()
    waiter.cancel()
    await settle()
    assert limiter.waiting == 0
    release.set()
    await holder
    async with limiter.place(("c", "z")):
        assert limiter.held(("c", "z")) == 1


# --- through the source ---------------------------------------------------------------------------


def rollout(namespace: str, name: str) -> CheckoutRollout:
    document = rollout_doc([{"setWeight": 5}, {"gate": {"pass": ["auth-approval"], "window": "1m"}}])
    document["metadata"].update(namespace=namespace, name=name)
    return CheckoutRollout.model_validate(document)


VECTOR = json.dumps(
    {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"provider": "adyen"}, "value": [0, "100"]}]},
    }
).encode()


async def test_hanging_rollouts_on_a_shared_prometheus_do_not_starve_a_healthy_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight rollouts of one namespace whose queries hang take all 8 places and queue 24 more; a
    healthy rollout of another namespace, asking last, gets the first place one of them frees (as
    its query times out) before any of their queued queries, and keeps it for its 4 queries.
    With a first-come semaphore that place would go to the hanging rollouts' queue."""
    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), retries=0, dedupe_seconds=0)
    hanging: list[asyncio.Event] = []
    served: list[str] = []  # the namespace of each query that got a place, in order

    async def get(url: str) -> prometheus._Answer:
        served.append(prometheus._ASKING.get()[0])
        if prometheus._ASKING.get()[0] == "hostile":
            timeout = asyncio.Event()
            hanging.append(timeout)
            await timeout.wait()
            raise source._timed_out()
        return prometheus._Answer(200, "application/json", VECTOR)

    monkeypatch.setattr(source, "_get", get)

    async def read(cro: CheckoutRollout) -> str | None:
        gate = cro.spec.gates[0]
        meta = cro.metadata
        reading = await source.read_gate(
            gate, spec=cro.spec, namespace=meta.namespace, name=meta.name, window_seconds=60
        )
        return reading.error

    hostile = [asyncio.create_task(read(rollout("hostile", f"h{i}"))) for i in range(8)]
    await settle()
    assert len(hanging) == 8 and source._in_flight.waiting == 24
    healthy = asyncio.create_task(read(rollout("payments", "checkout")))
    await settle()
    assert source._in_flight.waiting == 28
    hanging[0].set()  # one hanging query times out
    async with asyncio.timeout(30):  # with a first-come semaphore it would wait for ever: fail, not hang
        assert await healthy is None, "the healthy rollout read all four of its queries"
    assert served[:12] == ["hostile"] * 8 + ["payments"] * 4, "before any of the 24 queued before it"
    for event in hanging:
        event.set()
    for _ in range(6):  # the rest hang and time out in turn
        await settle()
        for event in hanging:
            event.set()
    await asyncio.gather(*hostile)
    await source.aclose()
