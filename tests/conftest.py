"""Session fixtures of the local testbed: `kube`, `kubectl`, `prometheus`, `alertmanager`.

A component whose binary is missing skips the tests that need it, except under CI
(env CI set), where that is a failure: CI must build everything it tests with.
If KUBECONFIG_FOR_TESTS names a kubeconfig, `kube` uses that cluster instead of starting one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from checkout_gates_lab.testbed import (
    Alertmanager,
    ExternalCluster,
    Kubectl,
    LocalCluster,
    MissingComponentError,
    Prometheus,
)

T = TypeVar("T")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"testbed component missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _need(make: Callable[[], T]) -> T:
    try:
        return make()
    except MissingComponentError as exc:
        _missing(str(exc))


@pytest.fixture(scope="session")
def kube() -> Iterator[LocalCluster | ExternalCluster]:
    """The cluster under test: `.kubeconfig` (admin) and `.kubeconfig_for(user, groups)`.

    Local: etcd + kube-apiserver (RBAC, client certs) + kube-controller-manager (namespace
    and garbage-collector controllers); `.server`, `.ca_file`, `.ssl_context(user, groups)`.
    """
    external = os.environ.get("KUBECONFIG_FOR_TESTS")
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            pytest.fail(f"KUBECONFIG_FOR_TESTS={external} is not a file", pytrace=False)
        cluster = ExternalCluster(path)
        yield cluster
        cluster.stop()
        return
    local = _need(lambda: LocalCluster(controller_manager=True).start())
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kubectl(kube: LocalCluster | ExternalCluster) -> Kubectl:
    """kubectl as the admin; `kubectl("get", "ns")`, `.json(...)`, `.apply(...)`, `.as_kubeconfig(path)`."""
    return _need(lambda: Kubectl(kube.kubeconfig))


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    """Prometheus on loopback: `.url`, `.query(promql, at)`, `.backfill_openmetrics(text)` (restarts it)."""
    server = _need(lambda: Prometheus().start())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[Alertmanager]:
    """Alertmanager on loopback, cluster mode off: `.url`, `.post_alerts(...)`, `.alerts(**filters)`."""
    server = _need(lambda: Alertmanager().start())
    try:
        yield server
    finally:
        server.close()
