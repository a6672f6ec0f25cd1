"""What the testbed's Prometheus and Alertmanager share: one server process on a loopback port.

Each owns a working directory (a temporary one unless given), starts its binary with
:class:`ManagedProcess`, waits for ``/-/ready`` and cleans up as a context manager.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.processes import ManagedProcess, free_port, wait_until


class LoopbackServer:
    """One server process listening on 127.0.0.1; subclasses say how to start it."""

    name = "server"

    def __init__(self, binary: str, workdir: Path | None, *, start_timeout: float) -> None:
        self.binary = binaries.find(binary)  # before any temp dir: a missing binary leaves nothing
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"checkout-gates-{self.name}-"))
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def start(self) -> Self:
        raise NotImplementedError

    def _launch(self, argv: Sequence[str | Path]) -> None:
        """Start ``argv`` (a free port is chosen first if none is set) and wait until it is ready."""
        self._proc = ManagedProcess(self.name, list(argv), self.workdir / f"{self.name}.log").start()
        try:
            wait_until(self._ready, timeout=self.start_timeout, what=f"{self.name} at {self.url}", process=self._proc)
        except BaseException:
            self.stop()
            raise

    def _listen_port(self) -> int:
        self.port = self.port or free_port()
        return self.port

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def close(self) -> None:
        """Stop, and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
