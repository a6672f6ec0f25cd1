"""Prometheus (Debian's /usr/bin/prometheus) on a free loopback port with a throwaway TSDB.

Scrape targets are given at construction or later with `set_scrape_targets` (a live
reload). `backfill_openmetrics(text)` writes recorded samples as TSDB blocks with
`promtool tsdb create-blocks-from openmetrics` and restarts Prometheus so it loads them;
overlapping blocks are accepted by default since Prometheus 2.39, so samples may be of any
age within the retention (10 years by default here).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.processes import TestbedError
from checkout_gates_lab.testbed.server import LoopbackServer


class Prometheus(LoopbackServer):
    """One Prometheus server; a context manager."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        retention: str = "3650d",
        extra_args: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__("prometheus", workdir, start_timeout=start_timeout)
        self.promtool = binaries.find("promtool")
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self.retention = retention
        self.extra_args = tuple(extra_args)

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def _write_config(self) -> None:
        scrape_configs: list[dict[str, Any]] = []
        if self.scrape_targets:
            scrape_configs.append({"job_name": "testbed", "static_configs": [{"targets": self.scrape_targets}]})
        scrape_configs += self.extra_scrape_configs
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": scrape_configs,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> Prometheus:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        self._write_config()
        port = self._listen_port()
        self._launch(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage_dir}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--web.enable-admin-api",
                "--log.level=warn",
                *self.extra_args,
            ]
        )
        return self

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_scrape_targets(self, targets: Sequence[str]) -> None:
        """Replace the `testbed` job's targets; reloads a running server."""
        self.scrape_targets = list(targets)
        self._write_config()
        if self.running:
            httpx.post(f"{self.url}/-/reload", timeout=10.0).raise_for_status()

    def backfill_openmetrics(self, text: str) -> None:
        """Write OpenMetrics samples (timestamps in seconds) into the TSDB and (re)start to load them."""
        if not text.rstrip().endswith("# EOF"):
            text = text.rstrip("\n") + "\n# EOF\n"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        source = self.workdir / "backfill.om"
        source.write_text(text)
        was_running = self.running
        self.stop()
        result = subprocess.run(
            [str(self.promtool), "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.storage_dir)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            if was_running:
                self.start()
            raise TestbedError(f"promtool backfill failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        self.start()

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query over the HTTP API; returns data.result (raises on an error status)."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30.0)
        body: dict[str, Any] = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise TestbedError(f"query {promql!r} failed: {response.status_code} {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
