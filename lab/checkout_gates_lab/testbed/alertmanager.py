"""Alertmanager (Debian's /usr/bin/prometheus-alertmanager) on a free loopback port.

Cluster mode is off (`--cluster.listen-address=`), storage is a throwaway directory, and
the default configuration routes everything to a receiver that notifies nobody; pass
`config` to route alerts elsewhere (e.g. a webhook receiver on loopback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from checkout_gates_lab.testbed.server import LoopbackServer

DEFAULT_CONFIG: Mapping[str, Any] = {
    "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
    "receivers": [{"name": "null"}],
}


class Alertmanager(LoopbackServer):
    """One Alertmanager; a context manager."""

    name = "alertmanager"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__("alertmanager", workdir, start_timeout=start_timeout)
        self.config = dict(config or DEFAULT_CONFIG)

    def start(self) -> Alertmanager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        port = self._listen_port()
        self._launch(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ]
        )
        return self

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
