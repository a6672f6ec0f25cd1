"""A single-member etcd on free loopback ports with a throwaway data directory."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import httpx

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.processes import ManagedProcess, free_port, wait_until


class Etcd:
    """etcd serving plain HTTP on 127.0.0.1 (loopback only, for the testbed's apiserver)."""

    def __init__(self, workdir: Path, start_timeout: float = 60.0) -> None:
        self.binary = binaries.find("etcd")
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.client_port = 0
        self.peer_port = 0
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> Etcd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.peer_port = free_port(), free_port()
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv: list[str | Path] = [
            self.binary,
            "--name=testbed",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # throwaway data: durability is not wanted, speed is
            "--log-level=warn",
        ]
        self._proc = ManagedProcess("etcd", argv, self.workdir / "etcd.log").start()
        wait_until(self._healthy, timeout=self.start_timeout, what=f"etcd health at {self.url}", process=self._proc)
        return self

    def _healthy(self) -> bool:
        response = httpx.get(f"{self.url}/health", timeout=2.0)
        return response.status_code == 200 and response.json().get("health") == "true"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def __enter__(self) -> Etcd:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
