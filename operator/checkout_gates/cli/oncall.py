"""``checkout-gates approve|abort|retry|pause NAME``: the on-call annotations, set as yourself.

The annotation's value is your user name as the API server knows you (a SelfSubjectReview, else
the kubeconfig context's user), which is what the chart's admission policy demands. Then the
command waits until the operator has consumed it and prints what it did, from status history.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from checkout_gates.cli import cluster
from checkout_gates.cli.common import EXIT_INVALID, usage_errors_exit_invalid
from checkout_gates.cli.render import request_outcome, view_of
from checkout_gates.rollout.annotations import EMERGENCY, REASON_KEY, Command, annotation_key

EXIT_APPLIED, EXIT_IGNORED, EXIT_TIMEOUT, EXIT_ERROR = 0, 1, 2, EXIT_INVALID
EXIT_INTERRUPTED = 130
DEFAULT_TIMEOUT = 60.0

SUMMARIES: dict[Command, str] = {
    "approve": "approve the approval step a rollout waits at (or resume a paused one)",
    "abort": "abort a rollout: canary weight to 0 (on an aborted one: acknowledge its page)",
    "retry": "retry a halted rollout's step (an aborted one starts again from step 0)",
    "pause": "pause a progressing rollout where it is (approve resumes it)",
    "undo": "go back to the stable revision (on a promoted rollout: the one before it), through the gates",
    "skip-step": "emergency: skip the step a rollout is at (needs --reason; recorded and sent to the owner's pagers)",
    "promote-full": "emergency: promote past every remaining step (needs --reason; recorded and sent to the pagers)",
    "break-freeze": "emergency: let exposure grow in a CheckoutFreeze window (needs --reason; recorded and paged)",
}

EPILOG = """\
The annotation gates.checkout.dev/{command}=<you> (and gates.checkout.dev/reason with --reason) is
set with a merge patch; the operator records it in status history and removes it.

exit codes:
  0  applied (with --no-wait: the request was placed)
  1  ignored by the operator (e.g. nothing awaits approval), or refused by admission
  2  not consumed within --timeout: is the operator running?
  3  an error: usage, the kubeconfig, the cluster unreachable, no such rollout, not allowed
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, summary in SUMMARIES.items():
        parser = commands.add_parser(
            command,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}, as yourself.",
            epilog=EPILOG.format(command=command),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        usage_errors_exit_invalid(parser)  # 3, like the other errors: 2 means timed out here
        parser.add_argument("name", metavar="NAME", help="the CheckoutRollout")
        parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
        parser.add_argument(
            "--reason", metavar="TEXT", help=f"why, for the audit trail (default: '{command} requested by <you>')"
        )
        parser.add_argument("--no-wait", action="store_true", help="set the annotation and return at once")
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            metavar="S",
            help=f"seconds to wait for the operator (default {DEFAULT_TIMEOUT:g})",
        )
        cluster.add_arguments(parser)
        parser.set_defaults(handler=run, request=command)


def run(arguments: argparse.Namespace) -> int:
    command: Command = arguments.request
    name, key = arguments.name, annotation_key(command)
    if command in EMERGENCY and not (arguments.reason or "").strip():
        print(
            f"{command} overrides the gates: say why with --reason TEXT (it goes to the record and the page)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        kube = cluster.connect(arguments.kubeconfig, arguments.context)
        namespace = arguments.namespace or kube.namespace
        actor = kube.user()
        before = kube.get_rollout(namespace, name)
        # Always state the reason: a stale one left by an earlier request must not travel with this one.
        kube.patch_annotations(namespace, name, {key: actor, REASON_KEY: arguments.reason or None})
    except cluster.RefusedError as error:
        print(f"Refused: {error}", file=sys.stderr)
        return EXIT_IGNORED
    except cluster.ClusterError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    print(f"{key}={actor} set on {namespace}/{name}", file=sys.stderr)
    if arguments.no_wait:
        return EXIT_APPLIED
    try:
        after = _consumed(kube, namespace, name, key, actor, arguments.timeout)
        if after is None:
            print(
                f"timed out after {arguments.timeout:g}s: {key} is still on {namespace}/{name}; is the operator running?",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        if arguments.reason:
            with contextlib.suppress(cluster.ClusterError):
                kube.remove_annotation_if(namespace, name, REASON_KEY, arguments.reason)
        outcome = request_outcome(view_of(before), view_of(after), command=command, actor=actor)
    except cluster.ClusterError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:  # a status this version cannot read
        print(f"{namespace}/{name}: unreadable status: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"\nstopped waiting; {key} stays on {namespace}/{name} until the operator takes it", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(outcome.line)
    return EXIT_APPLIED if outcome.applied else EXIT_IGNORED


def _consumed(
    kube: cluster.Cluster, namespace: str, name: str, key: str, actor: str, timeout: float
) -> dict[str, Any] | None:
    """The rollout once the annotation no longer holds actor; None when timeout passes first."""
    with contextlib.closing(kube.follow(namespace, name, timeout=timeout)) as changes:
        for raw in changes:
            if raw is None:
                raise cluster.NotFoundError(f"{namespace}/{name} was deleted while waiting")
            if (raw.get("metadata", {}).get("annotations") or {}).get(key) != actor:
                return raw
    return None
