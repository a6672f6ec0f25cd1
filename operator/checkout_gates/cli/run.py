"""``checkout-gates run``: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from checkout_gates.api.destinations import EgressPolicy
from checkout_gates.audit.webhook import WebhookSink
from checkout_gates.controller.leadership import DEFAULT_LEASE_NAME, ElectionConfig, default_identity, default_namespace
from checkout_gates.controller.logs import configure as configure_logs


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="run the operator (watches CheckoutRollouts and steps them)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster or $KUBECONFIG")
    parser.add_argument("--health-address", default="0.0.0.0:8080", help="liveness endpoint, /healthz (HOST:PORT)")
    parser.add_argument("--metrics-address", default="0.0.0.0:8081", help="Prometheus metrics endpoint (HOST:PORT)")
    parser.add_argument("--concurrency", type=int, default=16, help="reconcile passes running at once")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    egress = parser.add_argument_group(
        "egress",
        "where rollouts may make the operator send requests (their Prometheus, Alertmanager, webhooks, "
        "PagerDuty, Slack); a destination outside the list is refused and the rollout says why",
    )
    egress.add_argument(
        "--egress-allow",
        action="append",
        metavar="DESTINATION",
        default=[item for item in [os.environ.get("CHECKOUT_GATES_EGRESS_ALLOW", "")] if item.strip()],
        help="scheme://host[:port][/path-prefix], host may start with '*.'; repeatable, or comma-separated "
        "(default: $CHECKOUT_GATES_EGRESS_ALLOW)",
    )
    egress.add_argument(
        "--egress-unrestricted",
        action="store_true",
        help="let rollouts name any destination (the default when no --egress-allow is given; says so in the log)",
    )
    audit = parser.add_argument_group(
        "audit sink",
        "every transition of every rollout, delivered at least once to a JSON webhook with a dedup key "
        "per record (docs/change-control.md); besides the audit lines on the log, which are always written",
    )
    audit.add_argument(
        "--audit-url",
        metavar="URL",
        default=os.environ.get("CHECKOUT_GATES_AUDIT_URL") or None,
        help='POST the audit records here as {"records": [...]} (default: $CHECKOUT_GATES_AUDIT_URL; none)',
    )
    audit.add_argument(
        "--audit-token-file",
        metavar="PATH",
        default=os.environ.get("CHECKOUT_GATES_AUDIT_TOKEN_FILE") or None,
        help="send the token in this file as 'Authorization: Bearer', read at every delivery "
        "(default: $CHECKOUT_GATES_AUDIT_TOKEN_FILE)",
    )
    audit.add_argument(
        "--audit-ca-file",
        metavar="PATH",
        default=os.environ.get("CHECKOUT_GATES_AUDIT_CA_FILE") or None,
        help="trust this CA bundle for an https sink (default: the system's)",
    )
    election = parser.add_argument_group(
        "leader election",
        "for more than one replica: every replica watches, the one holding a coordination.k8s.io Lease acts",
    )
    election.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("CHECKOUT_GATES_LEADER_ELECTION"),
        help="take part in leader election (default: off, one replica; $CHECKOUT_GATES_LEADER_ELECTION=true "
        "turns it on; the Helm chart turns it on when it runs more than one replica)",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease (default: $POD_NAMESPACE, else the pod's own namespace, else default)",
    )
    election.add_argument("--leader-election-id", default=DEFAULT_LEASE_NAME, help="name of the Lease")
    election.add_argument(
        "--leader-election-identity", default=None, help="this replica's name in the Lease (default: $POD_NAME_random)"
    )
    election.add_argument(
        "--lease-duration", type=float, default=15.0, help="seconds a standby waits for a silent leader (15)"
    )
    election.add_argument(
        "--renew-deadline", type=float, default=None, help="seconds a leader keeps acting without renewing (2/3 of it)"
    )
    election.add_argument(
        "--retry-period", type=float, default=None, help="seconds between lease attempts (2, or less for short leases)"
    )
    parser.set_defaults(handler=run)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def election_config(arguments: argparse.Namespace) -> ElectionConfig | None:
    """The leader election the flags ask for, or None for a single replica."""
    if not arguments.leader_election:
        return None
    duration = arguments.lease_duration
    return ElectionConfig(
        namespace=arguments.leader_election_namespace or default_namespace(),
        name=arguments.leader_election_id,
        identity=arguments.leader_election_identity or default_identity(),
        lease_duration=duration,
        renew_deadline=arguments.renew_deadline or duration * 2 / 3,
        retry_period=arguments.retry_period or min(2.0, duration / 7.5),
    )


def egress_policy(arguments: argparse.Namespace) -> EgressPolicy:
    """The allowlist the flags ask for; ValueError (DestinationError) for an unreadable entry."""
    if arguments.egress_allow and arguments.egress_unrestricted:
        raise ValueError("--egress-allow and --egress-unrestricted exclude each other")
    if not arguments.egress_allow:
        return EgressPolicy()
    return EgressPolicy.of(arguments.egress_allow)


def audit_sink_from(arguments: argparse.Namespace) -> WebhookSink | None:
    """The audit sink the flags ask for, or None; ValueError for an unusable URL or file."""
    if not arguments.audit_url:
        if arguments.audit_token_file or arguments.audit_ca_file:
            raise ValueError("--audit-token-file and --audit-ca-file need --audit-url")
        return None
    token = Path(arguments.audit_token_file) if arguments.audit_token_file else None
    ca = Path(arguments.audit_ca_file) if arguments.audit_ca_file else None
    for flag, path in (("--audit-token-file", token), ("--audit-ca-file", ca)):
        if path is not None and not path.is_file():
            raise ValueError(f"{flag} {path}: no such file")
    return WebhookSink(arguments.audit_url, token_file=token, ca_file=ca)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


def run(arguments: argparse.Namespace) -> int:
    if arguments.kubeconfig:
        # Before the client library is imported: it reads the variable once, at import time, and
        # kopf's own login goes through it.
        os.environ["KUBECONFIG"] = arguments.kubeconfig
    import kopf
    from kubernetes import config
    from kubernetes.client import ApiClient
    from prometheus_client import start_http_server

    import checkout_gates.controller.handlers  # noqa: F401  (registers the handlers with kopf)
    from checkout_gates.controller.telemetry import REGISTRY

    configure_logs(arguments.log_level, json=arguments.log_format == "json")
    try:
        election = election_config(arguments)
        egress = egress_policy(arguments)
        audit_sink = audit_sink_from(arguments)
    except ValueError as error:
        print(f"checkout-gates run: {error}", file=sys.stderr)
        return 2
    api_client: ApiClient
    if arguments.kubeconfig:
        api_client = config.new_client_from_config(config_file=arguments.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api_client = ApiClient()
    host, port = _split(arguments.metrics_address)
    start_http_server(port, addr=host, registry=REGISTRY)
    health_host, health_port = _split(arguments.health_address)
    memo = kopf.Memo(
        api_client=api_client,
        concurrency=arguments.concurrency,
        leader_election=election,
        egress=egress,
        audit_sink=audit_sink,
    )
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not arguments.namespace,
            namespaces=arguments.namespace,
            liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
            memo=memo,
        )
    )
    # A worker thread still blocked on a socket (the Kubernetes client is synchronous) cannot keep the
    # process alive past its grace period: the watchdog started at shutdown (controller/handlers.py)
    # ends it. A normal return keeps what exit handlers write (profiles, samples) intact.
    return 0
