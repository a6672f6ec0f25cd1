"""``checkout-gates status NAME`` and ``checkout-gates list``: read-only views of rollouts.

Exit codes: 0 shown (``status --watch``: until Ctrl-C or a terminal phase), 3 an error
(the kubeconfig, the cluster unreachable, the rollout missing, not allowed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from checkout_gates.api.status import TERMINAL_PHASES
from checkout_gates.cli import cluster
from checkout_gates.cli.output import colour_for
from checkout_gates.cli.render import list_json, render_list, render_status, status_json, view_of

EXIT_OK, EXIT_ERROR = 0, 3
CLEAR = "\x1b[H\x1b[2J"

EXIT_HELP = """\
exit codes:
  0  shown (with --watch: stopped by Ctrl-C, or the rollout reached Promoted or Aborted)
  3  an error: the kubeconfig, the cluster unreachable, no such rollout, not allowed
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show a rollout: phase, steps, weights, gate verdicts, page, recent history",
        description="Show one CheckoutRollout: its phase, the steps with the current one marked (>), the "
        "weights in status and as the router reported them, every gate's verdict with canary and stable "
        "values and the deciding segment, the page, and the last 5 history entries.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("name", metavar="NAME", help="the CheckoutRollout")
    status.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    status.add_argument(
        "-w", "--watch", action="store_true", help="redraw on every change until Ctrl-C or Promoted/Aborted"
    )
    status.add_argument("-o", "--output", choices=("text", "json"), default="text", help="default: text")
    cluster.add_arguments(status)
    status.set_defaults(handler=run_status)

    listing = commands.add_parser(
        "list",
        help="list rollouts: namespace, name, phase, step, canary weight, verdict, age",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = listing.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    scope.add_argument("-n", "--namespace", help="this namespace (default: the kubeconfig context's)")
    listing.add_argument("-o", "--output", choices=("text", "json"), default="text", help="default: text")
    cluster.add_arguments(listing)
    listing.set_defaults(handler=run_list)


def _now() -> datetime:
    return datetime.now(UTC)


def run_status(arguments: argparse.Namespace) -> int:
    try:
        kube = cluster.connect(arguments.kubeconfig, arguments.context)
        namespace = arguments.namespace or kube.namespace
        if arguments.watch:
            return _watch(kube, namespace, arguments.name, arguments.output)
        _show(kube.get_rollout(namespace, arguments.name), arguments.output)
    except (cluster.ClusterError, ValueError) as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _format(raw: dict[str, Any], output: str, *, watching: bool = False) -> tuple[str, str]:
    """(phase, text) of one rollout: JSON (one line per change when watching) or the text view."""
    view = view_of(raw)
    if output == "json":
        facts = status_json(view, now=_now())
        text = json.dumps(facts, separators=(",", ":")) if watching else json.dumps(facts, indent=2)
    else:
        text = render_status(view, now=_now(), colour=colour_for(sys.stdout))
    return view.status.phase, text


def _show(raw: dict[str, Any], output: str) -> None:
    print(_format(raw, output)[1])


def _watch(kube: cluster.Cluster, namespace: str, name: str, output: str) -> int:
    terminal = output == "text" and sys.stdout.isatty()
    shown = ""
    try:
        with contextlib.closing(kube.follow(namespace, name)) as changes:
            for raw in changes:
                if raw is None:
                    print(f"{namespace}/{name} was deleted", file=sys.stderr)
                    return EXIT_ERROR
                phase, text = _format(raw, output, watching=True)
                if text != shown:
                    shown = text
                    if terminal:
                        print(f"{CLEAR}{text}\n\n(watching; Ctrl-C to stop)", flush=True)
                    else:  # plain blocks, a blank line apart, for a pipe or a log
                        print(text + ("\n" if output == "text" else ""), flush=True)
                if phase in TERMINAL_PHASES:
                    return EXIT_OK
    except KeyboardInterrupt:
        if terminal:
            print()
    return EXIT_OK


def run_list(arguments: argparse.Namespace) -> int:
    try:
        kube = cluster.connect(arguments.kubeconfig, arguments.context)
        namespace = None if arguments.all_namespaces else arguments.namespace or kube.namespace
        views = [view_of(raw) for raw in kube.list_rollouts(namespace)]
    except (cluster.ClusterError, ValueError) as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    if arguments.output == "json":
        print(json.dumps(list_json(views, now=_now()), indent=2))
    else:
        print(render_list(views, now=_now(), colour=colour_for(sys.stdout)))
    return EXIT_OK
