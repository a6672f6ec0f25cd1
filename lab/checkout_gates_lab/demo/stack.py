"""The demo's moving parts, started and stopped in order: the local control plane with the CRDs,
Alertmanager, simulated checkout services, Prometheus scraping them, and the operator.

Used by ``checkout-gates demo`` and by the end-to-end tests (``tests/integration/``), which run
several simulated services against one of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import httpx
import structlog

from checkout_gates.api.crd import crd_yaml
from checkout_gates.api.spec import GROUP, PLURAL, VERSION
from checkout_gates_lab.demo.manifests import http_route, manifests_yaml, namespace
from checkout_gates_lab.sim.runner import Simulator, SimulatorConfig
from checkout_gates_lab.testbed import (
    Alertmanager,
    Kubectl,
    LocalCluster,
    ManagedProcess,
    MissingComponentError,
    Prometheus,
    binaries,
    free_port,
    gateway_api_crds,
    operator_argv,
    wait_until,
)
from checkout_gates_lab.testbed.workloads import WORKLOAD_CONTROLLER_ARGS, WORKLOAD_CONTROLLERS, Workloads

T = TypeVar("T")
CRD_NAME = f"{PLURAL}.{GROUP}"
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
NEEDED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "prometheus",
    "alertmanager",
)
SCRAPE_INTERVAL = "1s"
BUILD_HINT = """\
Build them with:
  make testbed                 # or: bash hack/testbed.sh build
  bash hack/install-deps.sh    # Prometheus and Alertmanager (Debian packages), if those are missing
`make demo` does both first, then runs this demo."""


def missing_components() -> list[str]:
    """What the demo needs and cannot find, one line each (empty: all present)."""
    problems: list[str] = []
    for name in NEEDED:
        try:
            binaries.find(name)
        except MissingComponentError as error:
            problems.append(str(error))
    try:
        gateway_api_crds()
    except MissingComponentError as error:
        problems.append(str(error))
    return problems


# --- progress lines -----------------------------------------------------------------------------


def _ellipsis(stream: TextIO) -> str:
    try:
        "…".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "…"


class Progress:
    """``starting kube-apiserver… ok (2.1s)``: one line per start-up step."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.dots = _ellipsis(self.out)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.out.write(f"{what}{self.dots} ")
        self.out.flush()
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self.out.write(f"failed ({time.monotonic() - started:.1f}s)\n")
            self.out.flush()
            raise
        self.out.write(f"ok ({time.monotonic() - started:.1f}s)\n")
        self.out.flush()

    def run(self, what: str, action: Callable[[], T]) -> T:
        with self.step(what):
            return action()


class FileLogs:
    """This process's structlog and logging output (the simulators') sent to a file until ``close``,
    which puts the previous configuration back."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._stream: IO[str] = path.open("a", encoding="utf-8", buffering=1)
        self._previous = structlog.get_config()
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.PrintLoggerFactory(self._stream),
            cache_logger_on_first_use=False,
        )
        self._handler = logging.StreamHandler(self._stream)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger().addHandler(self._handler)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        structlog.configure(**self._previous)
        self._stream.close()


def log_to_file(path: Path) -> FileLogs:
    return FileLogs(path)


# --- simulated services -------------------------------------------------------------------------


class TrafficThread:
    """Simulators on an event loop of their own, in a background thread: the caller stays synchronous."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="checkout-simulators", daemon=True)
        self._thread.start()
        self.simulators: list[Simulator] = []
        self.started_at: dict[int, float] = {}  # id(simulator) -> wall clock at start

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coroutine: Any, timeout: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def add(self, config: SimulatorConfig) -> Simulator:
        """Start one simulator (its metrics port is bound when this returns)."""

        async def start() -> Simulator:
            simulator = Simulator(config)
            await simulator.start()
            return simulator

        simulator: Simulator = self._call(start())
        self.started_at[id(simulator)] = time.time()
        self.simulators.append(simulator)
        return simulator

    def fault_started_at(self, simulator: Simulator) -> dict[str, float | None]:
        """Each fault's start as a wall-clock time (None: not started)."""
        origin = self.started_at[id(simulator)]
        return {
            name: None if elapsed is None else origin + elapsed
            for name, elapsed in simulator.engine.schedule.started_at().items()
        }

    def stop(self) -> None:
        if not self._loop.is_closed():
            for simulator in self.simulators:
                with contextlib.suppress(Exception):
                    self._call(simulator.stop(), timeout=10.0)
            self.simulators = []
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
            if not self._thread.is_alive():
                self._loop.close()


# --- the rollouts, through the API --------------------------------------------------------------


class Rollouts:
    """CheckoutRollouts read and annotated through the official client (cheaper than kubectl per poll)."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config  # noqa: PLC0415 - a second to import; only when used

        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self._api: Any = client.CustomObjectsApi(api_client)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=10
        )
        return found

    def list(self) -> list[dict[str, Any]]:
        listing = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=10)
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        self._api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=10)


# --- the testbed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One simulated checkout service: its namespace, HTTPRoute and Services."""

    namespace: str
    route: str
    stable: str
    canary: str


class DemoTestbed:
    """Everything the demo runs, in one work directory; ``stop`` undoes whatever was started."""

    def __init__(self, workdir: Path, progress: Progress | None = None) -> None:
        self.workdir = workdir
        self.progress = progress or Progress(io.StringIO())
        self.cluster: LocalCluster | None = None
        self.workloads: Workloads | None = None
        self.kubectl: Kubectl | None = None
        self.alertmanager: Alertmanager | None = None
        self.prometheus: Prometheus | None = None
        self.operator: ManagedProcess | None = None
        self.traffic: TrafficThread | None = None
        self.operator_health = ""

    @property
    def kubeconfig(self) -> Path:
        if self.cluster is None:
            raise RuntimeError("the cluster is not started")
        return self.cluster.kubeconfig

    @property
    def operator_log(self) -> Path:
        return self.workdir / "operator.log"

    def start_cluster(self, *, workloads: bool = False) -> None:
        """etcd and kube-apiserver; with ``workloads`` also kube-controller-manager, kube-scheduler
        and kwok's nodes, so that Deployments really roll (testbed/workloads.py)."""
        if not workloads:
            self.cluster = LocalCluster(self.workdir / "kube")
            self.progress.run("starting etcd and kube-apiserver", self.cluster.start)
            self.kubectl = Kubectl(self.cluster.kubeconfig)
            return
        self.cluster = LocalCluster(
            self.workdir / "kube",
            controller_manager=True,
            controllers=WORKLOAD_CONTROLLERS,
            controller_manager_args=WORKLOAD_CONTROLLER_ARGS,
        )
        self.progress.run("starting etcd, kube-apiserver and kube-controller-manager", self.cluster.start)
        self.kubectl = Kubectl(self.cluster.kubeconfig)
        self.workloads = Workloads(self.cluster.kubeconfig, self.workdir / "workloads", nodes=2)
        self.progress.run("starting kube-scheduler and kwok (2 simulated nodes)", self.workloads.start)

    def install_crds(self) -> None:
        kubectl = self._kubectl()

        def ours() -> None:
            kubectl.apply(crd_yaml())
            kubectl.wait_established(CRD_NAME)

        def gateway_api() -> None:
            kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
            kubectl.wait_established(HTTPROUTE_CRD)

        self.progress.run("installing the CheckoutRollout CRD", ours)
        self.progress.run("installing the Gateway API CRDs", gateway_api)

    def add_services(self, services: Sequence[Service]) -> None:
        """Create each service's namespace and HTTPRoute (stable 100, canary 0)."""
        documents = [namespace(name) for name in sorted({s.namespace for s in services})]
        documents += [http_route(s.route, s.namespace, s.stable, s.canary) for s in services]
        what = f"creating namespace {services[0].namespace} and HTTPRoute {services[0].route}"
        if len(services) > 1:
            what = f"creating {len(services)} namespaces and HTTPRoutes"
        self.progress.run(what, lambda: self._kubectl().apply(manifests_yaml(*documents)))

    def start_alertmanager(self) -> Alertmanager:
        self.alertmanager = Alertmanager(self.workdir / "alertmanager")
        self.progress.run("starting Alertmanager", self.alertmanager.start)
        return self.alertmanager

    def start_traffic(self) -> TrafficThread:
        self.traffic = TrafficThread()
        return self.traffic

    def start_prometheus(self, targets: Mapping[str, Mapping[str, str]]) -> Prometheus:
        """Prometheus scraping each target (host:port) every second, with its own extra labels."""
        scrape = {
            "job_name": "checkout",
            "scrape_interval": SCRAPE_INTERVAL,
            "static_configs": [{"targets": [target], "labels": dict(labels)} for target, labels in targets.items()],
        }
        self.prometheus = Prometheus(
            self.workdir / "prometheus", scrape_interval=SCRAPE_INTERVAL, extra_scrape_configs=[scrape]
        )
        what = "starting Prometheus (scraping the simulator every second)"
        if len(targets) > 1:
            what = f"starting Prometheus (scraping {len(targets)} simulators every second)"
        self.progress.run(what, self.prometheus.start)
        return self.prometheus

    def start_operator(self, *, log_level: str = "info") -> ManagedProcess:
        health = f"127.0.0.1:{free_port()}"
        argv = operator_argv(
            self.kubeconfig, health_address=health, metrics_address=f"127.0.0.1:{free_port()}", log_level=log_level
        )
        self.operator = ManagedProcess("checkout-gates run", argv, self.operator_log)
        self.operator_health = f"http://{health}/healthz"

        def start() -> None:
            assert self.operator is not None
            self.operator.start()
            wait_until(self._operator_healthy, timeout=90.0, what="the operator's /healthz", process=self.operator)

        self.progress.run("starting the operator (checkout-gates run)", start)
        return self.operator

    def _operator_healthy(self) -> bool:
        return httpx.get(self.operator_health, timeout=2.0).status_code == 200

    def _kubectl(self) -> Kubectl:
        if self.kubectl is None:
            raise RuntimeError("the cluster is not started")
        return self.kubectl

    def stop(self) -> None:
        """Stop everything started, newest first; never raises."""
        if self.operator is not None:
            with contextlib.suppress(Exception):
                self.operator.stop()
        for stop in (
            self.traffic.stop if self.traffic else None,
            self.prometheus.stop if self.prometheus else None,
            self.alertmanager.stop if self.alertmanager else None,
            self.workloads.stop if self.workloads else None,
            self.cluster.stop if self.cluster else None,
        ):
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop()
        self.operator = None
        self.traffic = None
        self.prometheus = None
        self.alertmanager = None
        self.workloads = None
        self.cluster = None
