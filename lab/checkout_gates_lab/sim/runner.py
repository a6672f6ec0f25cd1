"""The simulator process: the engine stepped in real time, its metrics served, the weight followed.

Ticks are scheduled at fixed points (start + k * tick), so a seeded run draws the same counts
as another with the same weights; a tick that comes late is caught up at once, and a stall of
more than ``MAX_LAG`` seconds (a suspended process) is skipped rather than replayed in a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from types import TracebackType

import structlog

from checkout_gates_lab.sim.exposition import build_registry
from checkout_gates_lab.sim.model import Engine
from checkout_gates_lab.sim.revision import AlwaysFaulty, CanaryRevision, FaultGate, RevisionTarget
from checkout_gates_lab.sim.scenario import Scenario
from checkout_gates_lab.sim.server import MetricsServer
from checkout_gates_lab.sim.weights import FixedWeight, RouteTarget, RouteWeights, WeightSource

MAX_LAG = 5.0

log = structlog.get_logger("checkout_gates_lab.sim")


@dataclass(frozen=True)
class SimulatorConfig:
    rate: float = 50.0  # checkout requests per second, both variants together
    scenario: Scenario = field(default_factory=Scenario)
    canary_weight: float = 0.0  # percent; ignored when `route` is set
    route: RouteTarget | None = None  # follow this HTTPRoute's weights instead
    revision: RevisionTarget | None = None  # canary faults only while the canary runs a faulty build
    port: int = 9100  # 0: any free port (see Simulator.port)
    host: str = "127.0.0.1"
    seed: int | None = None
    duration: float | None = None  # seconds; None runs until stopped
    tick: float = 0.1


class Simulator:
    """One simulated checkout service. ``async with Simulator(config) as sim: ... sim.url``."""

    def __init__(self, config: SimulatorConfig, weights: WeightSource | None = None) -> None:
        self.config = config
        self.engine = Engine(config.scenario, rate=config.rate, seed=config.seed, tick=config.tick)
        if weights is None:
            weights = RouteWeights(config.route) if config.route else FixedWeight(config.canary_weight)
        self.weights = weights
        self.faults: FaultGate = CanaryRevision(config.revision) if config.revision else AlwaysFaulty()
        self.server = MetricsServer(
            build_registry(lambda: self.engine.totals, self.engine.schedule.flags), config.host, config.port
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"{self.server.host}:{self.server.port}"

    @property
    def url(self) -> str:
        """The metrics endpoint, e.g. http://127.0.0.1:9100/metrics."""
        return f"{self.server.url}/metrics"

    async def start(self) -> None:
        """Serve metrics and start ticking; returns once the port is bound."""
        if isinstance(self.weights, RouteWeights):
            await self.weights.refresh()  # so the first ticks already follow the route
        # The share is exposed from the first scrape on, before the first tick has run.
        self.engine.totals.canary_weight = self.weights.weight()
        await self.server.start()
        if isinstance(self.faults, CanaryRevision):
            await self.faults.refresh()
        self._tasks = [
            asyncio.create_task(self._ticks()),
            asyncio.create_task(self.weights.follow()),
            asyncio.create_task(self.faults.follow()),
        ]
        log.info(
            "simulating checkout",
            metrics=self.url,
            rate=self.config.rate,
            scenario=self.config.scenario.name,
            seed=self.config.seed,
        )

    async def wait(self) -> None:
        """Until the duration has passed or ``stop`` was called."""
        await self._done.wait()

    async def stop(self) -> None:
        self._done.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.server.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.config.tick
        origin = loop.time()
        total = None if self.config.duration is None else round(self.config.duration / tick)
        k = 0  # ticks done since `origin`
        while total is None or self.engine.ticks < total:
            delay = origin + (k + 1) * tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > MAX_LAG:
                log.warning("simulator fell behind; skipping", seconds=round(-delay, 1))
                origin, k = loop.time() - tick, 0
            self.engine.step(self.weights.weight(), self.faults.canary_faulty())
            k += 1
        log.info("duration reached", seconds=self.engine.elapsed)
        self._done.set()


async def run(config: SimulatorConfig) -> int:
    """Run until SIGTERM, SIGINT or the duration; exit status 0."""
    loop = asyncio.get_running_loop()
    simulator = Simulator(config)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with simulator:
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(simulator.wait())]
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        log.info("simulator stopped", ticks=simulator.engine.ticks, signal=stop.is_set())
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
