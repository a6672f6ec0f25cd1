"""A deterministic checkout exporter for operator tests: counters that grow at set rates.

Each rollout under test gets its own label ``rollout=<name>``, so tests share one Prometheus
without reading each other's numbers. Rates are applied as expected values (no randomness), so
a test's verdicts do not depend on luck.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

PROVIDERS = ("adyen", "stripe")


@dataclass
class Behaviour:
    """How one variant of one rollout behaves now; change it while a test runs."""

    rate: float = 40.0  # authorizations per second per provider
    approval: float = 0.97
    duplicates_per_second: float = 0.0


@dataclass
class Service:
    stable: Behaviour = field(default_factory=Behaviour)
    canary: Behaviour = field(default_factory=Behaviour)


class CheckoutTraffic:
    def __init__(self, tick: float = 0.1) -> None:
        self.registry = CollectorRegistry()
        self.authorizations = Counter(
            "payment_authorizations",
            "authorizations",
            ["rollout", "variant", "provider", "outcome"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "payment_duplicate_charges", "duplicate charges", ["rollout", "variant"], registry=self.registry
        )
        self.services: dict[str, Service] = {}
        self.tick = tick
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: WSGIServer | None = None
        self.port = 0

    def service(self, rollout: str) -> Service:
        with self._lock:
            return self.services.setdefault(rollout, Service())

    def start(self) -> CheckoutTraffic:
        self._server = make_server("127.0.0.1", 0, make_wsgi_app(self.registry), ThreadingWSGIServer)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._run, daemon=True).start()
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            elapsed, last = now - last, now
            with self._lock:
                services = list(self.services.items())
            for rollout, service in services:
                for variant, behaviour in (("stable", service.stable), ("canary", service.canary)):
                    for provider in PROVIDERS:
                        total = behaviour.rate * elapsed
                        approved = self.authorizations.labels(rollout, variant, provider, "approved")
                        declined = self.authorizations.labels(rollout, variant, provider, "declined")
                        approved.inc(total * behaviour.approval)
                        declined.inc(total * (1 - behaviour.approval))
                    self.duplicates.labels(rollout, variant).inc(behaviour.duplicates_per_second * elapsed)
