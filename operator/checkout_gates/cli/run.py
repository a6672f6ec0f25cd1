"""``checkout-gates run``: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import os

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
    parser.set_defaults(handler=run)


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
    api_client: ApiClient
    if arguments.kubeconfig:
        api_client = config.new_client_from_config(config_file=arguments.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api_client = ApiClient()
    host, port = _split(arguments.metrics_address)
    start_http_server(port, addr=host, registry=REGISTRY)
    health_host, health_port = _split(arguments.health_address)
    memo = kopf.Memo(api_client=api_client, concurrency=arguments.concurrency)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not arguments.namespace,
            namespaces=arguments.namespace,
            liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
            memo=memo,
        )
    )
    return 0
