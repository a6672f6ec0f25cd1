"""The testbed itself: a real apiserver with RBAC and status subresources, real Prometheus
and Alertmanager. Every test here talks to a running server; none is mocked."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from checkout_gates_lab.testbed import (
    Alertmanager,
    ExternalCluster,
    Kubectl,
    LocalCluster,
    Prometheus,
    binaries,
    gateway_api_crds,
    wait_until,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT_CRD = REPO / "crds" / "checkoutrollouts.gates.checkout.dev.yaml"

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testbed.checkout.dev
spec:
  group: testbed.checkout.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
            status:
              type: object
              properties:
                phase: {type: string}
"""


def pinned_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Z_]+)=(\S+)", line)
        if match:
            pins[match.group(1)] = match.group(2).strip("\"'")
    return pins


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"testbed-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- (1) CRDs, the status subresource and metadata.generation ---------------------------------


@pytest.fixture(scope="module")
def widget_crd(kubectl: Kubectl) -> str:
    kubectl.apply(WIDGET_CRD)
    kubectl.wait_established("widgets.testbed.checkout.dev")
    return "widgets.testbed.checkout.dev"


def test_status_patch_keeps_generation_spec_patch_bumps_it(kubectl: Kubectl, widget_crd: str, namespace: str) -> None:
    kubectl.apply(
        "apiVersion: testbed.checkout.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 1}\n", "-n", namespace
    )
    created = kubectl.json("get", "widget", "w1", "-n", namespace)
    generation = created["metadata"]["generation"]

    kubectl(
        "patch",
        "widget",
        "w1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Ready"}}),
    )
    after_status = kubectl.json("get", "widget", "w1", "-n", namespace)
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["metadata"]["generation"] == generation
    assert after_status["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]

    # With the status subresource on, the main resource ignores status changes.
    kubectl("patch", "widget", "w1", "-n", namespace, "--type=merge", "-p", json.dumps({"status": {"phase": "X"}}))
    assert kubectl.json("get", "widget", "w1", "-n", namespace)["status"] == {"phase": "Ready"}

    kubectl("patch", "widget", "w1", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"size": 2}}))
    after_spec = kubectl.json("get", "widget", "w1", "-n", namespace)
    assert after_spec["spec"] == {"size": 2}
    assert after_spec["metadata"]["generation"] == generation + 1
    assert after_spec["status"] == {"phase": "Ready"}


def test_project_crd_applies_and_is_established(kubectl: Kubectl) -> None:
    docs = [d for d in yaml.safe_load_all(PROJECT_CRD.read_text()) if d]
    names = [d["metadata"]["name"] for d in docs if d.get("kind") == "CustomResourceDefinition"]
    assert names, f"{PROJECT_CRD} holds no CustomResourceDefinition"
    kubectl.apply(PROJECT_CRD)
    for name in names:
        kubectl.wait_established(name)
        crd = kubectl.json("get", "crd", name)
        assert any(v["served"] for v in crd["spec"]["versions"])


def test_gateway_api_crds_apply_and_are_established(kubectl: Kubectl) -> None:
    crds = gateway_api_crds()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    kubectl.wait_established("httproutes.gateway.networking.k8s.io")
    kubectl.wait_established("gateways.gateway.networking.k8s.io")


# --- (2) RBAC: minted users and impersonation ------------------------------------------------


def test_minted_user_without_rights_is_forbidden(
    kube: LocalCluster | ExternalCluster, kubectl: Kubectl, namespace: str
) -> None:
    nobody = kubectl.as_kubeconfig(kube.kubeconfig_for(f"nobody-{namespace}"))
    result = nobody("get", "configmaps", "-n", namespace, check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert f'User "nobody-{namespace}"' in result.stderr

    if isinstance(kube, ExternalCluster):
        return  # there, kubeconfig_for impersonates with admin credentials, which --as would override
    # Nor may it impersonate anyone, e.g. the admin group.
    escalate = nobody("get", "configmaps", "-n", namespace, "--as=admin", "--as-group=system:masters", check=False)
    assert escalate.returncode != 0
    assert "cannot impersonate" in escalate.stderr


def test_minted_user_gets_exactly_what_rbac_grants(
    kube: LocalCluster | ExternalCluster, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    kubectl("create", "rolebinding", "cm-reader", "-n", namespace, "--role=cm-reader", "--group=cm-readers")
    reader = kubectl.as_kubeconfig(kube.kubeconfig_for("reader", ["cm-readers"]))
    outsider = kubectl.as_kubeconfig(kube.kubeconfig_for("reader"))  # same name, without the group

    def can_list() -> bool:  # RBAC caches settle within a moment
        return reader("get", "configmaps", "-n", namespace, check=False).returncode == 0

    wait_until(can_list, timeout=30, what="rolebinding to take effect")
    assert "Forbidden" in reader("get", "configmaps", "-n", "default", check=False).stderr
    assert "Forbidden" in reader("delete", "configmap", "x", "-n", namespace, check=False).stderr
    assert "Forbidden" in outsider("get", "configmaps", "-n", namespace, check=False).stderr


def test_admin_impersonation(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list", "--resource=pods")
    kubectl("create", "rolebinding", "pod-reader", "-n", namespace, "--role=pod-reader", "--user=someone")

    def allowed() -> bool:
        return kubectl("get", "pods", "-n", namespace, "--as=someone", check=False).returncode == 0

    wait_until(allowed, timeout=30, what="rolebinding to take effect")
    whoami = kubectl.json("auth", "whoami", "--as=someone", "--as-group=payments-oncall")
    assert whoami["status"]["userInfo"]["username"] == "someone"
    assert "payments-oncall" in whoami["status"]["userInfo"]["groups"]

    refused = kubectl("get", "pods", "-n", namespace, "--as=someone-else", check=False)
    assert refused.returncode != 0
    assert 'User "someone-else" cannot list resource "pods"' in refused.stderr
    assert kubectl("auth", "can-i", "list", "pods", "-n", namespace, "--as=someone").stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "list", "pods", "-n", "default", "--as=someone", check=False)
    assert denied.stdout.strip() == "no"


# --- kube-controller-manager: namespace and garbage-collector controllers ----------------------


def test_garbage_collector_and_namespace_controller(kubectl: Kubectl) -> None:
    ns = f"testbed-gc-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    kubectl("create", "configmap", "owner", "-n", ns)
    owner_uid = kubectl.json("get", "configmap", "owner", "-n", ns)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": ns,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    kubectl.apply(json.dumps(dependent))
    kubectl("delete", "configmap", "owner", "-n", ns)

    def dependent_gone() -> bool:
        return kubectl("get", "configmap", "dependent", "-n", ns, check=False).returncode != 0

    wait_until(dependent_gone, timeout=60, what="garbage collection of the dependent")
    kubectl("delete", "namespace", ns, "--timeout=90s")  # waits until the namespace controller empties it
    assert kubectl("get", "namespace", ns, check=False).returncode != 0


# --- the built binaries match the pins ------------------------------------------------------


def test_binaries_report_pinned_versions(kube: LocalCluster | ExternalCluster, kubectl: Kubectl) -> None:
    pins = pinned_versions()
    client = kubectl.json("version", "--client")["clientVersion"]
    assert client["gitVersion"] == pins["KUBE_VERSION"]
    if isinstance(kube, LocalCluster):
        server = kubectl.json("version")["serverVersion"]
        assert server["gitVersion"] == pins["KUBE_VERSION"]
        assert server["minor"] == pins["KUBE_VERSION"].split(".")[1]
    helm = binaries.find("helm")
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(pins["HELM_VERSION"])
    etcd = subprocess.run([str(binaries.find("etcd")), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"etcd Version: {pins['ETCD_VERSION'].lstrip('v')}" in etcd
    kwok = subprocess.run([str(binaries.find("kwok")), "--version"], capture_output=True, text=True, check=True)
    assert pins["KWOK_VERSION"].lstrip("v") in kwok.stdout + kwok.stderr


# --- (3) Prometheus: backfill and query ------------------------------------------------------


def test_backfilled_openmetrics_are_queryable(prometheus: Prometheus) -> None:
    start = int(time.time()) - 2 * 3600  # an older range: blocks, not head samples
    run = uuid.uuid4().hex[:8]
    lines = ["# TYPE testbed_checkouts counter"]
    for variant, step in (("canary", 3), ("stable", 5)):  # each series' samples together, in time order
        for i in range(40):  # 10 minutes at 15 s
            lines.append(f'testbed_checkouts_total{{run="{run}",variant="{variant}"}} {step * i} {start + 15 * i}')
    prometheus.backfill_openmetrics("\n".join(lines) + "\n# EOF\n")

    at = start + 15 * 20
    response = httpx.get(
        f"{prometheus.url}/api/v1/query",
        params={"query": f'sum by (variant) (testbed_checkouts_total{{run="{run}"}})', "time": str(at)},
        timeout=30,
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["status"] == "success"
    values = {r["metric"]["variant"]: float(r["value"][1]) for r in body["data"]["result"]}
    assert values == {"canary": 60.0, "stable": 100.0}

    # Range functions work on backfilled data too: 20 steps of 3 in the last 300 s (plus extrapolation).
    increase = prometheus.query(f'sum(increase(testbed_checkouts_total{{run="{run}",variant="canary"}}[301s]))', at=at)
    assert float(increase[0]["value"][1]) == pytest.approx(60.0, rel=0.02)


# --- (4) Alertmanager v2 API -----------------------------------------------------------------


def test_alert_posted_to_alertmanager_reads_back(alertmanager: Alertmanager) -> None:
    key = uuid.uuid4().hex
    alert = {
        "labels": {"alertname": "CheckoutRolloutHalted", "rollout": "payments/checkout-api", "dedup": key},
        "annotations": {"summary": "canary halted at 5%: auth-approval failed"},
        "generatorURL": "http://127.0.0.1/checkout-gates",
    }
    for _ in range(2):  # a repeat of the same label set is the same alert
        posted = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=10)
        assert posted.status_code == 200

    response = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": f'dedup="{key}"'}, timeout=10)
    assert response.status_code == 200
    alerts = response.json()
    assert len(alerts) == 1
    assert alerts[0]["labels"] == alert["labels"]
    assert alerts[0]["annotations"] == alert["annotations"]
    assert alerts[0]["status"]["state"] == "active"
    assert alertmanager.alerts(dedup=key)[0]["fingerprint"] == alerts[0]["fingerprint"]
    assert alertmanager.alerts(dedup="no-such-key") == []
