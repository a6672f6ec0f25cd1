"""Write the example recordings in examples/recordings/ from a seeded model of checkout traffic.

    .venv/bin/python hack/make_recordings.py           # (re)write examples/recordings/*.jsonl
    .venv/bin/python hack/make_recordings.py --check   # exit 1 when a committed recording is stale

Three scenarios against ``examples/recordings/rollout.yaml`` (the gates of card-payments.yaml):

* ``healthy``: canary and stable behave alike; the rollout promotes.
* ``regression``: the canary's authorization approval drops 3 percentage points on one provider
  (adyen, card and wallet); the sequential auth-approval gate halts the rollout.
* ``low-traffic``: a hundredth of the traffic; the gates never see minSamples and stay Inconclusive.

Traffic follows the router's weights, the way real traffic does: the model runs the rollout through
the replay loop (:mod:`checkout_gates.rollout.replay`) as it goes, and each interval's canary share
is the weight the rollout had set at the start of it. Replaying a recording therefore retraces the
rollout that produced it.

What a line holds (see :mod:`checkout_gates.metrics.recording`): ratio and count gates record each
analysis interval's increase (``"window": "30s"``), which the replay adds up over a longer query
window; the p99-latency gate records the quantile over its own query window (``"window": "5m"``),
because quantiles do not add up. The same model also writes the underlying counters and histogram
as OpenMetrics (:meth:`Generated.openmetrics`), so that the integration tests can backfill a real
Prometheus with exactly the data a recording holds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.metrics.recording import RecordingSource
from checkout_gates.rollout.replay import Replayer, ReplayResult

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "recordings"
ROLLOUT = FOLDER / "rollout.yaml"

SEED = 20261127
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
INTERVAL = 30  # seconds: the rollout's analysis interval, and the resolution of the model
SUBSTEPS = 3  # OpenMetrics samples per interval (every 10 s), so that any window holds several

Side = Literal["stable", "canary"]
SIDES: tuple[Side, Side] = ("stable", "canary")
PROVIDERS = {"adyen": 0.6, "stripe": 0.4}
METHODS = {"card": 0.7, "wallet": 0.3}
APPROVAL = {("adyen", "card"): 0.93, ("adyen", "wallet"): 0.96, ("stripe", "card"): 0.91, ("stripe", "wallet"): 0.95}
CAPTURE_SUCCESS = 0.999
# Latency histogram: bucket upper bounds and the share of requests that falls in each (not cumulative).
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, math.inf)
LATENCY_SHARES = (0.30, 0.40, 0.20, 0.08, 0.019, 0.001)
LATENCY_MIDPOINTS = (0.05, 0.17, 0.37, 0.7, 1.5, 3.0)  # for the histogram's _sum


@dataclass(frozen=True)
class Scenario:
    name: str
    minutes: int
    requests_per_second: float  # all checkout traffic, both variants
    approval_drop: Mapping[str, float] = field(default_factory=dict)  # provider -> canary's drop
    description: str = ""


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("healthy", 45, 1000.0, description="canary like stable: promotes"),
        Scenario("regression", 30, 1000.0, {"adyen": 0.03}, "canary auth approval -3pp on adyen: halts"),
        Scenario("low-traffic", 15, 10.0, description="1/100 of the traffic: stays Inconclusive"),
    )
}


@dataclass
class Counts:
    """One variant's events in one analysis interval."""

    auth: dict[tuple[str, str], tuple[int, int]]  # (provider, method) -> (approved, total)
    capture: dict[str, tuple[int, int]]  # provider -> (succeeded, total)
    duplicates: int
    latency: tuple[int, ...]  # requests per bucket, not cumulative

    @property
    def requests(self) -> int:
        return sum(self.latency)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n < 60:
        return sum(1 for _ in range(n) if rng.random() < p)
    draw = round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))
    return min(n, max(0, draw))


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0.0:
        return 0
    if mean < 30.0:
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _counts(rng: random.Random, scenario: Scenario, side: Side, share: float) -> Counts:
    auth: dict[tuple[str, str], tuple[int, int]] = {}
    for provider, provider_share in PROVIDERS.items():
        for method, method_share in METHODS.items():
            total = _poisson(rng, scenario.requests_per_second * INTERVAL * share * provider_share * method_share)
            approval = APPROVAL[provider, method]
            if side == "canary":
                approval -= scenario.approval_drop.get(provider, 0.0)
            auth[provider, method] = (_binomial(rng, total, approval), total)
    capture: dict[str, tuple[int, int]] = {}
    for provider in PROVIDERS:
        approved = sum(good for (p, _), (good, _) in auth.items() if p == provider)
        capture[provider] = (_binomial(rng, approved, CAPTURE_SUCCESS), approved)
    remaining, left, latency = sum(total for _, total in auth.values()), 1.0, []
    for bucket_share in LATENCY_SHARES:
        count = _binomial(rng, remaining, min(1.0, bucket_share / left)) if left > 0 else 0
        latency.append(count)
        remaining -= count
        left -= bucket_share
    latency[-1] += remaining
    return Counts(auth=auth, capture=capture, duplicates=0, latency=tuple(latency))


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on (upper bound, cumulative count) pairs, +Inf last."""
    if len(cumulative) < 2 or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    index = next((i for i, (_, count) in enumerate(cumulative[:-1]) if count >= rank), len(cumulative) - 1)
    if index == len(cumulative) - 1:
        return cumulative[-2][0]
    start, below = (cumulative[index - 1][0], cumulative[index - 1][1]) if index > 0 else (0.0, 0.0)
    end, count = cumulative[index][0], cumulative[index][1] - below
    return start + (end - start) * ((rank - below) / count)


def _time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m" if seconds % 60 == 0 else f"{int(seconds)}s"


@dataclass
class Generated:
    scenario: Scenario
    start: datetime
    times: list[datetime]
    counts: list[dict[Side, Counts]]  # per time: the interval that ends then
    lines: list[dict[str, Any]]
    result: ReplayResult

    def jsonl(self) -> str:
        return "".join(json.dumps(line) + "\n" for line in self.lines)

    def openmetrics(self, labels: Mapping[str, str] | None = None) -> str:
        """The counters and histogram behind the recording as OpenMetrics text (see :func:`openmetrics`)."""
        return openmetrics([(self, labels or {})])

    def families(self, labels: Mapping[str, str]) -> dict[str, list[str]]:
        """OpenMetrics sample lines by metric family, sampled every INTERVAL/SUBSTEPS seconds.

        ``labels`` are added to every series (e.g. a test run's id), before ``variant``.
        """
        extra = "".join(f'{key}="{value}",' for key, value in labels.items())
        # The interval before the first time is all zeros, so that every window has a start sample.
        intervals = [{side: _zero() for side in SIDES}, *self.counts]
        first = self.times[0] - timedelta(seconds=INTERVAL)
        step = INTERVAL / SUBSTEPS

        def samples(name: str, label_text: str, per_interval: list[float]) -> list[str]:
            out = [f"{name}{{{label_text}}} 0 {first.timestamp():.0f}"]
            total = 0.0
            for index, increment in enumerate(per_interval[1:]):
                begins = first + timedelta(seconds=INTERVAL * index)
                for sub in range(1, SUBSTEPS + 1):
                    value = total + increment * sub / SUBSTEPS
                    when = begins + timedelta(seconds=step * sub)
                    out.append(f"{name}{{{label_text}}} {_number(value)} {when.timestamp():.0f}")
                total += increment
            return out

        families: dict[str, list[str]] = {name: [] for name in FAMILIES}
        for side in SIDES:
            for provider, method in APPROVAL:
                for outcome in ("approved", "declined"):
                    series = [_part(c[side].auth[provider, method], outcome == "approved") for c in intervals]
                    label_text = f'{extra}variant="{side}",provider="{provider}",method="{method}",outcome="{outcome}"'
                    families["payment_authorizations"] += samples("payment_authorizations_total", label_text, series)
            for provider in PROVIDERS:
                for outcome in ("succeeded", "failed"):
                    series = [_part(c[side].capture[provider], outcome == "succeeded") for c in intervals]
                    label_text = f'{extra}variant="{side}",provider="{provider}",outcome="{outcome}"'
                    families["payment_captures"] += samples("payment_captures_total", label_text, series)
            series = [float(c[side].duplicates) for c in intervals]
            families["payment_duplicate_charges"] += samples(
                "payment_duplicate_charges_total", f'{extra}variant="{side}"', series
            )
            label_text = f'{extra}variant="{side}"'
            cumulative = [[float(sum(c[side].latency[: i + 1])) for i in range(len(BUCKETS))] for c in intervals]
            sums = [sum(n * mid for n, mid in zip(c[side].latency, LATENCY_MIDPOINTS, strict=True)) for c in intervals]
            per_series = [
                samples(
                    "checkout_request_duration_seconds_bucket",
                    f'{label_text},le="{"+Inf" if math.isinf(bound) else f"{bound:g}"}"',
                    [row[i] for row in cumulative],
                )
                for i, bound in enumerate(BUCKETS)
            ]
            per_series.append(
                samples("checkout_request_duration_seconds_count", label_text, [row[-1] for row in cumulative])
            )
            per_series.append(samples("checkout_request_duration_seconds_sum", label_text, sums))
            # A histogram's samples go moment by moment: every bucket, the count and the sum of one time.
            for moment in zip(*per_series, strict=True):
                families["checkout_request_duration_seconds"] += moment
        return families


FAMILIES = {
    "payment_authorizations": "counter",
    "payment_captures": "counter",
    "payment_duplicate_charges": "counter",
    "checkout_request_duration_seconds": "histogram",
}


def openmetrics(parts: Sequence[tuple[Generated, Mapping[str, str]]]) -> str:
    """One OpenMetrics document (for ``promtool tsdb create-blocks-from openmetrics``) holding the
    data of several recordings, each with its own extra labels so that their series stay apart."""
    lines: list[str] = []
    collected = [generated.families(labels) for generated, labels in parts]
    for family, kind in FAMILIES.items():
        lines.append(f"# TYPE {family} {kind}")
        for families in collected:
            lines += families[family]
    return "\n".join(lines) + "\n# EOF\n"


def _part(counts: tuple[int, int], good: bool) -> float:
    """The good events of (good, total), or the others."""
    return float(counts[0] if good else counts[1] - counts[0])


def _zero() -> Counts:
    return Counts(
        auth=dict.fromkeys(APPROVAL, (0, 0)),
        capture=dict.fromkeys(PROVIDERS, (0, 0)),
        duplicates=0,
        latency=(0,) * len(BUCKETS),
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.6f}"


def load_rollout(path: Path = ROLLOUT) -> CheckoutRollout:
    return CheckoutRollout.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def _lines_at(
    t: datetime, history: list[dict[Side, Counts]], rollout: CheckoutRollout, latency_window: float
) -> list[dict[str, Any]]:
    when, window = _time(t), _duration(INTERVAL)
    now = history[-1]
    lines: list[dict[str, Any]] = []
    for side in SIDES:
        for (provider, method), (good, total) in now[side].auth.items():
            labels = {"method": method, "provider": provider}
            lines.append(
                {"t": when, "gate": "auth-approval", "variant": side, "labels": labels, "good": good, "total": total}
                | {"window": window}
            )
    for side in SIDES:
        for provider, (good, total) in now[side].capture.items():
            lines.append(
                {"t": when, "gate": "capture-success", "variant": side, "labels": {"provider": provider}}
                | {"good": good, "total": total, "window": window}
            )
    for side in SIDES:
        lines.append(
            {"t": when, "gate": "duplicate-charges", "variant": side, "value": now[side].duplicates, "window": window}
        )
    span = max(1, round(latency_window / INTERVAL))
    for side in SIDES:
        buckets = [sum(c[side].latency[i] for c in history[-span:]) for i in range(len(BUCKETS))]
        cumulative = [(bound, float(sum(buckets[: i + 1]))) for i, bound in enumerate(BUCKETS)]
        quantile = histogram_quantile(0.99, cumulative)
        line: dict[str, Any] = {"t": when, "gate": "p99-latency", "variant": side}
        if not math.isnan(quantile):
            line["value"] = round(quantile, 6)
        line |= {"samples": sum(buckets), "window": _duration(latency_window)}
        lines.append(line)
    return lines


def generate(
    name: str, *, start: datetime = START, rollout: CheckoutRollout | None = None, minutes: int | None = None
) -> Generated:
    """One scenario's recording, deterministic for a given name, start, rollout and length."""
    scenario = SCENARIOS[name]
    rollout = rollout or load_rollout()
    p99 = rollout.spec.gate("p99-latency")
    latency_window = parse_duration(p99.window) if p99.window else rollout.spec.interval_seconds()
    rng = random.Random(f"{SEED}-{name}")
    replayer = Replayer(rollout)
    times: list[datetime] = []
    history: list[dict[Side, Counts]] = []
    lines: list[dict[str, Any]] = []
    for index in range((minutes or scenario.minutes) * 60 // INTERVAL + 1):
        t = start + timedelta(seconds=INTERVAL * index)
        # The interval that ends now ran at the weights the rollout set at the last decision.
        weights = replayer.status.weights
        counts = {side: _counts(rng, scenario, side, getattr(weights, side) / 100.0) for side in SIDES}
        if index == 0:
            counts = {side: _zero() for side in SIDES}
        history.append(counts)
        times.append(t)
        moment = _lines_at(t, history, rollout, latency_window)
        lines += moment
        readings = RecordingSource.parse("".join(json.dumps(line) + "\n" for line in moment)).readings_at(t)
        replayer.advance(t, readings)
    return Generated(scenario, start, times, history, lines, replayer.result())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed recordings, write nothing")
    parser.add_argument("names", nargs="*", metavar="SCENARIO", help=f"some of {', '.join(SCENARIOS)} (default: all)")
    arguments = parser.parse_args(argv)
    unknown = [name for name in arguments.names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    stale = 0
    for name in arguments.names or list(SCENARIOS):
        generated = generate(name)
        path = FOLDER / f"{name}.jsonl"
        result = generated.result
        summary = (
            f"{path.relative_to(ROOT)}: {len(generated.lines)} lines, {len(generated.times)} times; "
            f"replays to {result.outcome} (phase {result.status.phase}, step {result.status.current_step})"
        )
        if arguments.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == generated.jsonl()
            stale += not same
            print(f"{summary}: {'up to date' if same else 'STALE (run hack/make_recordings.py)'}")
        else:
            path.write_text(generated.jsonl(), encoding="utf-8")
            print(summary)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
