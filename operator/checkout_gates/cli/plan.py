"""``checkout-gates plan``: how long a rollout must hold for its gates to find a regression.

For every gate that spends the rollout's budget (sequential, ``counts: exact``) and each of its
segments, on a traffic profile (given in a file, or stable's last hour read from Prometheus): the
power to find the planned regression within the rollout's steps (each gate step held for exactly
its window), the time by which it is found with 95% power, and a warning where the plan is too
short. The arithmetic is rollout/power.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from checkout_gates.api.base import ApiModel, JsonNumber
from checkout_gates.api.quantities import format_duration
from checkout_gates.api.resource import CheckoutRollout, problems_of
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.cli.common import (
    EXIT_INVALID,
    TIME_HELP,
    InvalidInputError,
    add_prometheus_argument,
    dry_run_parser,
    file_name,
    load_rollout,
    parse_time,
    read_documents,
)
from checkout_gates.cli.output import table_lines
from checkout_gates.gates.budget import budgeted
from checkout_gates.gates.evaluate import null_relative_risk
from checkout_gates.rollout.power import (
    POWER,
    Phase,
    SegmentPower,
    Traffic,
    log_bar,
    phases,
    regressed_rate,
    segment_power,
)

EXIT_ENOUGH = 0  # every segment is found with 95% power within the plan
EXIT_SHORT = 1  # some segment is not: the warnings say where and how much longer
REGRESSION = r"^[0-9]+(\.[0-9]+)?(pp|x)$"
LOOKBACK_SECONDS = 3600.0

DESCRIPTION = """\
Say, per budgeted gate and segment, whether the rollout's plan is long enough to find a regression:
its power within the plan (every gate step held for exactly its window, approvals at once) and
when it reaches 95%, on a traffic profile: --profile FILE, or --prometheus URL (stable's traffic
over the hour before --at, taken as all of the service's traffic: ask before the rollout starts).

The regression planned for is, per gate, the profile's `regression` ("3pp" more bad events, "2x"
the bad rate), else the tolerated excess once more beyond the tolerance (maxDrop 0.5pp: 1pp more;
maxRise 50%: 2x), or 1pp / 2x for a gate that tolerates nothing. A segment is planned for a
regression in it alone (its test must carry the rollout's whole budget), and "all (pooled)" for one
spread over the gate. The power stated errs low (rollout/power.py says why and how it is checked).
"""

EPILOG = """\
profile (YAML):
  gates:
    auth-approval:
      rate: 38.5        # the gate's requests per second (its total / exposure), both arms together
      bad: 0.05         # stable's bad rate (ratio: 1 - good/total; count: events per request)
      regression: 3pp   # optional
      segments:         # optional: each segment's share of the rate and its bad rate
        - {segment: "method=applepay,provider=stripe", share: 0.04, bad: 0.04}

exit codes:
  0  every segment is found with 95% power within the plan
  1  some segment is not (the warnings say how much longer which step must hold)
  3  invalid input, or Prometheus unreachable

examples:
  checkout-gates plan examples/gates/card-payments.yaml --profile traffic.yaml
  checkout-gates plan rollout.yaml --prometheus http://localhost:9090 --at now
"""


class SegmentProfile(ApiModel):
    segment: Annotated[str, Field(min_length=1, max_length=256)]
    share: Annotated[JsonNumber, Field(gt=0, le=1)]
    bad: Annotated[JsonNumber | None, Field(ge=0, le=1)] = None


class GateProfile(ApiModel):
    rate: Annotated[JsonNumber, Field(gt=0, le=1e7, description="requests per second, both arms")]
    bad: Annotated[JsonNumber | None, Field(ge=0, le=1)] = None
    regression: Annotated[str | None, Field(pattern=REGRESSION, max_length=16)] = None
    segments: Annotated[list[SegmentProfile], Field(max_length=256)] = []


class Profile(ApiModel):
    gates: Annotated[dict[str, GateProfile], Field(max_length=64)]


@dataclass(frozen=True)
class GatePlan:
    gate: str
    regression: str | None
    segments: tuple[SegmentPower, ...]
    warnings: tuple[str, ...]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = dry_run_parser(
        commands,
        "plan",
        summary="power planner: is each gate step long enough to find a regression in each segment?",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    source = parser.add_argument_group("traffic")
    source.add_argument("--profile", type=Path, metavar="FILE", help="the traffic profile (YAML, see below)")
    add_prometheus_argument(source)
    source.add_argument("--at", metavar="TIME", help=f"with --prometheus: the hour before this time ({TIME_HELP})")
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    try:
        rollout = load_rollout(arguments.rollout)
        profile = _profile(arguments, rollout)
        plans = plan_rollout(rollout.spec, profile)
    except InvalidInputError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    print(_json(plans) if arguments.output == "json" else _table(rollout.spec, plans))
    return EXIT_SHORT if any(p.warnings for p in plans) else EXIT_ENOUGH


def _profile(arguments: argparse.Namespace, rollout: CheckoutRollout) -> Profile:
    if (arguments.profile is None) == (arguments.prometheus is None and not arguments.use_file_address):
        raise InvalidInputError("give the traffic: --profile FILE or --prometheus URL (one of them)")
    if arguments.at is not None and arguments.profile is not None:
        raise InvalidInputError("--at goes with --prometheus (the hour of stable traffic before it), not --profile")
    if arguments.profile is not None:
        documents = read_documents(arguments.profile)
        if len(documents) != 1:
            raise InvalidInputError(f"{file_name(arguments.profile)}: give one YAML document with `gates:`")
        try:
            return Profile.model_validate(documents[0][1])
        except ValidationError as error:
            lines = [f"{file_name(arguments.profile)}:{problem}" for problem in problems_of(error)]
            raise InvalidInputError("\n".join(lines)) from None
    from checkout_gates.cli.evaluate import prometheus_config
    from checkout_gates.cli.plan_traffic import stable_traffic  # the HTTP stack: only when asked

    try:
        at = parse_time(arguments.at, now=datetime.now(UTC)) if arguments.at else datetime.now(UTC)
    except ValueError as error:
        raise InvalidInputError(f"--at: {error}") from None
    config = prometheus_config(rollout, arguments.prometheus, use_file_address=arguments.use_file_address)
    gates = asyncio.run(stable_traffic(rollout, config, at, LOOKBACK_SECONDS))
    return Profile.model_validate({"gates": gates})


def plan_rollout(spec: CheckoutRolloutSpec, profile: Profile) -> list[GatePlan]:
    """Every budgeted gate's plan; InvalidInputError for a profile that names no such gate."""
    declared = {gate.name: gate for gate in spec.gates if budgeted(gate)}
    unknown = sorted(set(profile.gates) - set(declared))
    if unknown:
        raise InvalidInputError(
            f"the profile names {', '.join(unknown)}, not budgeted gates of the rollout "
            f"(those are: {', '.join(declared) or 'none'})"
        )
    plans = []
    for name, gate in declared.items():
        traffic = profile.gates.get(name)
        stretches = phases(spec, gate)
        if not any(phase.watched for phase in stretches):
            plans.append(
                GatePlan(name, None, (), (f"{name}: no step with exposure watches it, so it can find nothing",))
            )
        elif traffic is None:
            plans.append(GatePlan(name, None, (), (f"{name}: no traffic for it (not in the profile, or none served)",)))
        else:
            plans.append(_gate_plan(spec, gate, traffic, stretches))
    return plans


def _check_segments(gate: Gate, traffic: GateProfile) -> None:
    names = [one.segment for one in traffic.segments]
    if traffic.segments and not gate.segment_by:
        raise InvalidInputError(f"profile: gate {gate.name} has no segmentBy, so it is one test: give it no segments")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"profile: gate {gate.name} names a segment twice")
    if math.fsum(one.share for one in traffic.segments) > 1.0 + 1e-6:
        raise InvalidInputError(f"profile: gate {gate.name}: the segments' shares add up to more than 1")
    missing = [one.segment for one in traffic.segments if one.bad is None] if traffic.bad is None else []
    if missing or (not traffic.segments and traffic.bad is None):
        raise InvalidInputError(
            f"profile: gate {gate.name}: give `bad` for the gate or for {', '.join(missing) or 'it'}"
        )


def _gate_plan(spec: CheckoutRolloutSpec, gate: Gate, traffic: GateProfile, stretches: list[Phase]) -> GatePlan:
    interval = spec.interval_seconds()
    _check_segments(gate, traffic)
    segments = traffic.segments or [SegmentProfile(segment="all", share=1.0, bad=traffic.bad)]
    results: list[SegmentPower] = []
    warnings: list[str] = []
    rows: list[tuple[Traffic, bool]] = []
    pooled_bad = math.fsum(s.share * (s.bad if s.bad is not None else traffic.bad or 0.0) for s in segments)
    share = math.fsum(s.share for s in segments)
    for one in segments:
        bad = one.bad if one.bad is not None else traffic.bad or 0.0
        rows.append((Traffic(one.segment, traffic.rate * one.share, bad), False))
    if len(segments) > 1 and gate.segment_by:
        rows.append((Traffic("all (pooled)", traffic.rate * share, pooled_bad / share), True))
    for row, pooled in rows:
        bar = log_bar(spec, gate, segments=len(segments), pooled=pooled)
        regressed = regressed_rate(gate, row.bad, traffic.regression)
        null = null_relative_risk(gate, row.bad)
        if not math.isfinite(null):
            warnings.append(
                f"{gate.name} {row.segment}: stable's bad rate is 0, and a margin relative to nothing cannot be "
                "tested: give stable's rate (the test waits for stable's first bad event too)"
            )
            continue
        if regressed <= 0.0:
            raise InvalidInputError(
                f"profile: gate {gate.name}: stable's bad rate in {row.segment} is 0, so a factor finds nothing: "
                "give the regression as points (regression: 0.1pp)"
            )
        if regressed <= row.bad * null * (1 + 1e-9):
            raise InvalidInputError(
                f"profile: gate {gate.name}: the regression {traffic.regression or '(default)'} in {row.segment} "
                f"({row.bad:.3%} -> {regressed:.3%}) is within the gate's tolerance (up to {row.bad * null:.3%}): "
                "nothing to find; plan for a larger one"
            )
        result = segment_power(gate, row, stretches, interval=interval, log_bar=bar, canary_bad=regressed)
        results.append(result)
        if result.power < POWER:
            warnings.append(_shortfall(spec, gate, result))
    warnings += _inconclusive_warnings(spec, gate, traffic.rate, stretches)
    return GatePlan(gate.name, traffic.regression, tuple(results), tuple(warnings))


def _shortfall(spec: CheckoutRolloutSpec, gate: Gate, result: SegmentPower) -> str:
    found = f"{gate.name} {result.segment}: bad rate {result.stable_bad:.3%} -> {result.canary_bad:.3%} is found with "
    found += f"{result.power:.0%} power within the plan"
    if result.found_after is None or result.found_at_step is None:
        return found + (
            "; not with 95% power even a day past it: it needs more traffic at the step (a higher weight), or a gate "
            "of its own for this segment (its own alpha, outside the budget)"
        )
    step = spec.steps[result.found_at_step]
    held = step.gate.window_seconds if step.gate is not None else step.pause.duration_seconds if step.pause else 0.0
    return found + (
        f"; 95% needs step {result.found_at_step} held {format_duration(held + result.beyond_plan)}, "
        f"not {format_duration(held)}"
    )


def _inconclusive_warnings(spec: CheckoutRolloutSpec, gate: Gate, rate: float, stretches: list[Phase]) -> list[str]:
    """minSamples counts the gate's canary requests since the evidence began: a gate step that
    cannot gather them within inconclusiveLimit evaluations halts a healthy canary."""
    limit = spec.analysis.inconclusive_limit
    if not gate.min_samples or not limit:
        return []
    served, out = 0.0, []
    for phase in stretches:
        needed = (gate.min_samples - served) / (rate * phase.weight)
        budget = limit * spec.interval_seconds()
        # Only a gate step's evaluations count towards inconclusiveLimit (not a pause's).
        if phase.watched and spec.steps[phase.step].gate is not None and needed > budget:
            out.append(
                f"{gate.name}: minSamples {gate.min_samples:,} takes {format_duration(needed)} at step "
                f"{phase.step} ({phase.weight:.0%}), longer than inconclusiveLimit x interval "
                f"({format_duration(budget)}): a healthy canary would halt as inconclusive"
            )
            break
        served += rate * phase.weight * phase.seconds
        if served >= gate.min_samples:
            break
    return out


def _table(spec: CheckoutRolloutSpec, plans: list[GatePlan]) -> str:
    rows = []
    for plan in plans:
        for one in plan.segments:
            at = (
                f"{format_duration(one.found_after)} (step {one.found_at_step})"
                if one.found_after is not None
                else "> a day past the plan"
            )
            rows.append(
                [
                    plan.gate,
                    one.segment,
                    f"{one.stable_bad:.3%} -> {one.canary_bad:.3%}",
                    f"{one.bar:,.0f}",
                    f"{one.power:.0%}",
                    at,
                ]
            )
    headers = ["GATE", "SEGMENT", "BAD RATE (STABLE -> REGRESSED)", "E-VALUE BAR", "POWER IN PLAN", "95% POWER AFTER"]
    if not plans:
        return "no gate spends the rollout's budget (method: sequential, counts: exact): nothing to plan"
    lines = table_lines(headers, rows, colour=False)
    warnings = [w for plan in plans for w in plan.warnings]
    lines.append("")
    lines += [f"warning: {w}" for w in warnings] or ["every segment is found with 95% power within the plan"]
    return "\n".join(lines)


def _json(plans: list[GatePlan]) -> str:
    document: dict[str, Any] = {
        "gates": [
            {
                "name": plan.gate,
                "regression": plan.regression,
                "segments": [asdict(one) for one in plan.segments],
                "warnings": list(plan.warnings),
            }
            for plan in plans
        ]
    }
    return json.dumps(document, indent=2)
