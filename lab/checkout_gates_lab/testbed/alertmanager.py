"""Alertmanager (Debian's /usr/bin/prometheus-alertmanager) on a free loopback port.

Cluster mode is off (`--cluster.listen-address=`), storage is a throwaway directory, and
the default configuration routes everything to a receiver that notifies nobody; pass
`config` to route alerts elsewhere (e.g. a webhook receiver on loopback).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.processes import ManagedProcess, free_port, wait_until

DEFAULT_CONFIG: Mapping[str, Any] = {
    "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
    "receivers": [{"name": "null"}],
}


class Alertmanager:
    """One Alertmanager; a context manager."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.binary = binaries.find("alertmanager")  # before any temp dir: a missing binary leaves nothing
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="checkout-gates-alertmanager-"))
        self.config = dict(config or DEFAULT_CONFIG)
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.port = self.port or free_port()
        argv: list[str | Path] = [
            self.binary,
            f"--config.file={config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        self._proc = ManagedProcess("alertmanager", argv, self.workdir / "alertmanager.log").start()
        try:
            wait_until(self._ready, timeout=self.start_timeout, what=f"alertmanager at {self.url}", process=self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts to the v2 API (labels, annotations, startsAt, endsAt, generatorURL)."""
        httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10.0).raise_for_status()

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts; keyword filters become `filter=name="value"` matchers."""
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("filter", f'{k}="{v}"') for k, v in filters.items()
        ]
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=10.0)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
