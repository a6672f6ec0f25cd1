"""The power planner against the whole-rollout benchmark: what `checkout-gates plan` says of the
cells of bench/rollouts.py, beside what those cells measured on the production path.

The planner (rollout/power.py) plans a regression confined to one segment against the bar its
own test must carry alone (2 S G / alpha), and one spread over a gate against the pooled test's
(2 G / alpha); it should err low. The measured column is bench/RESULTS.md's "Whole rollouts"
(`python -m bench.rollouts`, 400 runs a cell); rerun that when the test changes.

Run: ``.venv/bin/python -m bench.planner`` (writes the "Planner against the benchmark" section of
bench/RESULTS.md; ``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.rollouts import ALPHA, AUTH, DUPLICATES, REFUNDS, SMALL_AUTH, SMALL_REFUND, rollout_gates, write_section
from checkout_gates.rollout.power import Phase, Traffic, segment_power

RESULTS = Path(__file__).with_name("RESULTS.md")
START_MARKER = "<!-- planner:start -->"
END_MARKER = "<!-- planner:end -->"
PLAN = (Phase(1, 0.05, 1200.0, True), Phase(3, 0.25, 1200.0, True), Phase(5, 0.5, 1200.0, True))
RATE = 40.0
GATES = 3  # budgeted gates of the benchmark's rollout
# (cell, measured share of hours halted) from bench/RESULTS.md, "Whole rollouts", scrape 30 s.
MEASURED = {
    "auth -3pp in stripe/applepay (4% of checkouts)": "34%",
    "refunds -5pp in stripe/partial (0.75% of checkouts)": "7%",
    "auth -1pp in every segment": "98.75%",
    "duplicate charges 3x (0.05% -> 0.15%)": "92.5%",
}


def rows() -> list[tuple[str, float, str]]:
    auth, refunds, duplicates = (traffic.gate for traffic in rollout_gates("0pp"))
    small = next(s for s in AUTH if s.labels == SMALL_AUTH)
    small_refund = next(s for s in REFUNDS if s.labels == SMALL_REFUND)
    pooled_auth = math.fsum(s.share * s.bad for s in AUTH)
    cells = [
        (
            "auth -3pp in stripe/applepay (4% of checkouts)",
            auth,
            Traffic("small", RATE * small.share, small.bad),
            small.bad + 0.03,
            2 * len(AUTH) * GATES,
        ),
        (
            "refunds -5pp in stripe/partial (0.75% of checkouts)",
            refunds,
            Traffic("small", RATE * 0.05 * small_refund.share, small_refund.bad),
            small_refund.bad + 0.05,
            2 * len(REFUNDS) * GATES,
        ),
        ("auth -1pp in every segment", auth, Traffic("pooled", RATE, pooled_auth), pooled_auth + 0.01, 2 * GATES),
        (
            "duplicate charges 3x (0.05% -> 0.15%)",
            duplicates,
            Traffic("all", RATE, DUPLICATES[0].bad),
            3 * DUPLICATES[0].bad,
            GATES,
        ),
    ]
    out = []
    for name, gate, traffic, regressed, bar in cells:
        result = segment_power(gate, traffic, PLAN, interval=30.0, log_bar=math.log(bar / ALPHA), canary_bad=regressed)
        out.append((name, result.power, MEASURED[name]))
    return out


def report() -> str:
    lines = [
        "Command: `.venv/bin/python -m bench.planner` (instant). The planner's power for bench/rollouts.py's cells "
        "(40 checkouts/s, 5% -> 25% -> 50%, 20 minutes each, 3 budgeted gates, alpha 0.01) beside what the cells "
        'measured on the production path (400 runs each, "Whole rollouts" above). It should err low.\n',
        "| cell | planner | measured |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {power:.1%} | {measured} |" for name, power, measured in rows()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    text = report()
    print(text)
    if not args.no_write:
        write_section(RESULTS, text, START_MARKER, END_MARKER, "Planner against the benchmark (bench/planner.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
