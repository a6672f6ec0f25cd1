"""Stable's traffic of a rollout's budgeted gates over an hour, from Prometheus: the profile
``checkout-gates plan --prometheus`` plans with.

Per gate, the same counters the gate reads (rendered for stable), summed by its ``segmentBy``
over the hour: a ratio's total and good, a count's events and exposure, a tail's requests over its
bound. Before a rollout starts stable serves everything, so its rate is the service's.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import Gate, PrometheusSpec
from checkout_gates.cli.common import InvalidInputError
from checkout_gates.gates.budget import budgeted
from checkout_gates.gates.observations import segment_name
from checkout_gates.metrics.prometheus import PrometheusSource, QueryError, by_segment
from checkout_gates.metrics.tail import NoBoundError, bound_query, choose_bound, counter_templates
from checkout_gates.metrics.templates import TemplateError, promql_duration, query_variables, render

MAX_SEGMENTS = 256  # what a profile takes per gate


async def stable_traffic(
    rollout: CheckoutRollout, config: PrometheusSpec, at: datetime, seconds: float
) -> dict[str, Any]:
    """The profile's ``gates`` mapping: per budgeted gate its rate, bad rate and segments."""
    async with PrometheusSource(config) as source:
        problem = await source.check(at)
        if problem is not None:
            raise InvalidInputError(f"{source.description} is unreachable: {problem}")
        gates = [gate for gate in rollout.spec.gates if budgeted(gate)]
        found = await asyncio.gather(*(_gate(source, rollout, gate, at, seconds) for gate in gates))
    return {gate.name: traffic for gate, traffic in zip(gates, found, strict=True) if traffic is not None}


async def _gate(
    source: PrometheusSource, rollout: CheckoutRollout, gate: Gate, at: datetime, seconds: float
) -> dict[str, Any] | None:
    spec = rollout.spec
    variables = query_variables(
        spec, "stable", namespace=rollout.metadata.namespace, name=rollout.metadata.name, window_seconds=seconds
    )
    window = promql_duration(seconds)
    try:
        if gate.ratio is not None:
            total, bad_of = gate.ratio.total, gate.ratio.good
        elif gate.tail is not None:
            if gate.tail.le is not None:
                bound, seen = gate.tail.le, [gate.tail.le]
            else:
                buckets = await source.query(render(bound_query(gate.tail), variables), at=at)
                seen = [one.labels.get("le", "") for one in buckets]
                bound = choose_bound(
                    [(one.labels.get("le", ""), one.value) for one in buckets], gate.tail.stable_quantile
                )
            bad_of, total = counter_templates(gate.tail, bound, seen)
        else:
            assert gate.count is not None and gate.exposure is not None  # the spec requires both for exact counts
            total, bad_of = gate.exposure, gate.count
        labels = ", ".join(gate.segment_by)
        queries = [f"sum by ({labels}) (increase({render(q, variables)}[{window}]))" for q in (total, bad_of)]
        answers = await asyncio.gather(*(source.query(q, at=at) for q in queries))
    except QueryError as error:
        raise InvalidInputError(f"gate {gate.name}: {error.message}") from None
    except (NoBoundError, TemplateError, ValueError) as error:
        raise InvalidInputError(f"gate {gate.name}: {error}") from None
    totals, others = (by_segment(answer, gate.segment_by) for answer in answers)
    if not all(math.isfinite(v) for v in (*totals.values(), *others.values())):
        raise InvalidInputError(f"gate {gate.name}: Prometheus answered a value that is not a finite number")
    if len(totals) > MAX_SEGMENTS:
        raise InvalidInputError(
            f"gate {gate.name}: {len(totals):,} segments served in the hour, more than the planner takes "
            f"({MAX_SEGMENTS}); plan with a --profile of the ones that matter"
        )
    served = sum(totals.values())
    if served <= 0:
        return None

    # A ratio's second counter is the good ones; a count's and a tail's (at most the bound) differ.
    def bad(segment: Any) -> float:
        value = others.get(segment, 0.0)
        if gate.ratio is not None or gate.tail is not None:
            return max(0.0, 1.0 - value / totals[segment]) if totals[segment] > 0 else 0.0
        return value / totals[segment] if totals[segment] > 0 else 0.0

    segments = [
        {"segment": segment_name(segment), "share": count / served, "bad": min(1.0, bad(segment))}
        for segment, count in totals.items()
        if count > 0
    ]
    return {"rate": served / seconds, "segments": segments if gate.segment_by else [], "bad": segments[0]["bad"]}
