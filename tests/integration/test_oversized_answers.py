"""Threat 5 end to end: oversized Prometheus answers neither take the operator's memory nor stall
the other rollouts (docs/security.md).

The real operator runs as a child process. A hostile "Prometheus" on loopback answers every query
of two rollouts: one with a valid vector of 100,000 series (a query that forgot to aggregate),
the other with a 200 MB answer (valid JSON, padded; streamed, never held in this process). A
healthy rollout reads the real scraping Prometheus meanwhile, at the same short interval.

Asserted: both hostile rollouts' gates read Inconclusive with the reason (too many series,
aggregate by segmentBy; the size bound), the operator's peak resident memory (VmHWM) stays under
the chart's limit (512Mi) after the hostile server has answered many times over, and the healthy
rollout keeps being evaluated: at least as many evaluations as the hostile rounds less one, and at
least half of those its interval allows in the time measured. Only counts and their ratios are
asserted, never a duration: another test run may share the machine.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from checkout_gates.metrics.prometheus import MAX_ANSWER_BYTES, MAX_SERIES
from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import Operator, wait_for
from .reliability import LiveRollout

pytestmark = pytest.mark.integration

MEMORY_LIMIT = 512 * 2**20  # charts/checkout-gates/values.yaml resources.limits.memory
SERIES = 100_000
HUGE_BYTES = 200_000_000
INTERVAL = 2.0  # every rollout's analysis interval, hostile ones included
ROUNDS = 5  # evaluations of each hostile rollout measured (each asks its 6 queries)
CHUNK = 2**20


def _vector_head() -> bytes:
    return b'{"status":"success","data":{"resultType":"vector","result":['


def many_series_body() -> list[bytes]:
    """A valid Prometheus vector of 100,000 series, as Prometheus would encode an unaggregated
    ``increase(payment_authorizations_total[...])``: just under the size bound, so that it is the
    series count, not the byte count, that must refuse it."""
    at = f"{time.time():.3f}"
    chunks, batch = [_vector_head()], []
    for i in range(SERIES):
        batch.append(
            f'{{"metric":{{"__name__":"payment_authorizations_total","instance":"10.1.{i // 250}.{i % 250}:9102",'
            f'"provider":"provider-{i:06d}","variant":"canary"}},"value":[{at},"{i}"]}}'
        )
        if len(batch) == 1000:
            chunks.append((("," if len(chunks) > 1 else "") + ",".join(batch)).encode())
            batch = []
    chunks.append(b"]}}")
    return chunks


def huge_tail() -> bytes:
    return f'{{"metric":{{"provider":"p"}},"value":[{time.time():.3f},"1"]}}]}}}}'.encode()


@dataclass
class HostilePrometheus:
    """``/many/api/v1/query``: 100,000 series; ``/huge/api/v1/query``: a 200 MB answer."""

    many: list[bytes] = field(default_factory=many_series_body)
    served: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def many_bytes(self) -> int:
        return sum(map(len, self.many))

    def url(self, kind: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/{kind}"

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.served["many"], self.served["huge"]

    def start(self) -> HostilePrometheus:
        hostile = self
        padding = memoryview(b" " * CHUNK)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                kind = self.path.split("/", 2)[1]
                if kind == "many":
                    chunks: Iterator[bytes | memoryview] = iter(hostile.many)
                    length = hostile.many_bytes
                elif kind == "huge":
                    head, tail = _vector_head(), huge_tail()
                    chunks = huge_chunks(head, padding, HUGE_BYTES - len(head) - len(tail), tail)
                    length = HUGE_BYTES
                else:
                    self.send_error(404)
                    return
                with hostile.lock:
                    hostile.served[kind] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                with contextlib.suppress(OSError):  # the operator hangs up once it has enough
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        with hostile.lock:
                            hostile.sent[kind] += len(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def huge_chunks(head: bytes, padding: memoryview, pad: int, tail: bytes) -> Iterator[bytes | memoryview]:
    """Whitespace between the vector's ``[`` and its one series: valid JSON, 200 MB long."""
    yield head
    while pad > 0:
        yield padding[: min(pad, len(padding))]
        pad -= len(padding)
    yield tail


@pytest.fixture
def hostile() -> Iterator[HostilePrometheus]:
    server = HostilePrometheus().start()
    yield server
    server.stop()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB; empty once it is gone."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


class Watcher:
    """Polls the rollouts' statuses (through the Python client, not a kubectl process a poll) and
    the operator's memory: when each rollout's ``lastEvaluatedAt`` was first seen, and the RSS."""

    def __init__(self, rollouts: dict[str, LiveRollout], pid: int) -> None:
        self.rollouts = rollouts
        self.pid = pid
        self.seen: dict[str, dict[str, float]] = {name: {} for name in rollouts}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.max_rss_kib = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for name, rollout in self.rollouts.items():
                try:
                    status = rollout.status
                except Exception:  # the kube-apiserver busy: the next poll sees what this one missed
                    continue
                at = status.get("lastEvaluatedAt")
                with self._lock:
                    self.statuses[name] = status
                    if at and at not in self.seen[name]:
                        self.seen[name][at] = time.monotonic()
            rss = memory_kib(self.pid).get("VmRSS", 0)
            with self._lock:
                self.max_rss_kib = max(self.max_rss_kib, rss)

    def evaluations(self, name: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for first_seen in self.seen[name].values() if first_seen >= since)

    def largest_gap(self, name: str, since: float) -> float:
        """Seconds between two evaluations in a row (by ``lastEvaluatedAt``), for the record."""
        with self._lock:
            times = sorted(datetime.fromisoformat(at) for at, first in self.seen[name].items() if first >= since)
        return max(((b - a).total_seconds() for a, b in itertools.pairwise(times)), default=0.0)

    def status(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.statuses.get(name, {})


def gate_reasons(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {gate["name"]: (gate["verdict"], gate["reason"]) for gate in status.get("gates", [])}


def metrics_condition(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "MetricsAvailable"), {})
    return found


def test_oversized_answers_neither_take_the_memory_nor_stall_a_healthy_rollout(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    hostile: HostilePrometheus,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    assert hostile.many_bytes < MAX_ANSWER_BYTES, "the 100k-series answer must be refused for its series count"
    # The gate step outlasts the test, so every rollout keeps evaluating its gates at its interval;
    # inconclusive readings neither halt a hostile rollout nor the healthy one's first few.
    steps = [{"setWeight": 1}, {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1h"}}]
    analysis = {"interval": f"{INTERVAL:g}s", "failureLimit": 2, "inconclusiveLimit": 100000}
    rollouts: dict[str, LiveRollout] = {}
    for kind in ("healthy", "many", "huge"):
        rollout = LiveRollout(
            cluster_ready, scraping_prometheus, traffic, kube.kubeconfig, steps=steps, analysis=analysis
        )
        if kind != "healthy":
            rollout.manifest["spec"]["prometheus"] = {"address": hostile.url(kind), "timeout": "20s"}
        rollouts[kind] = rollout
    logs = tmp_path / "operator.log"
    scope = [option for rollout in rollouts.values() for option in ("-n", rollout.namespace)]
    operator = Operator(kube.kubeconfig, logs, args=scope).start()
    try:
        assert operator.process is not None
        pid = operator.process.pid
        # The pid is the interpreter itself (no shell between): its command line, once exec has set it up.
        command = wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1], "exec")
        assert b"python" in Path(command[0].decode()).name.encode() and b"checkout_gates.cli.main" in command
        for rollout in rollouts.values():
            rollout.apply()
        with Watcher(rollouts, pid) as watcher:
            wait_for(lambda: watcher.evaluations("healthy") > 0, "the healthy rollout's first evaluation", 120)
            wait_for(lambda: all(hostile.counts()), "both hostile answers asked for", 60)
            since, served_before = time.monotonic(), hostile.counts()

            def rounds_done() -> tuple[int, int, int] | None:
                counts = (watcher.evaluations("many", since), watcher.evaluations("huge", since))
                served = [now - before for now, before in zip(hostile.counts(), served_before, strict=True)]
                if min(counts) >= ROUNDS and min(served) >= ROUNDS:
                    return (*counts, watcher.evaluations("healthy", since))
                return None

            many_rounds, huge_rounds, healthy_evaluations = wait_for(
                rounds_done, f"{ROUNDS} evaluations of each hostile rollout", 240
            )
            elapsed = time.monotonic() - since
            status = {kind: watcher.status(kind) for kind in rollouts}
            gap = watcher.largest_gap("healthy", since)
            rss_kib = watcher.max_rss_kib
        peak = memory_kib(pid)
        alive = operator.process.poll() is None
    finally:
        operator.stop()
        for rollout in rollouts.values():
            rollout.delete()

    served = hostile.counts()
    expected = elapsed / INTERVAL
    peak_kib = peak.get("VmHWM", 0)
    figures = {
        "many-series answer (bytes)": hostile.many_bytes,
        "answers served (many, huge)": served,
        "bytes sent (many, huge)": (hostile.sent["many"], hostile.sent["huge"]),
        "hostile evaluations measured (many, huge)": (many_rounds, huge_rounds),
        "healthy evaluations measured": healthy_evaluations,
        "healthy evaluations expected from elapsed/interval": round(expected, 1),
        "healthy largest gap between evaluations (s, not asserted)": round(gap, 1),
        "measured seconds": round(elapsed, 1),
        "operator peak RSS (VmHWM, MiB)": round(peak_kib / 1024, 1),
        "operator max sampled VmRSS (MiB)": round(rss_kib / 1024, 1),
        "test seconds": round(time.monotonic() - started, 1),
    }
    print("\noversized answers:", json.dumps(figures, indent=1))

    assert alive, "the operator process ended: " + logs.read_text(errors="replace")[-3000:]
    # The hostile rollouts: Inconclusive, saying why, in the gates and in MetricsAvailable.
    for gate, (verdict, reason) in gate_reasons(status["many"]).items():
        assert verdict == "Inconclusive", (gate, verdict, reason)
        assert f"{SERIES} series in one answer (at most {MAX_SERIES:,})" in reason, reason
        assert "aggregate the query by the gate's segmentBy labels" in reason, reason
    for gate, (verdict, reason) in gate_reasons(status["huge"]).items():
        assert verdict == "Inconclusive", (gate, verdict, reason)
        assert f"answered with more than {MAX_ANSWER_BYTES // 2**20} MiB" in reason, reason
    assert (
        set(gate_reasons(status["many"])) == set(gate_reasons(status["huge"])) == {"auth-approval", "duplicate-charges"}
    )
    many_condition, huge_condition = metrics_condition(status["many"]), metrics_condition(status["huge"])
    assert many_condition.get("status") == "False" and "series in one answer" in many_condition["message"]
    assert huge_condition.get("status") == "False" and "more than 16 MiB" in huge_condition["message"]
    # Nothing of the 200 MB answer is read beyond the bound (and what the socket buffers hold).
    assert hostile.sent["huge"] < served[1] * (MAX_ANSWER_BYTES + 16 * CHUNK), hostile.sent["huge"]
    # The healthy rollout was judged on its own Prometheus meanwhile.
    assert metrics_condition(status["healthy"]).get("status") == "True", status["healthy"].get("conditions")
    assert status["healthy"]["phase"] == "Progressing", status["healthy"].get("phase")
    # Memory: the peak of the whole run, after the hostile server answered many times over.
    assert min(served) >= ROUNDS, served
    assert 0 < peak_kib * 1024 < MEMORY_LIMIT, f"peak RSS {peak_kib / 1024:.0f} MiB (limit 512 MiB)"
    # Not stalled: ordering and ratio, no duration.
    assert healthy_evaluations >= ROUNDS - 1, figures
    assert healthy_evaluations >= 0.5 * expected, figures
