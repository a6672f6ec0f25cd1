"""Workloads that really roll, without a container runtime: kube-scheduler and kwok.

kube-scheduler binds pods to nodes as in any cluster; kwok (sigs.k8s.io/kwok) plays the nodes'
kubelets: it keeps the Nodes it manages Ready and moves the pods bound to them through their
lifecycle (Running, containers ready) with its default stages. With kube-controller-manager's
deployment, replicaset and endpointslice controllers, a Deployment rolls out for real: `kubectl
set image` makes a new ReplicaSet whose pods are scheduled and become Ready, and Services get
EndpointSlices of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from checkout_gates_lab.testbed import binaries
from checkout_gates_lab.testbed.kubectl import Kubectl
from checkout_gates_lab.testbed.processes import ManagedProcess, free_port, wait_until

# What a rolling Deployment needs of kube-controller-manager.
WORKLOAD_CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "serviceaccount-controller",
    # kube-apiserver taints a new Node not-ready (TaintNodesByCondition); this controller lifts the
    # taint once kwok reports it Ready, as in any cluster.
    "node-lifecycle-controller",
    # HPAs scale for real. With no metrics API here, an HPA still holds its target within
    # [minReplicas, maxReplicas] (that needs no metrics) and leaves a target at 0 replicas alone.
    "horizontal-pod-autoscaler-controller",
)
# Every 2 s rather than 15: a test waits for the HPA's move, not for its clock.
WORKLOAD_CONTROLLER_ARGS = ("--horizontal-pod-autoscaler-sync-period=2s",)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def fake_node(name: str) -> dict[str, Any]:
    """A Node that kwok plays, with room for plenty of pods (the testbed has no other nodes)."""
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "500"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        "spec": {},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


class Workloads:
    """kube-scheduler and kwok against a running cluster (its admin kubeconfig), and ``nodes`` fake nodes."""

    def __init__(self, kubeconfig: Path, workdir: Path, *, nodes: int = 2, start_timeout: float = 120.0) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.nodes = nodes
        self.start_timeout = start_timeout
        self.scheduler_binary = binaries.find("kube-scheduler")
        self.kwok_binary = binaries.find("kwok")
        self.kwok_stages = binaries.kwok_stages()
        self._scheduler: ManagedProcess | None = None
        self._kwok: ManagedProcess | None = None

    def start(self) -> Workloads:
        try:
            self._start_scheduler()
            self._start_kwok()
            kubectl = Kubectl(self.kubeconfig)
            for index in range(self.nodes):
                kubectl.apply(json.dumps(fake_node(f"kwok-node-{index}")))
            wait_until(self._nodes_ready, timeout=self.start_timeout, what="kwok nodes Ready", process=self._kwok)
        except BaseException:
            self.stop()
            raise
        return self

    def _nodes_ready(self) -> bool:
        nodes = Kubectl(self.kubeconfig).json("get", "nodes")["items"]
        ready = [
            n
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.nodes

    def _start_scheduler(self) -> None:
        port = free_port()
        argv: list[str | Path] = [
            self.scheduler_binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
        ]
        self._scheduler = ManagedProcess("kube-scheduler", argv, self.workdir / "kube-scheduler.log").start()

        def healthy() -> bool:
            return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2.0).status_code == 200

        wait_until(healthy, timeout=self.start_timeout, what="kube-scheduler /healthz", process=self._scheduler)

    def _start_kwok(self) -> None:
        port = free_port()
        argv: list[str | Path] = [
            self.kwok_binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.kwok_stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.0.128.0/17",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{port}",
        ]
        self._kwok = ManagedProcess("kwok", argv, self.workdir / "kwok.log").start()

    def stop(self) -> None:
        for process in (self._kwok, self._scheduler):
            if process is not None:
                process.stop()
        self._kwok = self._scheduler = None
