"""``checkout-gates audit NAME``: a rollout's whole trail, one record per transition.

The status keeps the last 50 transitions; the audit sink (``run --audit-url``) and the operator's
log (logger ``checkout_gates.audit``) keep them all. ``--records FILE`` reads what either stored,
as JSON lines: audit records, the operator's log lines (other lines are skipped), or the sink's
``{"records": [...]}`` bodies. The trail is the union, deduplicated on each record's key, in the
order the transitions happened (``seq``); a gap in the numbering is named, never papered over.

Exit codes: 0 the whole trail (seq 1 to the last, none missing); 2 shown, but records are
missing (say which); 3 an error (the cluster, no such rollout and no records, an unreadable file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from checkout_gates.api.resource import ObjectMeta, problems_of
from checkout_gates.api.status import CheckoutRolloutStatus
from checkout_gates.cli import cluster
from checkout_gates.rollout import audit as trail

EXIT_COMPLETE, EXIT_GAPS, EXIT_ERROR = 0, 2, 3
Record = dict[str, Any]

EXIT_HELP = """\
exit codes:
  0  the whole trail: every transition from the first (seq 1) to the last
  2  shown, but some transitions are in neither the status nor the records given (named on stderr)
  3  an error: the cluster, no such rollout (and no records of it), an unreadable records file
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="print a rollout's whole audit trail: who did what, why, and what the gates said",
        description="Print every transition of one CheckoutRollout, oldest first: its number, when, who, "
        "what, why, the step and canary weight, the revision and the gates' evidence. The status holds "
        "the last 50; give --records for the rest (the audit sink's records or the operator's log).",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="the CheckoutRollout")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    parser.add_argument(
        "--records",
        metavar="FILE",
        action="append",
        default=[],
        help="JSON lines from the audit sink or the operator's log ('-' for stdin); repeatable",
    )
    parser.add_argument(
        "--uid",
        help="the rollout object to show (default: the one that exists now; a deleted rollout's from the records)",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="json: one record per line")
    cluster.add_arguments(parser)
    parser.set_defaults(handler=run_audit)


def run_audit(arguments: argparse.Namespace) -> int:
    try:
        stored = [record for source in arguments.records for record in _read(source)]
    except OSError as error:
        print(f"--records {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_ERROR
    try:
        kube = cluster.connect(arguments.kubeconfig, arguments.context)
        namespace = arguments.namespace or kube.namespace
        rollout = _rollout(kube, namespace, arguments.name)
    except cluster.ClusterError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    name = arguments.name
    mine = [r for r in stored if r.get("namespace") == namespace and r.get("rollout") == name]
    uid = arguments.uid or (rollout.metadata.uid if rollout is not None else _last_uid(mine))
    if rollout is None and uid is None:
        print(f"{namespace}/{name}: no such rollout, and no records of it in the files given", file=sys.stderr)
        return EXIT_ERROR
    live = rollout if rollout is not None and rollout.metadata.uid == uid else None
    records, differing = merge(live, [r for r in mine if r.get("uid") == uid])
    if not records and live is None:
        print(f"{namespace}/{name}: no records of uid {uid} in the files given", file=sys.stderr)
        return EXIT_ERROR
    for key in differing:
        print(f"record {key} differs between the status and the records given: the status's is shown", file=sys.stderr)
    _print(records, arguments.output, sys.stdout)
    last = live.status.epoch if live is not None else max((int(r["seq"]) for r in records), default=0)
    missing = gaps({int(r["seq"]) for r in records}, last)
    if missing:
        named = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in missing)
        where = "the status (the last 50)" if live is not None else "the records (the rollout is gone)"
        print(
            f"{namespace}/{name}: transitions {named} of {last} are in neither {where} nor the records given",
            file=sys.stderr,
        )
        return EXIT_GAPS
    return EXIT_COMPLETE


@dataclass(frozen=True)
class Live:
    """What the trail needs of the rollout that exists now: its metadata and its status (not its
    spec: an invalid spec has a record too)."""

    metadata: ObjectMeta
    status: CheckoutRolloutStatus


def _rollout(kube: cluster.Cluster, namespace: str, name: str) -> Live | None:
    try:
        raw = kube.get_rollout(namespace, name)
    except cluster.NotFoundError:
        return None
    try:
        return Live(
            ObjectMeta.model_validate(raw["metadata"]), CheckoutRolloutStatus.model_validate(raw.get("status") or {})
        )
    except ValidationError as error:
        problems = "; ".join(str(p) for p in problems_of(error))[:300]
        raise cluster.ClusterError(f"{namespace}/{name}: its status cannot be read: {problems}") from None


def merge(rollout: Live | None, stored: Iterable[Record]) -> tuple[list[Record], list[str]]:
    """The records of the status history and the stored ones, one per key, in seq order; and the
    keys whose stored record says something else than the status."""
    by_key: dict[str, Record] = {}
    for record in stored:
        by_key.setdefault(str(record["key"]), record)
    differing = []
    if rollout is not None:
        for seq, entry in trail.numbered(rollout.status):
            record = trail.record(rollout.metadata, seq, entry)
            known = by_key.get(record["key"])
            if known is not None and {k: known.get(k) for k in record} != record:
                differing.append(record["key"])
            by_key[record["key"]] = record
    return sorted(by_key.values(), key=lambda r: int(r["seq"])), differing


def gaps(seen: set[int], last: int) -> list[tuple[int, int]]:
    """The runs of numbers from 1 to ``last`` not in ``seen``."""
    runs: list[tuple[int, int]] = []
    expected = 1  # from the numbers seen, not by counting up to `last` (a record may say 10**18)
    for seq in sorted(s for s in seen if 1 <= s <= last):
        if seq > expected:
            runs.append((expected, seq - 1))
        expected = seq + 1
    if expected <= last:
        runs.append((expected, last))
    return runs


def _read(source: str) -> Iterator[Record]:
    """The audit records in one file of JSON lines; anything else on a line is skipped."""
    if source == "-":
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
        yield from _records_in(sys.stdin)
        return
    with Path(source).open(encoding="utf-8", errors="replace") as stream:
        yield from _records_in(stream)


def _records_in(lines: Iterable[str]) -> Iterator[Record]:
    for raw in lines:
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested past what the parser takes
            continue
        found = document.get("records") if isinstance(document, dict) else None
        for candidate in found if isinstance(found, list) else [document]:
            if _is_record(candidate):
                yield candidate


def _is_record(candidate: Any) -> bool:
    if not isinstance(candidate, dict) or candidate.get("event", "audit") != "audit":
        return False
    seq = candidate.get("seq")
    fields = isinstance(candidate.get("key"), str) and isinstance(candidate.get("uid"), str)
    return fields and isinstance(seq, int) and not isinstance(seq, bool) and seq > 0


def _last_uid(records: list[Record]) -> str | None:
    """The uid of the latest rollout object of that name in the records."""
    latest = max(records, key=lambda r: str(r.get("time", "")), default=None)
    return str(latest.get("uid")) if latest is not None else None


def _print(records: list[Record], output: str, out: TextIO) -> None:
    if output == "json":
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        return
    for record in records:
        canary = f"{record.get('canary_weight', 0)}%"
        line = (
            f"{record['seq']:>4}  {record.get('time', '')}  {record.get('actor', '')}  {record.get('action', '')}"
            f"  step {record.get('step', 0)}  canary {canary}"
        )
        if record.get("revision"):
            line += f"  revision {record['revision']}"
        out.write(f"{line}\n      {record.get('reason', '')}\n")
        if record.get("evidence"):
            out.write(f"      gates: {record['evidence']}\n")
