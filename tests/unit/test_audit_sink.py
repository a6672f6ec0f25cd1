"""The audit trail: every transition numbered, sent to the sink at least once with a key that
makes it exactly once for a receiver that dedups, retried with backoff, losses counted.

The pass runs against the in-memory API server and router of test_reconcile.py; the sink is in
memory too, except in the webhook tests, which post to a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.status import AuditExport, GateStatus, HistoryEntry
from checkout_gates.audit.port import AuditDeliveryError
from checkout_gates.audit.webhook import WebhookSink
from checkout_gates.cli.audit import _records_in as records_in
from checkout_gates.cli.audit import gaps, merge
from checkout_gates.controller.reconcile import Reconciler
from checkout_gates.rollout import audit
from checkout_gates.rollout.draft import Draft
from checkout_gates.rollout.plan import next_pass_delay

from .rollouts import T0, rollout_doc
from .test_reconcile import NAME, NAMESPACE, FakeCluster, ProcessKilledError


class MemorySink:
    description = "audit sink in memory"

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.failing = 0  # refuse this many deliveries first
        self.die_after_accepting = False  # the operator dies once the sink has taken a batch

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self.failing:
            self.failing -= 1
            raise AuditDeliveryError("audit webhook at http://audit.example answered 503")
        self.batches.append([dict(record) for record in records])
        if self.die_after_accepting:
            self.die_after_accepting = False
            raise ProcessKilledError("killed after the sink took the batch")

    async def aclose(self) -> None:
        pass

    @property
    def received(self) -> list[dict[str, Any]]:
        return [record for batch in self.batches for record in batch]


class AuditedCluster(FakeCluster):
    def __init__(self, document: dict[str, Any], sink: MemorySink) -> None:
        super().__init__(document)
        self.sink = sink

    async def run_pass(self) -> float | None:
        reconciler = Reconciler(self.server, routers=self.routers, clock=lambda: self.now, audit_sink=self.sink)
        try:
            return await reconciler.reconcile(NAMESPACE, NAME)
        finally:
            await reconciler.close()

    async def until_promoted(self, passes: int = 20) -> None:
        for _ in range(passes):
            if self.server.rollout().status.phase == "Promoted":
                return
            await self.run_pass()
            self.now += timedelta(seconds=1)
        raise AssertionError(f"not promoted: {self.server.rollout().status.phase}")


def three_steps() -> dict[str, Any]:
    return rollout_doc([{"setWeight": 5}, {"setWeight": 50}, {"setWeight": 100}])


def trail_of(rollout: CheckoutRollout) -> list[dict[str, Any]]:
    return [audit.record(rollout.metadata, seq, entry) for seq, entry in audit.numbered(rollout.status)]


async def test_every_transition_of_a_rollout_reaches_the_sink_once_in_order_and_nothing_more() -> None:
    sink = MemorySink()
    cluster = AuditedCluster(three_steps(), sink)
    await cluster.until_promoted()
    rollout = cluster.server.rollout()
    assert sink.received == trail_of(rollout)
    assert [r["seq"] for r in sink.received] == list(range(1, rollout.status.epoch + 1))
    assert [r["action"] for r in sink.received][-1] == "Promoted"
    assert len({r["key"] for r in sink.received}) == len(sink.received)
    assert sink.received[0]["key"] == f"{NAMESPACE}/{NAME}/0b7e-uid/1"
    assert rollout.status.audit is not None and rollout.status.audit.delivered == rollout.status.epoch
    batches = len(sink.batches)
    for _ in range(3):
        await cluster.run_pass()
    assert len(sink.batches) == batches, "a delivered record is not sent again"


async def test_a_batch_the_sink_took_before_the_operator_died_is_sent_again_with_the_same_keys() -> None:
    sink = MemorySink()
    cluster = AuditedCluster(three_steps(), sink)
    sink.die_after_accepting = True
    with pytest.raises(ProcessKilledError):
        await cluster.run_pass()
    first = sink.batches[0]
    assert cluster.server.rollout().status.audit is None, "died before recording the delivery"
    await cluster.until_promoted()
    assert sink.batches[1][: len(first)] == first, "the same records again, same keys"
    deduped = {record["key"]: record for record in sink.received}
    assert list(deduped.values()) == trail_of(cluster.server.rollout()), "exactly once, for a receiver that dedups"


async def test_a_failing_sink_stops_nothing_and_is_retried_with_a_growing_wait() -> None:
    sink = MemorySink()
    sink.failing = 3
    cluster = AuditedCluster(three_steps(), sink)
    delay = await cluster.run_pass()
    status = cluster.server.rollout().status
    assert status.phase == "Progressing" and status.weights.canary == 5, "exposure does not wait for the sink"
    assert status.audit is not None and status.audit.failures == 1 and status.audit.delivered == 0
    assert "answered 503" in status.audit.error
    assert delay is not None and delay <= audit.RETRY_FIRST
    waits = []
    for _ in range(2):  # a pass before the backoff is up sends nothing; one after it, again
        export = cluster.server.rollout().status.audit
        assert export is not None
        wait = audit.retry_after(export)
        assert wait is not None
        waits.append(wait)
        cluster.now += timedelta(seconds=wait / 2)
        tries = sink.failing
        await cluster.run_pass()
        assert sink.failing == tries, "not before its backoff"
        cluster.now += timedelta(seconds=wait)
        await cluster.run_pass()
    assert waits == [audit.RETRY_FIRST, audit.RETRY_FIRST * 2]
    await cluster.until_promoted()
    export = cluster.server.rollout().status.audit
    assert export is not None and export.failures == 3, "the third refusal, after the promotion"
    cluster.now += timedelta(seconds=audit.retry_after(export) or 0)
    delay = await cluster.run_pass()
    rollout = cluster.server.rollout()
    assert rollout.status.audit is not None and rollout.status.audit.error == ""
    assert delay == next_pass_delay(rollout, cluster.now, failed=False), "nothing waits for the sink now"
    assert {r["key"]: r for r in sink.received} == {r["key"]: r for r in trail_of(rollout)}


def test_nothing_to_send_is_no_reason_for_a_sooner_pass() -> None:
    fresh = a_rollout_with_history(first_seq=1, count=0, delivered=None)
    assert not audit.waiting(fresh.status), "no history yet"
    emptied = fresh.status.model_copy(update={"epoch": 9})  # an epoch ahead of an emptied history
    assert not audit.waiting(emptied)
    assert audit.waiting(a_rollout_with_history(first_seq=3, count=2, delivered=3).status)
    assert not audit.waiting(a_rollout_with_history(first_seq=3, count=2, delivered=4).status)


def test_the_backoff_doubles_to_five_minutes() -> None:
    assert audit.retry_after(AuditExport(failures=5000)) == audit.RETRY_MAX, "days of refusals: no overflow"
    waits = [audit.retry_after(AuditExport(failures=n)) for n in range(1, 10)]
    assert waits[:3] == [5.0, 10.0, 20.0] and waits[-1] == audit.RETRY_MAX
    assert audit.retry_after(AuditExport()) is None and audit.retry_after(None) is None


def a_rollout_with_history(first_seq: int, count: int, delivered: int | None) -> CheckoutRollout:
    parsed = parse_rollout(three_steps())
    assert isinstance(parsed, CheckoutRollout)
    entries = [
        HistoryEntry(
            time=T0 + timedelta(seconds=seq),
            actor="checkout-gates",
            action="StepAdvanced",
            reason=f"entry {seq}",
            step=0,
            canary_weight=5,
            generation=1,
            seq=seq,
        )
        for seq in range(first_seq, first_seq + count)
    ]
    export = AuditExport(delivered=delivered) if delivered is not None else None
    status = parsed.status.model_copy(update={"history": entries, "epoch": first_seq + count - 1, "audit": export})
    return parsed.model_copy(update={"status": status})


def test_records_that_left_the_history_before_the_sink_took_them_are_counted_lost_once() -> None:
    rollout = a_rollout_with_history(first_seq=11, count=50, delivered=5)
    sent = audit.pending(rollout)
    assert sent.lost == 5 and sent.gone_through == 10
    assert [r["seq"] for r in sent.records] == list(range(11, 61))
    failed = audit.exported(rollout.status, sent, "answered 503", T0)
    assert failed.audit is not None and failed.audit.lost == 5 and failed.audit.delivered == 10
    again = audit.pending(rollout.model_copy(update={"status": failed}))
    assert again.lost == 0, "counted once"
    done = audit.exported(failed, again, "", T0)
    assert done.audit == AuditExport(delivered=60, lost=5, attempted_at=T0)


def test_a_rollout_new_to_the_sink_sends_its_whole_history_and_counts_nothing_lost() -> None:
    rollout = a_rollout_with_history(first_seq=200, count=50, delivered=None)
    sent = audit.pending(rollout)
    assert sent.lost == 0 and len(sent.records) == 50 and sent.through == 249
    failed = audit.exported(rollout.status, sent, "answered 503", T0)
    again = audit.pending(rollout.model_copy(update={"status": failed}))
    assert again.lost == 0, "its past before the sink is not lost, also after a failed first delivery"


def test_entries_written_before_seq_existed_are_numbered_by_their_place() -> None:
    rollout = a_rollout_with_history(first_seq=7, count=4, delivered=None)
    legacy = [entry.model_copy(update={"seq": 0}) for entry in rollout.status.history]
    status = rollout.status.model_copy(update={"history": legacy})
    assert [seq for seq, _ in audit.numbered(status)] == [7, 8, 9, 10]


def test_a_recorded_transition_carries_its_number_the_gates_evidence_and_the_revision() -> None:
    parsed = parse_rollout(three_steps())
    assert isinstance(parsed, CheckoutRollout)
    draft = Draft(parsed, T0)
    draft.update(
        epoch=41,
        gates=[
            GateStatus(
                name="auth-approval",
                verdict="Fail",
                reason="drop",
                segment='provider="adyen"',
                value=0.9123,
                baseline=0.9611,
                samples=1204,
                evaluated_at=T0,
            ),
            GateStatus(name="duplicate-charges", verdict="Pass", reason="none", evaluated_at=T0),
        ],
    )
    draft.record("Halted", "gate auth-approval failed")
    entry = draft.status.history[-1]
    assert entry.seq == 42 == draft.status.epoch
    assert entry.evidence == 'auth-approval Fail 0.9123 vs 0.9611 n=1204 [provider="adyen"]; duplicate-charges Pass'
    assert entry.revision == "", "no workloadRef: no revision"


def test_evidence_is_bounded() -> None:
    gates = [
        GateStatus(name=f"gate-{i}", verdict="Pass", reason="", evaluated_at=T0, segment="x" * 40) for i in range(40)
    ]
    text = audit.evidence(gates)
    assert len(text) == 512 and text.endswith("…")


# --- the CLI's trail ------------------------------------------------------------------------------


def test_the_trail_is_the_status_history_and_the_stored_records_once_each_in_order() -> None:
    rollout = a_rollout_with_history(first_seq=51, count=50, delivered=100)
    older = a_rollout_with_history(first_seq=1, count=50, delivered=None)
    stored = trail_of(older) + trail_of(rollout)[:10]  # the sink also has some the status still holds
    records, differing = merge(rollout, stored[::-1])
    assert [r["seq"] for r in records] == list(range(1, 101)) and differing == []
    assert gaps({r["seq"] for r in records}, 100) == []
    assert gaps({1, 2, 5, 9}, 10) == [(3, 4), (6, 8), (10, 10)]
    assert gaps({1, 10**18}, 10**18) == [(2, 10**18 - 1)], "a hostile number is no loop"


def test_a_stored_record_that_says_something_else_than_the_status_is_named() -> None:
    rollout = a_rollout_with_history(first_seq=1, count=3, delivered=3)
    forged = {**trail_of(rollout)[1], "actor": "mallory"}
    records, differing = merge(rollout, [forged])
    assert differing == [forged["key"]] and records[1]["actor"] == "checkout-gates"


def test_records_are_read_from_sink_bodies_and_log_lines_and_nothing_else() -> None:
    rollout = a_rollout_with_history(first_seq=1, count=3, delivered=3)
    one, two, three = trail_of(rollout)
    lines = [
        json.dumps({"records": [one, two]}),
        json.dumps({"event": "audit", "logger": "checkout_gates.audit", "level": "info", **three}),
        json.dumps({"event": "phase changed", "key": "x", "seq": 4}),  # not an audit line
        "[2026-12-02 10:00:00,000] kopf._core.reactor: plain text",
        '{"truncated": ',
        json.dumps({"key": "no-seq"}),
        json.dumps([1, 2]),
    ]
    found = list(records_in(lines))
    assert [r["seq"] for r in found] == [1, 2, 3]


# --- the webhook adapter, against a real HTTP server -----------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.answers: list[int] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            seen.requests.append((dict(self.headers.items()), body))
            status = seen.answers.pop(0) if seen.answers else 200
            text = b'{"secret": "a body the operator must not repeat"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ingest/secret-path-token", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_the_webhook_posts_the_batch_with_the_token_read_at_every_delivery(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    url, seen = server
    token = tmp_path / "token"
    token.write_text("first\n")
    sink = WebhookSink(url, token_file=token)
    records = trail_of(a_rollout_with_history(first_seq=1, count=2, delivered=None))
    await sink.send(records)
    token.write_text("rotated")
    await sink.send(records[:1])
    await sink.aclose()
    (headers, body), (rotated, _) = seen.requests
    assert body == {"records": records}
    assert headers["Authorization"] == "Bearer first" and rotated["Authorization"] == "Bearer rotated"
    assert "secret-path-token" not in sink.description


async def test_the_webhook_says_what_went_wrong_without_the_answer_or_the_path(server: tuple[str, Seen]) -> None:
    url, seen = server
    sink = WebhookSink(url)
    seen.answers = [503]
    with pytest.raises(AuditDeliveryError) as refused:
        await sink.send([{"key": "k", "seq": 1}])
    assert str(refused.value) == f"{sink.description} answered 503"
    assert "secret" not in str(refused.value)
    await sink.aclose()
    gone = WebhookSink("http://127.0.0.1:9/ingest/secret-path-token")
    with pytest.raises(AuditDeliveryError) as unreachable:
        await gone.send([])
    assert "ConnectError" in str(unreachable.value) and "secret" not in str(unreachable.value)
    await gone.aclose()


async def test_a_token_file_that_went_away_is_a_failed_delivery_not_a_crash(tmp_path: Path) -> None:
    sink = WebhookSink("http://127.0.0.1:9/x", token_file=tmp_path / "gone")
    with pytest.raises(AuditDeliveryError, match="token file"):
        await sink.send([])
    (tmp_path / "gone").write_bytes(b"\xff\xfe")
    with pytest.raises(AuditDeliveryError, match="not UTF-8"):
        await sink.send([])
    (tmp_path / "gone").write_text("t\u00f6ken")  # no HTTP header carries it
    with pytest.raises(AuditDeliveryError):
        await sink.send([])
    await sink.aclose()


async def test_a_sink_that_raises_anything_or_hangs_is_a_failed_delivery_and_the_pass_records_its_outcomes() -> None:
    class Broken(MemorySink):
        async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
            raise RuntimeError("a bug in a sink")

    cluster = AuditedCluster(three_steps(), Broken())
    await cluster.run_pass()
    status = cluster.server.rollout().status
    assert status.router_target == status.weights, "the router's confirmation was still recorded"
    assert status.audit is not None and status.audit.error == "audit sink: RuntimeError"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://audit.example/x", "want http"),
        ("http:///x", "want http"),
        ("https://user:pw@audit.example/x", "not in the URL"),
    ],
)
def test_an_unusable_sink_url_is_refused_with_the_fix(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        WebhookSink(url)
