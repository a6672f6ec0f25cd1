"""A local Kubernetes control plane: etcd, kube-apiserver and (optionally) kube-controller-manager.

The envtest way: no nodes, no kubelet; an apiserver with RBAC on that authenticates
client certificates signed by a throwaway CA. The admin is in group system:masters;
`kubeconfig_for(user, groups)` mints a certificate for anyone else.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.certs import CertificateAuthority, key_pem, new_key, public_key_pem
from checkout_gates_lab.testbed.etcd import Etcd
from checkout_gates_lab.testbed.kubeconfig import impersonating_kubeconfig, write_kubeconfig
from checkout_gates_lab.testbed.processes import ManagedProcess, TestbedError, free_port, wait_until

ADMIN_USER = "testbed-admin"
MASTERS = "system:masters"
DEFAULT_CONTROLLERS = ("namespace-controller", "garbage-collector-controller")


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class LocalCluster:
    """etcd + kube-apiserver on loopback, optionally kube-controller-manager; a context manager."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        controller_manager: bool = False,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        service_cluster_ip_range: str = "10.0.0.0/24",
        node_authorizer: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        controller_manager_args: Sequence[str] = (),
        start_timeout: float = 180.0,
    ) -> None:
        # Look the binaries up before making a temp dir: a missing one leaves nothing behind.
        binaries.find("etcd")
        self.apiserver_binary = binaries.find("kube-apiserver")
        self.kcm_binary = binaries.find("kube-controller-manager") if controller_manager else None
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="checkout-gates-kube-"))
        self.controller_manager = controller_manager
        self.controllers = tuple(controllers)
        self.service_cluster_ip_range = service_cluster_ip_range
        self.node_authorizer = node_authorizer
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.controller_manager_args = tuple(controller_manager_args)
        self.start_timeout = start_timeout
        self.ca = CertificateAuthority()
        self.port = 0
        self.etcd = Etcd(self.workdir / "etcd", start_timeout=start_timeout)
        self._apiserver: ManagedProcess | None = None
        self._kcm: ManagedProcess | None = None
        self._users = 0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user testbed-admin, group system:masters)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def kubeconfig_for(self, user: str, groups: Iterable[str] = ()) -> Path:
        """Mint a client certificate for user in groups and write a kubeconfig for it."""
        pair = self.ca.client(user, groups)
        path = self.workdir / "users" / f"{self._next():03d}-{_file_safe(user)}.kubeconfig"
        return write_kubeconfig(
            path, server=self.server, ca_pem=self.ca.cert_pem, user=user, cert_pem=pair.cert_pem, key_pem=pair.key_pem
        )

    def ssl_context(self, user: str = ADMIN_USER, groups: Iterable[str] = (MASTERS,)) -> ssl.SSLContext:
        """A client TLS context trusting the CA and presenting a certificate for user/groups."""
        pair = self.ca.client(user, groups)
        cert, key = pair.write(self._pki(), f"client-{self._next():03d}-{_file_safe(user)}")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(cert), str(key))
        return context

    def _next(self) -> int:
        self._users += 1
        return self._users

    def _pki(self) -> Path:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        return pki

    def start(self) -> LocalCluster:
        try:
            self.etcd.start()
            self._start_apiserver()
            if self.controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_apiserver(self) -> None:
        pki = self._pki()
        self.ca_file.write_bytes(self.ca.cert_pem)
        first_service_ip = self.service_cluster_ip_range.split("/")[0].rsplit(".", 1)[0] + ".1"
        serving_cert, serving_key = self.ca.serving(
            ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ["127.0.0.1", first_service_ip],
        ).write(pki, "apiserver")
        sa_key = new_key()
        (pki / "sa.key").write_bytes(key_pem(sa_key))
        (pki / "sa.pub").write_bytes(public_key_pem(sa_key))
        self.port = free_port()
        modes = "Node,RBAC" if self.node_authorizer else "RBAC"
        argv: list[str | Path] = [
            self.apiserver_binary,
            f"--etcd-servers={self.etcd.url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={self.ca_file}",
            f"--authorization-mode={modes}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            "--allow-privileged=true",
            "--profiling=false",
            *self.extra_apiserver_args,
        ]
        self._apiserver = ManagedProcess("kube-apiserver", argv, self.workdir / "kube-apiserver.log").start()
        admin = self.ca.client(ADMIN_USER, [MASTERS])
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_pem=self.ca.cert_pem,
            user=ADMIN_USER,
            cert_pem=admin.cert_pem,
            key_pem=admin.key_pem,
        )
        with httpx.Client(base_url=self.server, verify=self.ssl_context(), timeout=5.0) as client:

            def ready() -> bool:
                return client.get("/readyz").status_code == 200

            def default_namespace() -> bool:
                return client.get("/api/v1/namespaces/default").status_code == 200

            wait_until(ready, timeout=self.start_timeout, what="kube-apiserver /readyz", process=self._apiserver)
            wait_until(default_namespace, timeout=60, what="namespace default", process=self._apiserver)

    def _start_controller_manager(self) -> None:
        kcm = self.kcm_binary or binaries.find("kube-controller-manager")
        kubeconfig = self.kubeconfig_for("system:kube-controller-manager", [MASTERS])
        port = free_port()
        argv: list[str | Path] = [
            kcm,
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            *self.controller_manager_args,
        ]
        self._kcm = ManagedProcess("kube-controller-manager", argv, self.workdir / "kube-controller-manager.log")
        self._kcm.start()

        def healthy() -> bool:
            return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2.0).status_code == 200

        wait_until(healthy, timeout=self.start_timeout, what="kube-controller-manager /healthz", process=self._kcm)

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """Stop kube-apiserver, wait ``down_for`` seconds, start it again on the same port with the
        same flags and certificates, and wait until it is ready. etcd stays, and so does every
        object; clients keep their kubeconfigs. For outage tests."""
        if self._apiserver is None:
            raise TestbedError("kube-apiserver is not running")
        self._apiserver.stop()
        time.sleep(down_for)
        self._apiserver.start()
        with httpx.Client(base_url=self.server, verify=self.ssl_context(), timeout=5.0) as client:
            wait_until(
                lambda: client.get("/readyz").status_code == 200,
                timeout=self.start_timeout,
                what="kube-apiserver /readyz after a restart",
                process=self._apiserver,
            )

    def stop(self) -> None:
        for proc in (self._kcm, self._apiserver):
            if proc is not None:
                proc.stop()
        self._kcm = self._apiserver = None
        self.etcd.stop()
        if self._own_workdir and not os.environ.get("CHECKOUT_GATES_KEEP_TESTBED"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ExternalCluster:
    """An existing cluster (kind, k3d, ...) named by an admin kubeconfig.

    `kubeconfig_for(user, groups)` cannot mint certificates here (the CA key is the
    cluster's), so it writes a kubeconfig that impersonates user/groups with the admin's
    credentials: requests are authorized exactly as for that user.
    """

    def __init__(self, kubeconfig: Path, workdir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="checkout-gates-external-"))
        self._users = 0

    def kubeconfig_for(self, user: str, groups: Iterable[str] = ()) -> Path:
        self._users += 1
        path = self.workdir / "users" / f"{self._users:03d}-{_file_safe(user)}.kubeconfig"
        return impersonating_kubeconfig(self.kubeconfig, path, user, groups)

    def stop(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
