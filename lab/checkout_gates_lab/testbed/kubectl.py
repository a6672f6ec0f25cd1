"""A thin kubectl runner bound to a kubeconfig: run, read JSON, apply manifests, wait."""

from __future__ import annotations

import json as jsonlib
import os
import subprocess
from pathlib import Path
from typing import Any

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.processes import TestbedError, wait_until


class KubectlError(TestbedError):
    """kubectl exited non-zero; carries its output."""

    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        super().__init__(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")


class Kubectl:
    """Runs the testbed's kubectl with --kubeconfig set (never the ambient KUBECONFIG)."""

    def __init__(self, kubeconfig: Path, binary: Path | None = None, timeout: float = 120.0) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary or binaries.find("kubectl")
        self.timeout = timeout

    def as_kubeconfig(self, kubeconfig: Path) -> Kubectl:
        """The same kubectl acting with another kubeconfig (e.g. a minted user's)."""
        return Kubectl(kubeconfig, self.binary, self.timeout)

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl; raises KubectlError on a non-zero exit when check is set."""
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, timeout=self.timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result)
        return result

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(*args, input=input, check=check)

    def json(self, *args: str) -> Any:
        """Run kubectl with `-o json` and parse its output."""
        return jsonlib.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str | Path, *extra: str) -> str:
        """Apply a manifest given as YAML text or as a file/directory path."""
        if isinstance(manifest, Path):
            return self.run("apply", "-f", str(manifest), *extra).stdout
        return self.run("apply", "-f", "-", *extra, input=manifest).stdout

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Wait until a CustomResourceDefinition is Established (served by the apiserver).

        Polled rather than `kubectl wait`, which fails outright while a just-created CRD has no
        conditions yet.
        """

        def established() -> bool:
            found = self.run("get", f"crd/{crd}", "-o", "json", check=False)
            if found.returncode != 0:
                return False
            conditions = jsonlib.loads(found.stdout).get("status", {}).get("conditions") or []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

        wait_until(established, timeout=timeout, what=f"CRD {crd} Established")
