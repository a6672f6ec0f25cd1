"""Where the testbed's binaries are.

Go-built binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm,
kwok) come from
`hack/testbed.sh build`: the directory named by CHECKOUT_GATES_BIN (hack/testbed-env.sh
sets it), else the newest version directory in the cache
(${CHECKOUT_GATES_CACHE:-~/.cache/checkout-gates}/bin/<version>/). Prometheus, promtool and
Alertmanager come from Debian packages (hack/install-deps.sh); CHECKOUT_GATES_PROMETHEUS,
CHECKOUT_GATES_PROMTOOL and CHECKOUT_GATES_ALERTMANAGER override their paths.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from checkout_gates_lab.testbed.processes import TestbedError


class MissingComponentError(TestbedError):
    """A binary the testbed needs is not installed."""


GO_BUILT = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm", "kwok")
_PACKAGED = {
    "prometheus": ("CHECKOUT_GATES_PROMETHEUS", "/usr/bin/prometheus"),
    "promtool": ("CHECKOUT_GATES_PROMTOOL", "/usr/bin/promtool"),
    "alertmanager": ("CHECKOUT_GATES_ALERTMANAGER", "/usr/bin/prometheus-alertmanager"),
}
_HINT_GO = "run `make testbed` (or `bash hack/testbed.sh build`)"
_HINT_DEB = "run `make deps` (or `bash hack/install-deps.sh`)"


def cache_dir() -> Path:
    return Path(os.environ.get("CHECKOUT_GATES_CACHE") or Path.home() / ".cache" / "checkout-gates")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def bin_dir() -> Path | None:
    """The directory of Go-built binaries, or None when there is none."""
    env = os.environ.get("CHECKOUT_GATES_BIN")
    if env:
        return Path(env)
    root = cache_dir() / "bin"
    if not root.is_dir():
        return None
    versions = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _version_key(d.name))
    return versions[-1] if versions else None


def find(name: str) -> Path:
    """The path of an executable the testbed needs; raises MissingComponentError if absent."""
    if name in _PACKAGED:
        env_var, default = _PACKAGED[name]
        path = Path(os.environ.get(env_var) or default)
        if os.access(path, os.X_OK):
            return path
        raise MissingComponentError(f"{name} not found at {path}: {_HINT_DEB}")
    if name not in GO_BUILT:
        raise ValueError(f"unknown testbed binary {name!r}")
    directory = bin_dir()
    if directory is not None and os.access(directory / name, os.X_OK):
        return directory / name
    # kubectl and helm may come from the user's own install when testing an existing cluster.
    if name in ("kubectl", "helm") and not os.environ.get("CHECKOUT_GATES_BIN"):
        found = shutil.which(name)
        if found:
            return Path(found)
    where = directory / name if directory else cache_dir() / "bin" / "<version>" / name
    raise MissingComponentError(f"{name} not found at {where}: {_HINT_GO}")


def kwok_stages() -> Path:
    """kwok's Stage objects (nodes and pods Ready at once), written by `hack/testbed.sh build`."""
    directory = bin_dir()
    path = directory / "kwok-stages.yaml" if directory else cache_dir() / "bin" / "<version>" / "kwok-stages.yaml"
    if not path.is_file():
        raise MissingComponentError(f"kwok's stages not found at {path}: {_HINT_GO}")
    return path


def gateway_api_crds() -> Path:
    """The directory of Gateway API standard-channel CRDs fetched by `hack/testbed.sh build`."""
    env = os.environ.get("CHECKOUT_GATES_GATEWAY_CRDS")
    if env:
        directory: Path | None = Path(env)
    else:
        root = cache_dir() / "crds" / "gateway-api"
        versions = (
            sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _version_key(d.name))
            if root.is_dir()
            else []
        )
        directory = versions[-1] if versions else None
    if directory is None or not any(directory.glob("*.yaml")):
        raise MissingComponentError(f"Gateway API CRDs not found ({directory or cache_dir() / 'crds'}): {_HINT_GO}")
    return directory
