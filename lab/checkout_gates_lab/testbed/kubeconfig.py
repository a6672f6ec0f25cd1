"""Kubeconfig files: one cluster, one user, one context, credentials embedded."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    cert_pem: bytes,
    key_pem: bytes,
    cluster: str = "checkout-gates-testbed",
) -> Path:
    """Write a client-certificate kubeconfig for user at server (mode 0600)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}}
        ],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
    }
    return _write(path, config)


def impersonating_kubeconfig(source: Path, path: Path, user: str, groups: Iterable[str] = ()) -> Path:
    """Copy source's current context into path, acting as user/groups by impersonation.

    For clusters whose CA key we do not hold (an existing kind or k3d cluster): the source
    identity must be allowed to impersonate, and every request is then authorized as user.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    context_name = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    if context_name not in contexts:
        raise ValueError(f"{source}: no current context")
    context = dict(contexts[context_name])
    users = {u["name"]: u.get("user", {}) for u in config.get("users", [])}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    identity = _absolute(dict(users.get(context.get("user", "")) or {}), source.parent)
    identity["as"] = user
    group_list = list(groups)
    if group_list:
        identity["as-groups"] = group_list
    cluster_name = context["cluster"]
    new_user = f"as-{user}"
    new = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": _absolute(dict(clusters[cluster_name]), source.parent)}],
        "users": [{"name": new_user, "user": identity}],
        "contexts": [{"name": new_user, "context": {**context, "user": new_user}}],
        "current-context": new_user,
    }
    return _write(path, new)


_FILE_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def _absolute(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve the relative file references of a kubeconfig entry against its file's directory."""
    for key in _FILE_KEYS:
        value = entry.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            entry[key] = str(base / value)
    return entry


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
