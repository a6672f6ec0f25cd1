"""The metrics port: the Prometheus source and the replay source are both a ``MetricsSource``.

Statically: this file is type-checked by mypy (strict, the project's configuration), and it hands
both sources to code typed against the port only. At run time: the same port-only code reads the
same gate from a recording and from a Prometheus answering the recorded numbers, and gets the same
reading; and the backtest loop, fed a recording through the port, decides as ``evaluate --replay``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec
from checkout_gates.cli.backtest import backtest
from checkout_gates.gates.observations import Sample, SignalReading
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.metrics.prometheus import PrometheusSource
from checkout_gates.metrics.recording import RecordingSource
from checkout_gates.rollout.replay import Replayer, replay

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "examples" / "recordings"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
AT = T0 + timedelta(seconds=60)

GATE = Gate.model_validate(
    {
        "name": "auth-approval",
        "ratio": {"good": 'good{variant="{{variant}}"}', "total": 'total{variant="{{variant}}"}'},
        "segmentBy": ["provider"],
        "compare": {"maxDrop": "1pp"},
    }
)
SPEC = CheckoutRolloutSpec.model_validate(
    {
        "stable": {"service": "checkout-stable"},
        "canary": {"service": "checkout-canary"},
        "routing": {"gatewayAPI": {"httpRoute": "checkout"}},
        "prometheus": {"address": "http://prometheus.test:9090"},
        "owner": {"name": "oncall", "page": [{"webhook": {"url": "http://127.0.0.1:9/"}}]},
        "gates": [GATE.to_wire()],
        "steps": [{"setWeight": 5}, {"gate": {"pass": ["auth-approval"], "window": "1m"}}, {"setWeight": 100}],
    }
)
# (variant, provider) -> (good, total) in each 30 s interval.
COUNTS = {("stable", "adyen"): (97, 100), ("canary", "adyen"): (18, 20), ("canary", "stripe"): (5, 5)}


async def read_through_the_port(source: MetricsSource, window_seconds: float) -> SignalReading:
    """Port-only code: all the callers (controller, evaluate, backtest) read like this."""
    async with source:
        assert await source.check(AT) is None
        readings = await source.read_gates(
            [GATE], spec=SPEC, namespace="payments", name="checkout", window_seconds=window_seconds, at=AT
        )
    return readings[GATE.name]


def the_sources(transport: httpx.AsyncBaseTransport, recording: str) -> list[MetricsSource]:
    """Both adapters as the port: mypy checks here that each one is a MetricsSource."""
    prometheus: MetricsSource = PrometheusSource(
        PrometheusSpec(address="http://prometheus.test:9090"), transport=transport
    )
    replayed: MetricsSource = RecordingSource.parse(recording)
    return [prometheus, replayed]


def recording_lines(times: int) -> str:
    """Per-interval values, ``times`` intervals of 30 s ending at AT."""
    lines = []
    for index in range(times):
        t = AT - timedelta(seconds=30 * index)
        for (variant, provider), (good, total) in COUNTS.items():
            lines.append(
                {
                    "t": t.isoformat(),
                    "gate": GATE.name,
                    "variant": variant,
                    "labels": {"provider": provider},
                    "good": good,
                    "total": total,
                    "window": "30s",
                }
            )
    return "".join(json.dumps(line) + "\n" for line in lines)


def answering(intervals: int) -> httpx.MockTransport:
    """A Prometheus whose increase() over the window is ``intervals`` times the per-interval counts."""

    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        variant = "canary" if 'variant="canary"' in query else "stable"
        role = 0 if query.startswith("good") else 1
        result = [
            {"metric": {"provider": provider}, "value": [AT.timestamp(), str(intervals * counts[role])]}
            for (side, provider), counts in COUNTS.items()
            if side == variant
        ]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    return httpx.MockTransport(answer)


def test_the_sources_satisfy_the_port_for_mypy() -> None:
    api = pytest.importorskip("mypy.api")  # a dev dependency: absent from a test-only install
    report, errors, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), __file__])
    assert status == 0, report + errors


@pytest.mark.parametrize("intervals", [1, 2])
async def test_the_same_reading_from_a_recording_and_from_prometheus(intervals: int) -> None:
    """One 30 s interval as recorded, and two added up over a 60 s window as increase() would."""
    window = 30.0 * intervals
    readings = [
        await read_through_the_port(source, window)
        for source in the_sources(answering(intervals), recording_lines(times=3))
    ]
    from_prometheus, from_recording = readings
    assert from_prometheus.error is None and from_recording.error is None
    assert from_recording == from_prometheus
    assert from_recording.window_seconds == window
    adyen = (("provider", "adyen"),)
    assert from_recording.canary[adyen] == Sample(
        value=0.9, samples=20.0 * intervals, good=18.0 * intervals, total=20.0 * intervals
    )


async def test_a_recording_without_a_time_or_at_an_unrecorded_time() -> None:
    source = RecordingSource.parse(recording_lines(times=1), name="one.jsonl")
    assert source.description == "recording one.jsonl"
    now = await source.read_gate(GATE, spec=SPEC, namespace="payments", name="checkout", window_seconds=30)
    assert now.error is not None and "no time was given" in now.error
    elsewhere = await source.read_gate(
        GATE, spec=SPEC, namespace="payments", name="checkout", window_seconds=30, at=AT + timedelta(seconds=5)
    )
    assert elsewhere.error is None and elsewhere.canary == {} and elsewhere.stable == {}
    unknown = Gate.model_validate({"name": "never-recorded", "gauge": "queue", "max": 1})
    nothing = await source.read_gates(
        [unknown], spec=SPEC, namespace="payments", name="checkout", window_seconds=30, at=AT
    )
    assert nothing["never-recorded"].canary == {} and nothing["never-recorded"].error is None


def example_rollout() -> CheckoutRollout:
    return CheckoutRollout.model_validate(yaml.safe_load((RECORDINGS / "rollout.yaml").read_text()))


@pytest.fixture(params=["healthy", "regression", "low-traffic"])
def recording(request: pytest.FixtureRequest) -> Iterator[RecordingSource]:
    yield RecordingSource.load(RECORDINGS / f"{request.param}.jsonl")


async def test_the_backtest_loop_through_the_port_decides_as_the_replay(recording: RecordingSource) -> None:
    """Reading only the gates due at each time, over their query windows, through the port, gives
    the decisions of the replay loop fed every recorded reading (which adds up windows itself)."""
    times = recording.times()
    replayed = replay(example_rollout(), ((t, recording.readings_at(t)) for t in times))
    through_the_port = await backtest(Replayer(example_rollout()), recording, times)
    assert through_the_port.outcome == replayed.outcome
    assert through_the_port.transitions == replayed.transitions
    assert through_the_port.status.gates == replayed.status.gates
