"""``checkout-gates demo``: a live gated rollout on a local testbed (see ``checkout_gates_lab.demo.main``)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run a gated rollout end to end on this machine: a local control plane (etcd, kube-apiserver),
Alertmanager, a simulated checkout service whose traffic follows the HTTPRoute's weights, Prometheus
scraping it every second, and the operator. The demo rollout (steps 1% -> 5% -> approval -> 25% ->
100%, nine gates) is applied and shown live until it is promoted, or, with --fault, until it halts
and the page reaches Alertmanager. The approval step is granted by the demo itself, as actor
`demo`. Everything is stopped and removed at the end, on Ctrl-C and on errors (unless --keep).
It takes two to three minutes. The testbed's binaries must be built first: `make demo` does that.
"""

EPILOG = """\
exit codes:
  0    the expected outcome: promoted (no fault, or a fault on both variants alike), or halted or
       aborted and paged (a fault on the canary)
  1    any other outcome, an error, or the timeout
  2    the testbed is not built (run `make testbed`), or no such scenario
  130  interrupted (Ctrl-C, SIGTERM)

examples:
  checkout-gates demo
  checkout-gates demo --fault duplicate-charges
  checkout-gates demo --fault examples/scenarios/latency-regression.yaml --keep
"""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from checkout_gates_lab.demo import DEFAULT_RATE, DEFAULT_TIMEOUT, scenario_names

    parser = commands.add_parser(
        "demo",
        help="a live gated rollout on a local testbed (add --fault SCENARIO for a regressed canary)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--fault",
        metavar="SCENARIO",
        help=f"inject a scenario's faults: a name ({', '.join(scenario_names())}) or a scenario YAML file; "
        "default: none (an A/A rollout)",
    )
    parser.add_argument(
        "--rate",
        type=_positive,
        default=DEFAULT_RATE,
        help=f"simulated checkout requests per second, both variants together (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep everything up after the outcome until Ctrl-C, and keep the work dir"
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        help=f"give up after this many seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--seed", type=int, help="the simulator's random seed, for a repeatable run")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    from checkout_gates_lab.demo.main import DemoOptions, run_demo

    options = DemoOptions(
        fault=arguments.fault,
        rate=arguments.rate,
        keep=arguments.keep,
        timeout=arguments.timeout,
        seed=arguments.seed,
    )
    return run_demo(options)
