"""The Helm chart on the real testbed: it lints and renders, installs, grants the operator exactly
what it needs (checked by impersonation), binds approvals to identity through its admission
policy, and is enough for the operator, run as the chart's ServiceAccount, to complete a rollout.

No kubelet runs, so the chart's Deployment is only stored; the operator runs here as a local
process holding a token of the chart's ServiceAccount.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.api.spec import GROUP, PLURAL
from checkout_gates.rollout.annotations import CHANGED_BY_KEY, REASON_KEY
from checkout_gates.workloads.deployment import CHANGED_BY_ANNOTATION
from checkout_gates_lab.testbed import (
    ExternalCluster,
    Kubectl,
    KubectlError,
    LocalCluster,
    MissingComponentError,
    Prometheus,
    find,
    gateway_api_crds,
)

from .checkout_traffic import CheckoutTraffic
from .operator_harness import Operator, Rollout, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "checkout-gates"
CRD_FILE = f"{PLURAL}.{GROUP}.yaml"
FREEZE_CRD_FILE = f"checkoutfreezes.{GROUP}.yaml"
ISTIO_CRD = Path(__file__).resolve().parent / "manifests" / "istio-virtualservice-crd.yaml"
KUBE_VERSION = "1.36.0"  # for `helm template`, which does not ask a cluster
APPROVERS = "checkout-approvers"
DEPLOYERS = "checkout-deployers"
ROLLOUTS = f"{PLURAL}.{GROUP}"
ANNOTATIONS = [f"{GROUP}/{key}" for key in ("approve", "abort", "retry", "pause")]
APPROVE = f"{GROUP}/approve"
ABORT = f"{GROUP}/abort"
STAMP = CHANGED_BY_KEY  # gates.checkout.dev/spec-changed-by, written by the MutatingAdmissionPolicy
TEMPLATE_STAMP = CHANGED_BY_ANNOTATION  # gates.checkout.dev/template-changed-by, on Deployments
REFUND_APPROVERS = "refund-approvers"
REASON = REASON_KEY
PAGING_SECRET = "pd-payments"  # in the chart's default paging.secrets
PROMETHEUS_SECRET = "prometheus-token"  # added through prometheus.credentialSecrets


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"testbed component missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Helm:
    """The testbed's helm, with its own config and cache directories and the admin's kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        for name in ("CACHE", "CONFIG", "DATA"):
            self.env[f"HELM_{name}_HOME"] = str(home / name.lower())

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=180, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
        return result

    def template(self, values: dict[str, Any] | None = None, *, namespace: str = "ops") -> list[dict[str, Any]]:
        args = ["template", "cg", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        result = self("template", *args[1:], *self._values(values))
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def install(self, release: str, namespace: str, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self(
            "install", release, str(CHART), "--namespace", namespace, "--create-namespace", *self._values(values)
        )

    def _values(self, values: dict[str, Any] | None) -> list[str]:
        # Every install must say where rollouts may send requests; the tests about that pass their own.
        values = {"egress": {"unrestricted": True}, **(values or {})}
        path = Path(self.env["HELM_DATA_HOME"]).parent / f"values-{uuid.uuid4().hex[:8]}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]


@pytest.fixture(scope="module")
def helm(kube: LocalCluster | ExternalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = find("helm")
    except MissingComponentError as error:
        _skip_or_fail(str(error))
    return Helm(binary, kube.kubeconfig, tmp_path_factory.mktemp("helm"))


def kinds(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


# --- the chart, rendered --------------------------------------------------------------------------


def test_lint_passes(helm: Helm) -> None:
    # At the Kubernetes version the chart needs: helm lint's default (1.20) would stop rendering at
    # the admission policies' version check, which lint reports as [INFO] only.
    for extra in ([], ["--set", "watchNamespaces={payments,refunds}", "--set", "serviceMonitor.enabled=true"]):
        result = helm(
            "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "--set", "egress.unrestricted=true", *extra
        )
        assert "Fail:" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_chart_crd_is_the_generated_crd_byte_for_byte() -> None:
    copied = sorted(path.name for path in (CHART / "crds").iterdir())
    assert copied == sorted([CRD_FILE, FREEZE_CRD_FILE])
    for name in copied:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            "charts/checkout-gates/crds/ must be a copy of crds/: make crd"
        )


def test_template_cluster_wide_by_default(helm: Helm) -> None:
    documents = helm.template()
    found = kinds(documents)
    assert set(found) >= {
        ("ServiceAccount", "cg-checkout-gates"),
        ("ClusterRole", "cg-checkout-gates-operator"),
        ("ClusterRoleBinding", "cg-checkout-gates-operator"),
        ("ClusterRole", "cg-checkout-gates-discovery"),
        ("ClusterRoleBinding", "cg-checkout-gates-discovery"),
        ("ClusterRole", "cg-checkout-gates-approver"),
        ("ClusterRole", "cg-checkout-gates-deployer"),
        ("Deployment", "cg-checkout-gates"),
        ("PodDisruptionBudget", "cg-checkout-gates"),
        ("Service", "cg-checkout-gates-metrics"),
        ("ValidatingAdmissionPolicy", "cg-checkout-gates-approvals"),
        ("ValidatingAdmissionPolicyBinding", "cg-checkout-gates-approvals"),
        ("ValidatingAdmissionPolicy", "cg-checkout-gates-spec-changes"),
        ("ValidatingAdmissionPolicyBinding", "cg-checkout-gates-spec-changes"),
        ("ValidatingAdmissionPolicy", "cg-checkout-gates-status"),
        ("ValidatingAdmissionPolicyBinding", "cg-checkout-gates-status"),
        ("MutatingAdmissionPolicy", "cg-checkout-gates-spec-changed-by"),
        ("MutatingAdmissionPolicyBinding", "cg-checkout-gates-spec-changed-by"),
    }
    assert not of_kind(documents, "ServiceMonitor")
    assert not of_kind(documents, "RoleBinding")
    assert not of_kind(documents, "Role"), "namespaced rights come from the ClusterRole, bound per namespace"
    rules = found[("ClusterRole", "cg-checkout-gates-operator")]["rules"]
    by_resource = {(rule["apiGroups"][0], resource): rule for rule in rules for resource in rule["resources"]}
    assert by_resource[(GROUP, PLURAL)]["verbs"] == ["get", "list", "watch", "patch"]
    assert by_resource[(GROUP, f"{PLURAL}/status")]["verbs"] == ["get", "update", "patch"]
    assert ("apps", "deployments") not in by_resource, "the replica router is off by default"
    assert by_resource[("", "secrets")]["verbs"] == ["get"]
    assert by_resource[("", "secrets")]["resourceNames"] == sorted(
        ["pd-payments", "pd-checkout", "slack-payments", "refunds-hooks"]
    )
    every_verb = {verb for rule in rules for verb in rule["verbs"]}
    assert every_verb <= {"get", "list", "watch", "patch", "update", "create"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)
    deployment = found[("Deployment", "cg-checkout-gates")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [arg for arg in args if arg.startswith("--namespace")]


def test_template_with_workloads_may_create_and_update_deployments_but_never_delete(helm: Helm) -> None:
    """workloadRef rollouts need rbac.workloads.deployments: the Deployment read and scaled, its
    stable copy created and updated; never a delete, never pods."""
    documents = helm.template({"rbac": {"workloads": {"deployments": True}}})
    rules = kinds(documents)[("ClusterRole", "cg-checkout-gates-operator")]["rules"]
    deployments = [rule for rule in rules if "deployments" in rule["resources"]]
    assert deployments == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "update", "patch"]}
    ]
    assert not [rule for rule in rules if "pods" in rule["resources"] or "delete" in rule["verbs"]]
    assert not [rule for rule in rules if "horizontalpodautoscalers" in rule["resources"]], "autoscalers: opt-in"


def test_template_with_autoscalers_may_mirror_hpas_but_never_delete_or_patch_them(helm: Helm) -> None:
    """An autoscalerRef needs rbac.workloads.autoscalers: the Deployment's HPA read, the copy's HPA
    created and updated (a whole object at its resourceVersion); no delete, no patch."""
    documents = helm.template({"rbac": {"workloads": {"deployments": True, "autoscalers": True}}})
    rules = kinds(documents)[("ClusterRole", "cg-checkout-gates-operator")]["rules"]
    assert [rule for rule in rules if "horizontalpodautoscalers" in rule["resources"]] == [
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "create", "update"]}
    ]


def test_template_with_watch_namespaces_binds_per_namespace(helm: Helm) -> None:
    documents = helm.template({"watchNamespaces": ["payments", "refunds"], "rbac": {"routers": {"replicas": True}}})
    bindings = of_kind(documents, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "refunds"]
    assert all(
        b["roleRef"]
        == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cg-checkout-gates-operator"}
        for b in bindings
    )
    cluster_bindings = {b["metadata"]["name"] for b in of_kind(documents, "ClusterRoleBinding")}
    assert cluster_bindings == {"cg-checkout-gates-discovery"}, "no cluster-wide rights over rollouts"
    deployment = of_kind(documents, "Deployment")[0]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [arg for arg in args if arg.startswith("--namespace")] == ["--namespace=payments", "--namespace=refunds"]
    operator_role = kinds(documents)[("ClusterRole", "cg-checkout-gates-operator")]
    assert {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]} in operator_role["rules"]


def test_template_with_service_monitor(helm: Helm) -> None:
    documents = helm.template({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    (monitor,) = of_kind(documents, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (service,) = of_kind(documents, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]


def test_the_chart_makes_the_installer_say_where_rollouts_may_send_requests(helm: Helm) -> None:
    args = ["template", "cg", str(CHART), "--kube-version", KUBE_VERSION]
    unsaid = helm(*args, check=False)
    assert unsaid.returncode != 0 and "set egress.allowedDestinations" in unsaid.stderr
    both = helm(
        *args, "--set", "egress.unrestricted=true", "--set", "egress.allowedDestinations={https://x}", check=False
    )
    assert both.returncode != 0 and "exclude each other" in both.stderr
    listed = ["http://prometheus.monitoring.svc:9090", "https://events.pagerduty.com"]
    deployment = of_kind(helm.template({"egress": {"allowedDestinations": listed}}), "Deployment")[0]
    container_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in container_args if a.startswith("--egress")] == [f"--egress-allow={d}" for d in listed]
    unrestricted = of_kind(helm.template({"egress": {"unrestricted": True}}), "Deployment")[0]
    assert "--egress-unrestricted" in unrestricted["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_audit_sink_is_passed_with_its_token_and_ca_mounted_from_the_cluster(helm: Helm) -> None:
    (plain,) = of_kind(helm.template(), "Deployment")
    assert not [a for a in plain["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--audit")]
    values = {
        "audit": {
            "url": "https://audit.internal:8443/checkout-gates",
            "tokenSecret": {"name": "audit-sink", "key": "token"},
            "caConfigMap": {"name": "audit-ca", "key": "ca.crt"},
        }
    }
    (deployment,) = of_kind(helm.template(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert [a for a in container["args"] if a.startswith("--audit")] == [
        "--audit-url=https://audit.internal:8443/checkout-gates",
        "--audit-token-file=/etc/checkout-gates/audit-token/token",
        "--audit-ca-file=/etc/checkout-gates/audit-ca/ca.crt",
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["audit-token"]["secret"] == {
        "secretName": "audit-sink",
        "items": [{"key": "token", "path": "token"}],
    }
    assert volumes["audit-ca"]["configMap"] == {"name": "audit-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["audit-token"]["readOnly"] and mounts["audit-ca"]["mountPath"] == "/etc/checkout-gates/audit-ca"
    args = ["template", "cg", str(CHART), "--kube-version", KUBE_VERSION, "--set", "egress.unrestricted=true"]
    orphan = helm(*args, "--set", "audit.tokenSecret.name=audit-sink", "--set", "audit.tokenSecret.key=t", check=False)
    assert orphan.returncode != 0 and "need audit.url" in orphan.stderr
    keyless = helm(*args, "--set", "audit.url=https://a", "--set", "audit.tokenSecret.name=audit-sink", check=False)
    assert keyless.returncode != 0 and "audit.tokenSecret needs name and key" in keyless.stderr


def test_the_network_policy_lets_out_dns_the_apiserver_and_the_listed_rules_only(helm: Helm, kubectl: Kubectl) -> None:
    assert not of_kind(helm.template(), "NetworkPolicy"), "off by default"
    refused = helm("template", "cg", str(CHART), "--kube-version", KUBE_VERSION, "--set", "egress.unrestricted=true",
                   "--set", "networkPolicy.enabled=true", check=False)  # fmt: skip
    assert refused.returncode != 0 and "networkPolicy.apiServer.cidrs" in refused.stderr
    monitoring = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": 9090, "protocol": "TCP"}],
    }
    values = {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}, "egress": [monitoring]}}
    (policy,) = of_kind(helm.template(values), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "checkout-gates"
    dns, apiserver, *listed = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert apiserver["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert listed == [monitoring]
    assert {p["port"] for p in spec["ingress"][0]["ports"]} == {8080, 8081}
    # The kube-apiserver accepts it as written (a server-side dry run validates the whole object).
    document = {**policy, "metadata": {**policy["metadata"], "namespace": "default"}}
    kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document))


def test_admission_policies_need_kubernetes_1_36(helm: Helm) -> None:
    egress = ["--set", "egress.unrestricted=true"]
    result = helm("template", "cg", str(CHART), "--kube-version", "1.35.0", *egress, check=False)
    assert result.returncode != 0
    assert "admissionPolicy.enabled needs Kubernetes 1.36" in result.stderr
    old = ["--kube-version", "1.35.0", "--set", "admissionPolicy.enabled=false", *egress]
    documents = helm("template", "cg", str(CHART), *old)
    assert documents.returncode == 0
    policies = [doc for doc in helm.template() if doc["kind"].endswith("AdmissionPolicy")]
    assert {doc["apiVersion"] for doc in policies} == {"admissionregistration.k8s.io/v1"}
    # spec-changed-by and template-changed-by; approvals, spec-changes, status and template-stamp.
    assert (
        sorted(doc["kind"] for doc in policies) == ["MutatingAdmissionPolicy"] * 2 + ["ValidatingAdmissionPolicy"] * 4
    )
    floor = helm.template({"admissionPolicy": {"minimumApprovers": 2}})
    (changes,) = [
        d for d in floor if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"].endswith("-spec-changes")
    ]
    assert {"name": "minimum", "expression": "2"} in changes["spec"]["variables"]
    unstamped = [
        doc for doc in helm.template({"admissionPolicy": {"stampDeployments": False}}) if "Admission" in doc["kind"]
    ]
    assert not [doc for doc in unstamped if "template" in doc["metadata"]["name"]]


def test_template_refuses_more_than_one_replica_without_leader_election(helm: Helm) -> None:
    values = ["--set", "replicas=2", "--set", "leaderElection.enabled=false", "--set", "egress.unrestricted=true"]
    result = helm("template", "cg", str(CHART), "--kube-version", KUBE_VERSION, *values, check=False)
    assert result.returncode != 0
    assert "leader election" in result.stderr


def test_more_than_one_replica_elects_a_leader_with_rights_to_its_lease_only(helm: Helm) -> None:
    documents = helm.template({"replicas": 2})
    (deployment,) = of_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert "--leader-election" in args and "--leader-election-namespace=ops" in args
    assert "--leader-election-id=cg-checkout-gates-leader" in args and "--lease-duration=15" in args
    (role,) = of_kind(documents, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["cg-checkout-gates-leader"],
            "verbs": ["get", "update"],
        },
    ]
    binding = next(b for b in of_kind(documents, "RoleBinding") if b["roleRef"]["kind"] == "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert not [d for d in of_kind(helm.template(), "Role") if "leader" in d["metadata"]["name"]], "off with one"


def test_deployment_is_locked_down(helm: Helm) -> None:
    (deployment,) = of_kind(helm.template(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-address=0.0.0.0:8080" in container["args"]
    assert "--metrics-address=0.0.0.0:8081" in container["args"]


# --- the chart, installed -------------------------------------------------------------------------


@dataclass
class Release:
    name: str
    namespace: str  # where the operator runs
    rollouts: str  # a namespace under the admission policy, where the approver binding is
    fullname: str
    policy_label: str = ""  # the namespace label the admission policy is bound to

    @property
    def service_account(self) -> str:
        return self.fullname

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def token_kubeconfig(kubectl: Kubectl, admin: Path, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a freshly minted token of the ServiceAccount."""
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()
    config = yaml.safe_load(admin.read_text())
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    cluster_name = contexts[config["current-context"]]["cluster"]
    cluster = dict(next(c["cluster"] for c in config["clusters"] if c["name"] == cluster_name))
    if "certificate-authority" in cluster and not Path(cluster["certificate-authority"]).is_absolute():
        cluster["certificate-authority"] = str(admin.parent / cluster["certificate-authority"])
    user = service_account
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def release(helm: Helm, kubectl: Kubectl) -> Iterator[Release]:
    """The chart installed cluster-wide; its admission policy confined to one labelled namespace,
    so that the other test modules' rollouts (annotated by the admin) are not refused."""
    # A letter first: Helm reads values as YAML 1.2, where e.g. "8e0104" would be a number.
    suffix = "t" + uuid.uuid4().hex[:5]
    installed = Release(
        name=f"cg{suffix}",
        namespace=f"cg-ops-{suffix}",
        rollouts=f"cg-pay-{suffix}",
        fullname=f"cg{suffix}-checkout-gates",
        policy_label=f"checkout-gates.dev/policy-test={suffix}",
    )
    # Other CRDs the operator's routers patch, so that `kubectl auth can-i` can resolve them.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
    kubectl("apply", "-f", str(ISTIO_CRD))
    kubectl("create", "namespace", installed.rollouts)
    kubectl("label", "namespace", installed.rollouts, installed.policy_label)
    values = {
        "admissionPolicy": {"namespaceSelector": {"matchLabels": {"checkout-gates.dev/policy-test": suffix}}},
        "approvers": {"roleBinding": {"enabled": True, "namespaces": [installed.rollouts]}},
        "deployers": {"roleBinding": {"enabled": True, "namespaces": [installed.rollouts]}},
        "prometheus": {"credentialSecrets": [PROMETHEUS_SECRET]},
    }
    try:
        helm.install(installed.name, installed.namespace, values)
        kubectl.wait_established(f"{PLURAL}.{GROUP}")  # from the chart's crds/, unless already there
        enforced(kubectl, installed)
        yield installed
    finally:
        helm("uninstall", installed.name, "--namespace", installed.namespace, check=False)
        for namespace in (installed.rollouts, installed.namespace):
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_creates_every_object(helm: Helm, kubectl: Kubectl, release: Release) -> None:
    status = json.loads(helm("status", release.name, "--namespace", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    manifest = helm("get", "manifest", release.name, "--namespace", release.namespace).stdout
    documents = [doc for doc in yaml.safe_load_all(manifest) if doc]
    expected = {
        ("ServiceAccount", release.fullname, release.namespace),
        ("ClusterRole", f"{release.fullname}-operator", None),
        ("ClusterRoleBinding", f"{release.fullname}-operator", None),
        ("ClusterRole", f"{release.fullname}-discovery", None),
        ("ClusterRoleBinding", f"{release.fullname}-discovery", None),
        ("ClusterRole", f"{release.fullname}-approver", None),
        ("RoleBinding", f"{release.fullname}-approver", release.rollouts),
        ("ClusterRole", f"{release.fullname}-deployer", None),
        ("RoleBinding", f"{release.fullname}-deployer", release.rollouts),
        ("Deployment", release.fullname, release.namespace),
        ("PodDisruptionBudget", release.fullname, release.namespace),
        ("Service", f"{release.fullname}-metrics", release.namespace),
        ("ValidatingAdmissionPolicy", f"{release.fullname}-approvals", None),
        ("ValidatingAdmissionPolicyBinding", f"{release.fullname}-approvals", None),
        ("ValidatingAdmissionPolicy", f"{release.fullname}-spec-changes", None),
        ("ValidatingAdmissionPolicyBinding", f"{release.fullname}-spec-changes", None),
        ("ValidatingAdmissionPolicy", f"{release.fullname}-status", None),
        ("ValidatingAdmissionPolicyBinding", f"{release.fullname}-status", None),
        ("MutatingAdmissionPolicy", f"{release.fullname}-spec-changed-by", None),
        ("MutatingAdmissionPolicyBinding", f"{release.fullname}-spec-changed-by", None),
        ("MutatingAdmissionPolicy", f"{release.fullname}-template-changed-by", None),
        ("MutatingAdmissionPolicyBinding", f"{release.fullname}-template-changed-by", None),
        ("ValidatingAdmissionPolicy", f"{release.fullname}-template-stamp", None),
        ("ValidatingAdmissionPolicyBinding", f"{release.fullname}-template-stamp", None),
    }
    rendered = {(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace")) for doc in documents}
    assert rendered == expected
    for document in documents:
        kind, meta = document["kind"], document["metadata"]
        group = document["apiVersion"].rpartition("/")[0]
        resource = f"{kind.lower()}.{group}" if group else kind.lower()
        where = ["-n", meta["namespace"]] if meta.get("namespace") else []
        stored = kubectl.json("get", resource, meta["name"], *where)
        assert stored["metadata"]["labels"]["app.kubernetes.io/instance"] == release.name
    deployment = kubectl.json("get", "deployment", release.fullname, "-n", release.namespace)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == release.service_account


# What the operator does (controller/kube.py, routing/*.py, kopf's CRD observation).
NEEDED = [
    ("get", ROLLOUTS, "rollouts"),
    ("list", ROLLOUTS, "all"),
    ("watch", ROLLOUTS, "all"),
    ("patch", ROLLOUTS, "rollouts"),
    ("get", ROLLOUTS, "rollouts", "--subresource=status"),
    ("update", ROLLOUTS, "rollouts", "--subresource=status"),
    ("patch", ROLLOUTS, "rollouts", "--subresource=status"),
    ("get", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("patch", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("get", "virtualservices.networking.istio.io", "rollouts"),
    ("patch", "virtualservices.networking.istio.io", "rollouts"),
    ("get", "ingresses.networking.k8s.io", "rollouts"),
    ("patch", "ingresses.networking.k8s.io", "rollouts"),
    ("create", "events.events.k8s.io", "rollouts"),
    ("get", f"secrets/{PAGING_SECRET}", "rollouts"),
    ("get", f"secrets/{PROMETHEUS_SECRET}", "rollouts"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("list", f"checkoutfreezes.{GROUP}", "cluster"),
]

FORBIDDEN = [
    # Secrets: only the named ones, and never listed or watched.
    ("list", "secrets", "rollouts"),
    ("list", "secrets", "all"),
    ("watch", "secrets", "rollouts"),
    ("get", "secrets", "rollouts"),
    ("get", "secrets/some-other-secret", "rollouts"),
    ("create", "secrets", "rollouts"),
    ("update", f"secrets/{PAGING_SECRET}", "rollouts"),
    # Workloads: the replica router is off, so no Deployments at all; never pods.
    ("get", "deployments.apps", "rollouts"),
    ("patch", "deployments.apps", "rollouts"),
    ("delete", "deployments.apps", "rollouts"),
    ("create", "deployments.apps", "rollouts"),
    ("create", "pods", "rollouts"),
    ("create", "pods/exec", "rollouts"),
    ("list", "pods", "rollouts"),
    # RBAC: no way to grant itself more.
    ("create", "roles.rbac.authorization.k8s.io", "rollouts"),
    ("patch", "roles.rbac.authorization.k8s.io", "rollouts"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "rollouts"),
    ("create", "clusterroles.rbac.authorization.k8s.io", "cluster"),
    ("update", "clusterroles.rbac.authorization.k8s.io", "cluster"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "cluster"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "cluster"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "cluster"),
    ("delete", "clusterrolebindings.rbac.authorization.k8s.io", "cluster"),
    ("impersonate", "users", "cluster"),
    ("impersonate", "serviceaccounts", "rollouts"),
    ("create", "serviceaccounts/token", "rollouts"),
    # Its own guard rails and other APIs.
    ("delete", "validatingadmissionpolicies.admissionregistration.k8s.io", "cluster"),
    ("patch", "validatingadmissionpolicybindings.admissionregistration.k8s.io", "cluster"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
    ("list", "namespaces", "cluster"),
    ("patch", "namespaces", "cluster"),
    # Rollouts: never created, replaced (spec) or deleted; status is not deleted either.
    ("create", ROLLOUTS, "rollouts"),
    ("update", ROLLOUTS, "rollouts"),
    ("delete", ROLLOUTS, "rollouts"),
    ("deletecollection", ROLLOUTS, "rollouts"),
    # Routes: patched in place, never created, deleted or listed.
    ("create", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("delete", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("update", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("list", "httproutes.gateway.networking.k8s.io", "rollouts"),
    ("delete", "ingresses.networking.k8s.io", "rollouts"),
    ("delete", "virtualservices.networking.istio.io", "rollouts"),
    # kopf's own Events are off, and Events are only ever created.
    ("create", "events", "rollouts"),
    ("delete", "events.events.k8s.io", "rollouts"),
]


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, scope: str, *extra: str, release: Release) -> bool:
    where = {
        "rollouts": ["-n", release.rollouts],
        "operator": ["-n", release.namespace],
        "all": ["--all-namespaces"],
        "cluster": [],
    }[scope]
    result = kubectl("auth", "can-i", verb, resource, *where, *extra, f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {result.stderr}"
    assert "doesn't have a resource type" not in result.stderr, result.stderr
    return answer == "yes"


@pytest.mark.parametrize("check", NEEDED, ids=" ".join)
def test_operator_can(kubectl: Kubectl, release: Release, check: tuple[str, ...]) -> None:
    verb, resource, scope, *extra = check
    assert can_i(kubectl, release.user, verb, resource, scope, *extra, release=release)


@pytest.mark.parametrize("check", FORBIDDEN, ids=" ".join)
def test_operator_cannot(kubectl: Kubectl, release: Release, check: tuple[str, ...]) -> None:
    verb, resource, scope, *extra = check
    assert not can_i(kubectl, release.user, verb, resource, scope, *extra, release=release)


def test_approver_role_is_patch_and_read_only(kubectl: Kubectl, release: Release) -> None:
    role = kubectl.json("get", "clusterrole", f"{release.fullname}-approver")
    assert role["rules"] == [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]}]
    assert can_i(kubectl, "alice", "patch", ROLLOUTS, "rollouts", f"--as-group={APPROVERS}", release=release)
    assert not can_i(kubectl, "alice", "update", ROLLOUTS, "rollouts", f"--as-group={APPROVERS}", release=release)
    assert not can_i(kubectl, "alice", "delete", ROLLOUTS, "rollouts", f"--as-group={APPROVERS}", release=release)
    assert not can_i(kubectl, "alice", "patch", ROLLOUTS, "rollouts", release=release), "only through the group"


def test_deployer_role_creates_and_changes_rollouts_but_never_deletes_them(kubectl: Kubectl, release: Release) -> None:
    role = kubectl.json("get", "clusterrole", f"{release.fullname}-deployer")
    verbs = ["get", "list", "watch", "create", "update", "patch"]
    assert role["rules"] == [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": verbs}]
    for verb in ("create", "update", "patch"):
        assert can_i(kubectl, "dan", verb, ROLLOUTS, "rollouts", f"--as-group={DEPLOYERS}", release=release)
    assert not can_i(kubectl, "dan", "delete", ROLLOUTS, "rollouts", f"--as-group={DEPLOYERS}", release=release)
    assert not can_i(
        kubectl,
        "dan",
        "patch",
        ROLLOUTS,
        "rollouts",
        "--subresource=status",
        f"--as-group={DEPLOYERS}",
        release=release,
    )


# --- approvals bound to identity ------------------------------------------------------------------


def enforced(kubectl: Kubectl, installed: Release) -> None:
    """Wait until kube-apiserver enforces the new policies (their informers sync after install),
    probed with server-side dry runs that store nothing."""
    admin = kubectl.json("auth", "whoami")["status"]["userInfo"]["username"]
    probe = rollout_document("probe", installed.rollouts, {APPROVE: admin, STAMP: "bob"})

    def dry_run(document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(document), check=False)

    wait_for(lambda: "denied request" in dry_run(probe).stderr, "the approvals policy enforced", timeout=60)
    del probe["metadata"]["annotations"][APPROVE]
    wait_for(
        lambda: (
            (r := dry_run(probe)).returncode == 0 and json.loads(r.stdout)["metadata"]["annotations"][STAMP] == admin
        ),
        "the spec-changed-by stamp enforced",
        timeout=60,
    )
    labels = {"app": "probe"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": installed.rollouts, "annotations": {TEMPLATE_STAMP: "bob"}},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "a", "image": "a"}]}},
        },
    }
    wait_for(
        lambda: (
            (r := dry_run(deployment)).returncode == 0
            and json.loads(r.stdout)["metadata"]["annotations"][TEMPLATE_STAMP] == admin
        ),
        "the template-changed-by stamp enforced",
        timeout=60,
    )


@dataclass
class Actors:
    alice: Kubectl  # in the approvers group
    bob: Kubectl  # in the approvers group too
    dan: Kubectl  # in the deployers group (the chart's deployer binding), not an approver
    erin: Kubectl  # an approver and a deployer (who may write a change, but not approve her own)
    rita: Kubectl  # in refund-approvers only: an approver of the rollouts that name that group
    mallory: Kubectl  # in neither, but with RBAC rights to patch rollouts
    operator: Kubectl  # the chart's ServiceAccount, by token


@pytest.fixture(scope="module")
def operator_kubeconfig(
    kube: LocalCluster | ExternalCluster, kubectl: Kubectl, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("sa") / "operator.kubeconfig"
    return token_kubeconfig(kubectl, kube.kubeconfig, release.namespace, release.service_account, path)


@pytest.fixture(scope="module")
def actors(
    kube: LocalCluster | ExternalCluster, kubectl: Kubectl, release: Release, operator_kubeconfig: Path
) -> Actors:
    kubectl(
        "create", "rolebinding", "mallory-may-patch", "-n", release.rollouts,
        f"--clusterrole={release.fullname}-approver", "--user=mallory",
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "refund-approvers", "-n", release.rollouts,
        f"--clusterrole={release.fullname}-approver", f"--group={REFUND_APPROVERS}",
    )  # fmt: skip
    # erin ships Deployments too.
    kubectl(
        "create", "role", "deployment-editor", "-n", release.rollouts,
        "--verb=get,list,patch,update", "--resource=deployments.apps",
    )  # fmt: skip
    kubectl("create", "rolebinding", "erin-edits", "-n", release.rollouts, "--role=deployment-editor", "--user=erin")
    return Actors(
        alice=kubectl.as_kubeconfig(kube.kubeconfig_for("alice", [APPROVERS])),
        bob=kubectl.as_kubeconfig(kube.kubeconfig_for("bob", [APPROVERS])),
        dan=kubectl.as_kubeconfig(kube.kubeconfig_for("dan", [DEPLOYERS])),
        erin=kubectl.as_kubeconfig(kube.kubeconfig_for("erin", [APPROVERS, DEPLOYERS])),
        rita=kubectl.as_kubeconfig(kube.kubeconfig_for("rita", [REFUND_APPROVERS])),
        mallory=kubectl.as_kubeconfig(kube.kubeconfig_for("mallory", ["payments-devs"])),
        operator=kubectl.as_kubeconfig(operator_kubeconfig),
    )


def rollout_document(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "gates" / "card-payments.yaml").read_text())
    document["metadata"] = {"name": name, "namespace": namespace, "annotations": annotations or {}}
    return document


@pytest.fixture
def cro(kubectl: Kubectl, release: Release) -> Iterator[str]:
    """A rollout under the admission policy; no operator watches it while the policy tests run."""
    name = f"pol-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(rollout_document(name, release.rollouts)))
    yield name
    kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def annotations_of(kubectl: Kubectl, release: Release, name: str) -> dict[str, str]:
    found: dict[str, str] = kubectl.json("get", ROLLOUTS, name, "-n", release.rollouts)["metadata"].get(
        "annotations", {}
    )
    return found


def annotate(actor: Kubectl, release: Release, name: str, *changes: str) -> subprocess.CompletedProcess[str]:
    return actor("annotate", "--overwrite", "cro", name, "-n", release.rollouts, *changes, check=False)


def refused(result: subprocess.CompletedProcess[str], message: str) -> bool:
    return result.returncode != 0 and "denied request" in result.stderr and message in result.stderr


def test_approver_approves_as_herself(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    result = annotate(actors.alice, release, cro, f"{APPROVE}=alice")
    assert result.returncode == 0, result.stderr
    assert annotations_of(kubectl, release, cro)[APPROVE] == "alice"
    for key in ANNOTATIONS[1:]:  # abort, retry, pause: the same rule
        result = annotate(actors.alice, release, cro, f"{key}=alice")
        assert result.returncode == 0, result.stderr


def test_approver_cannot_name_someone_else(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    result = annotate(actors.alice, release, cro, f"{APPROVE}=bob")
    assert refused(result, f"{APPROVE} must name you (alice), not bob"), result.stderr
    assert APPROVE not in annotations_of(kubectl, release, cro)
    assert annotate(actors.alice, release, cro, f"{APPROVE}=alice").returncode == 0
    result = annotate(actors.alice, release, cro, f"{APPROVE}=bob")  # changing her own: the same rule
    assert refused(result, f"{APPROVE} must name you (alice), not bob"), result.stderr
    assert annotations_of(kubectl, release, cro)[APPROVE] == "alice"


def test_non_member_is_refused_by_the_policy_not_rbac(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert actors.mallory("auth", "can-i", "patch", "cro", "-n", release.rollouts).stdout.strip() == "yes"
    for key in ANNOTATIONS:
        result = annotate(actors.mallory, release, cro, f"{key}=mallory")
        assert refused(result, f"only members of {APPROVERS} may set {key}"), result.stderr
    assert not set(ANNOTATIONS) & set(annotations_of(kubectl, release, cro))
    # Even the cluster admin cannot put an approval on a new rollout.
    forged = rollout_document(f"forged-{uuid.uuid4().hex[:6]}", release.rollouts, {APPROVE: "testbed-admin"})
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(forged), check=False)
    assert refused(result, f"only members of {APPROVERS} may set {APPROVE}"), result.stderr


def test_unchanged_and_removed_annotations_pass(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    assert annotate(actors.alice, release, cro, f"{APPROVE}=alice").returncode == 0
    # Another edit by a non-member leaves the approval as it was: allowed.
    labelled = actors.mallory("label", "cro", cro, "-n", release.rollouts, "team=payments", check=False)
    assert labelled.returncode == 0, labelled.stderr
    assert annotate(actors.mallory, release, cro, "note=hello").returncode == 0
    assert annotations_of(kubectl, release, cro)[APPROVE] == "alice"


def test_operator_removes_annotations_but_never_sets_them(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert annotate(actors.alice, release, cro, f"{APPROVE}=alice").returncode == 0
    # Exactly the operator's patch (controller/kube.py remove_annotation): test the value, remove.
    path = "/metadata/annotations/" + APPROVE.replace("~", "~0").replace("/", "~1")
    patch = f'[{{"op":"test","path":"{path}","value":"alice"}},{{"op":"remove","path":"{path}"}}]'
    removed = actors.operator("patch", "cro", cro, "-n", release.rollouts, "--type=json", "-p", patch, check=False)
    assert removed.returncode == 0, removed.stderr
    assert APPROVE not in annotations_of(kubectl, release, cro)
    forged = annotate(actors.operator, release, cro, f"{APPROVE}={release.user}")
    assert refused(forged, f"only members of {APPROVERS} may set {APPROVE}"), forged.stderr
    spec = actors.operator(
        "patch", "cro", cro, "-n", release.rollouts, "--type=merge", "-p", '{"spec":{"onHalt":"abort"}}', check=False
    )
    assert refused(spec, "never change a rollout's spec"), spec.stderr
    deleted = actors.operator("delete", "cro", cro, "-n", release.rollouts, "--wait=false", check=False)
    assert deleted.returncode != 0 and "forbidden" in deleted.stderr.lower()


def test_kubectl_errors_carry_the_policy_message(actors: Actors, release: Release, cro: str) -> None:
    """The refusal reads as the on-call engineer sees it at the terminal."""
    with pytest.raises(KubectlError) as raised:
        actors.alice("annotate", "cro", cro, "-n", release.rollouts, f"{APPROVE}=bob")
    assert f"ValidatingAdmissionPolicy '{release.fullname}-approvals'" in str(raised.value)
    assert f"{APPROVE} must name you (alice), not bob" in str(raised.value)


# --- who changed the spec, and when a spec may change ---------------------------------------------


def rollout_of(kubectl: Kubectl, release: Release, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", ROLLOUTS, name, "-n", release.rollouts)
    return found


def write_status(
    actor: Kubectl, release: Release, name: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    patch = json.dumps({"status": status})
    return actor(
        "patch", "cro", name, "-n", release.rollouts, "--subresource=status", "--type=merge", "-p", patch, check=False
    )


def patch_spec(
    actor: Kubectl, release: Release, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    document: dict[str, Any] = {"spec": spec}
    if annotations:
        document["metadata"] = {"annotations": annotations}
    return actor("patch", "cro", name, "-n", release.rollouts, "--type=merge", "-p", json.dumps(document), check=False)


def exposed(actors: Actors, release: Release, name: str, canary: int = 5, phase: str = "Progressing") -> None:
    """Give the rollout the status of a live canary, written as the operator's ServiceAccount."""
    written = write_status(
        actors.operator, release, name, {"phase": phase, "weights": {"stable": 100 - canary, "canary": canary}}
    )
    assert written.returncode == 0, written.stderr


def live_exposure_refusal(name: str, canary: int = 5, phase: str = "Progressing") -> str:
    return (
        f"only members of {DEPLOYERS} may change the spec of {name} while its canary is exposed"
        f" (canary {canary}%, phase {phase}): exposure is live"
    )


def test_creation_is_stamped_with_the_creator_whatever_the_client_sent(kubectl: Kubectl, release: Release) -> None:
    admin = kubectl.json("auth", "whoami")["status"]["userInfo"]["username"]
    name = f"stamp-{uuid.uuid4().hex[:6]}"
    document = rollout_document(name, release.rollouts, {STAMP: "bob"})
    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(document))
        assert annotations_of(kubectl, release, name)[STAMP] == admin
    finally:
        kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def test_non_deployer_approver_cannot_change_the_steps_of_an_exposed_rollout(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    exposed(actors, release, cro)
    before = rollout_of(kubectl, release, cro)
    result = patch_spec(actors.alice, release, cro, {"steps": [{"setWeight": 100}]})
    assert refused(result, live_exposure_refusal(cro)), result.stderr
    assert "a spec change restarts the rollout from step 0" in result.stderr
    result = patch_spec(actors.mallory, release, cro, {"steps": [{"setWeight": 100}]})  # nor anyone else
    assert refused(result, live_exposure_refusal(cro)), result.stderr
    after = rollout_of(kubectl, release, cro)
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]


def test_halted_exposure_is_live_too(actors: Actors, release: Release, cro: str) -> None:
    exposed(actors, release, cro, canary=25, phase="Halted")
    result = patch_spec(actors.mallory, release, cro, {"onHalt": "abort"})
    assert refused(result, live_exposure_refusal(cro, 25, "Halted")), result.stderr


def test_deployer_changes_an_exposed_rollouts_spec_and_is_stamped_whatever_the_client_sent(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    exposed(actors, release, cro)
    generation = rollout_of(kubectl, release, cro)["metadata"]["generation"]
    result = patch_spec(actors.dan, release, cro, {"steps": [{"setWeight": 100}]}, {STAMP: "mallory"})
    assert result.returncode == 0, result.stderr
    after = rollout_of(kubectl, release, cro)
    assert after["spec"]["steps"] == [{"setWeight": 100}]
    assert after["metadata"]["generation"] == generation + 1
    assert after["metadata"]["annotations"][STAMP] == "dan"


def test_approver_who_is_not_a_deployer_changes_metadata_only(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    # No status at all (the operator never saw the rollout): still no spec change by an approver.
    assert "status" not in rollout_of(kubectl, release, cro)
    result = patch_spec(actors.alice, release, cro, {"onHalt": "abort"})
    assert refused(result, f"members of {APPROVERS} who are not in {DEPLOYERS} may change a rollout's metadata only"), (
        result.stderr
    )
    labelled = actors.alice("label", "cro", cro, "-n", release.rollouts, "oncall=alice", check=False)
    assert labelled.returncode == 0, labelled.stderr
    assert rollout_of(kubectl, release, cro)["spec"].get("onHalt", "hold") == "hold"


def test_spec_change_before_exposure_or_after_the_outcome_needs_no_deployer(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert "status" not in rollout_of(kubectl, release, cro)  # never exposed
    result = patch_spec(actors.mallory, release, cro, {"onHalt": "abort"})
    assert result.returncode == 0, result.stderr
    assert annotations_of(kubectl, release, cro)[STAMP] == "mallory"
    for phase, canary in (("Promoted", 100), ("Aborted", 0), ("Progressing", 0)):
        exposed(actors, release, cro, canary=canary, phase=phase)
        onhalt = "hold" if rollout_of(kubectl, release, cro)["spec"]["onHalt"] == "abort" else "abort"
        result = patch_spec(actors.mallory, release, cro, {"onHalt": onhalt})
        assert result.returncode == 0, f"{phase} {canary}%: {result.stderr}"


def test_the_stamp_cannot_be_changed_or_removed_without_a_spec_change(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    stamp = annotations_of(kubectl, release, cro)[STAMP]
    message = f"{STAMP} records who last changed the spec"
    for actor in (kubectl, actors.dan, actors.alice):  # the cluster admin included
        for change in (f"{STAMP}=dan", f"{STAMP}-"):
            result = annotate(actor, release, cro, change)
            assert refused(result, message), result.stderr
    assert annotations_of(kubectl, release, cro)[STAMP] == stamp
    # Other metadata changes leave it as it was, and pass.
    assert annotate(actors.mallory, release, cro, "note=hello").returncode == 0
    assert annotations_of(kubectl, release, cro)[STAMP] == stamp


# --- four eyes: never the author; approvers per rollout -------------------------------------------


def test_the_author_of_a_spec_change_cannot_approve_it_and_the_api_server_says_why(
    actors: Actors, kubectl: Kubectl, release: Release
) -> None:
    name = f"author-{uuid.uuid4().hex[:6]}"
    created = actors.erin(
        "apply", "-f", "-", input=yaml.safe_dump(rollout_document(name, release.rollouts)), check=False
    )
    assert created.returncode == 0, created.stderr
    try:
        assert annotations_of(kubectl, release, name)[STAMP] == "erin"
        result = annotate(actors.erin, release, name, f"{APPROVE}=erin")
        assert refused(result, f"you (erin) last changed the spec of {name}"), result.stderr
        assert "the author of a change cannot approve it or override its gates; another approver must" in result.stderr
        assert APPROVE not in annotations_of(kubectl, release, name)
        # She may still stop exposure, and another approver may approve.
        assert annotate(actors.erin, release, name, f"{ABORT}=erin").returncode == 0
        assert annotate(actors.alice, release, name, f"{APPROVE}=alice").returncode == 0
        # Once someone else changed the spec, she is no longer its author.
        assert patch_spec(actors.dan, release, name, {"onHalt": "abort"}).returncode == 0
        assert annotate(actors.erin, release, name, f"{APPROVE}=erin").returncode == 0
    finally:
        kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def test_emergency_overrides_need_an_approver_a_reason_and_someone_other_than_the_author(
    actors: Actors, kubectl: Kubectl, release: Release
) -> None:
    name = f"override-{uuid.uuid4().hex[:6]}"
    actors.erin("apply", "-f", "-", input=yaml.safe_dump(rollout_document(name, release.rollouts)))
    try:
        for key in (f"{GROUP}/skip-step", f"{GROUP}/promote-full"):
            result = annotate(actors.alice, release, name, f"{key}=alice")
            assert refused(result, f"{key} overrides the gates: set {REASON} in the same request"), result.stderr
            result = annotate(actors.mallory, release, name, f"{key}=mallory", f"{REASON}=outage")
            assert refused(result, f"only members of {APPROVERS} may set"), result.stderr
            result = annotate(actors.erin, release, name, f"{key}=erin", f"{REASON}=my own fix")
            assert refused(result, "the author of a change cannot approve it or override its gates"), result.stderr
        result = annotate(actors.alice, release, name, f"{GROUP}/promote-full=alice", f"{REASON}=3-D Secure outage")
        assert result.returncode == 0, result.stderr
    finally:
        kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def test_the_author_may_resume_her_paused_rollout(actors: Actors, kubectl: Kubectl, release: Release) -> None:
    """approve on a Paused rollout resumes it: that is no sign-off of the change."""
    name = f"resume-{uuid.uuid4().hex[:6]}"
    actors.erin("apply", "-f", "-", input=yaml.safe_dump(rollout_document(name, release.rollouts)))
    try:
        assert write_status(actors.operator, release, name, {"phase": "Paused"}).returncode == 0
        result = annotate(actors.erin, release, name, f"{APPROVE}=erin")
        assert result.returncode == 0, result.stderr
    finally:
        kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def test_the_author_of_the_canary_revision_cannot_approve_its_rollout(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    revisions = {"stable": {"hash": "a1"}, "canary": {"hash": "b2", "author": "bob"}}
    assert (
        write_status(actors.operator, release, cro, {"phase": "AwaitingApproval", "revisions": revisions}).returncode
        == 0
    )
    result = annotate(actors.bob, release, cro, f"{APPROVE}=bob")
    assert refused(result, f"you (bob) changed the Deployment to the revision {cro} rolls out"), result.stderr
    assert annotate(actors.alice, release, cro, f"{APPROVE}=alice").returncode == 0


def test_a_rollout_names_its_own_approvers_and_no_request_makes_itself_one(
    actors: Actors, kubectl: Kubectl, release: Release
) -> None:
    name = f"groups-{uuid.uuid4().hex[:6]}"
    document = rollout_document(name, release.rollouts)
    document["spec"]["owner"]["approvers"] = [REFUND_APPROVERS]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(document))
    try:
        result = annotate(actors.alice, release, name, f"{APPROVE}=alice")
        assert refused(result, f"only members of {REFUND_APPROVERS} may set {APPROVE} on {name}"), result.stderr
        assert annotate(actors.rita, release, name, f"{APPROVE}=rita").returncode == 0
        # A deployer who is not one of its approvers cannot widen the list (nor approve with it).
        owner = {**document["spec"]["owner"], "approvers": [REFUND_APPROVERS, DEPLOYERS]}
        result = patch_spec(actors.dan, release, name, {"owner": owner})
        assert refused(result, f"spec.owner.approvers names who may approve {name}: only a member of"), result.stderr
        result = patch_spec(actors.dan, release, name, {"owner": owner}, {APPROVE: "dan"})
        assert result.returncode != 0 and "denied request" in result.stderr
        # Its approvers who are not deployers change metadata only, like the chart's group.
        result = patch_spec(actors.rita, release, name, {"onHalt": "abort"})
        assert refused(result, f"members of {REFUND_APPROVERS} who are not in {DEPLOYERS} may change"), result.stderr
    finally:
        kubectl("delete", ROLLOUTS, name, "-n", release.rollouts, "--wait=false", check=False)


def test_a_deployment_records_who_changed_its_pod_template_and_nobody_rewrites_that(
    actors: Actors, kubectl: Kubectl, release: Release
) -> None:
    name = f"dep-{uuid.uuid4().hex[:6]}"
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": release.rollouts, "annotations": {TEMPLATE_STAMP: "alice"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "checkout:v1"}]},
            },
        },
    }

    def stamp() -> str:
        found = kubectl.json("get", "deployment", name, "-n", release.rollouts)["metadata"].get("annotations", {})
        return str(found.get(TEMPLATE_STAMP, ""))

    admin = kubectl.json("auth", "whoami")["status"]["userInfo"]["username"]
    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))
        assert stamp() == admin, "the creator, whatever the client sent"
        actors.erin("set", "image", f"deployment/{name}", "app=checkout:v2", "-n", release.rollouts)
        assert stamp() == "erin"
        for change in (f"{TEMPLATE_STAMP}=alice", f"{TEMPLATE_STAMP}-"):
            kubectl("annotate", "--overwrite", "deployment", name, "-n", release.rollouts, change)
            assert stamp() == "erin", "the stored stamp is put back"
        # A full-object write that drops the stamp (kubectl replace, helm --force) is admitted, stamp kept.
        stored = kubectl.json("get", "deployment", name, "-n", release.rollouts)
        stored["metadata"]["annotations"].pop(TEMPLATE_STAMP)
        kubectl("replace", "-f", "-", input=json.dumps(stored))
        assert stamp() == "erin"
        # Scaling (spec.replicas, as the operator and HPAs do) is no template change: the stamp stays.
        kubectl("scale", "deployment", name, "-n", release.rollouts, "--replicas=2")
        assert stamp() == "erin"
    finally:
        kubectl("delete", "deployment", name, "-n", release.rollouts, "--wait=false", check=False)


# --- status: written by the operator only ---------------------------------------------------------


def test_only_the_operator_writes_status(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    message = f"only the checkout-gates operator ({release.user}) writes the status of a rollout"
    kubectl(
        "create", "role", "status-writer", "-n", release.rollouts, "--verb=get,patch,update",
        f"--resource={ROLLOUTS}/status",
    )  # fmt: skip
    kubectl(
        "create",
        "rolebinding",
        "mallory-writes-status",
        "-n",
        release.rollouts,
        "--role=status-writer",
        "--user=mallory",
    )
    try:
        assert (
            actors.mallory(
                "auth", "can-i", "patch", ROLLOUTS, "--subresource=status", "-n", release.rollouts
            ).stdout.strip()
            == "yes"
        )
        for actor, user in ((actors.mallory, "mallory"), (kubectl, None)):  # RBAC allows both; the policy does not
            result = write_status(actor, release, cro, {"phase": "Promoted", "weights": {"stable": 0, "canary": 100}})
            assert refused(result, message), result.stderr
            if user:
                assert f"not {user}" in result.stderr
        assert "status" not in rollout_of(kubectl, release, cro)
        exposed(actors, release, cro)
        assert rollout_of(kubectl, release, cro)["status"]["weights"]["canary"] == 5
    finally:
        kubectl("delete", "rolebinding", "mallory-writes-status", "-n", release.rollouts, check=False)
        kubectl("delete", "role", "status-writer", "-n", release.rollouts, check=False)


def test_status_writers_are_the_operator_and_the_listed_users_only(helm: Helm) -> None:
    def writers(values: dict[str, Any] | None) -> tuple[str, str]:
        (policy,) = [
            p
            for p in of_kind(helm.template(values), "ValidatingAdmissionPolicy")
            if p["metadata"]["name"].endswith("-status")
        ]
        assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == [f"{PLURAL}/status"]
        found = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
        return found["operator"], found["writers"]

    assert writers(None) == ('"system:serviceaccount:ops:cg-checkout-gates"', "[]")
    assert writers({"admissionPolicy": {"statusWriters": ["break-glass"]}})[1] == '["break-glass"]'


# --- the reason, and who may take a request back --------------------------------------------------


def test_reason_without_a_command_is_refused(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    message = f"{REASON} is accepted only in the same request as the on-call command it explains"
    result = annotate(actors.alice, release, cro, f"{REASON}=card declines up")
    assert refused(result, message), result.stderr
    result = annotate(actors.alice, release, cro, f"{ABORT}=alice", f"{REASON}=card declines up")
    assert result.returncode == 0, result.stderr
    assert annotations_of(kubectl, release, cro)[REASON] == "card declines up"
    result = annotate(actors.alice, release, cro, f"{REASON}=rewritten later")  # not afterwards either
    assert refused(result, message), result.stderr
    assert annotations_of(kubectl, release, cro)[REASON] == "card declines up"


def test_reason_by_a_non_approver_is_refused(actors: Actors, kubectl: Kubectl, release: Release, cro: str) -> None:
    result = annotate(actors.mallory, release, cro, f"{REASON}=trust me")
    assert refused(result, f"only members of {APPROVERS} may set {REASON}"), result.stderr
    result = annotate(actors.dan, release, cro, f"{ABORT}=dan", f"{REASON}=trust me")
    assert refused(result, f"only members of {APPROVERS} may set {ABORT}, {REASON}"), result.stderr
    assert not {REASON, ABORT} & set(annotations_of(kubectl, release, cro))
    # Nor on a new rollout.
    forged = rollout_document(f"reason-{uuid.uuid4().hex[:6]}", release.rollouts, {REASON: "pre-approved"})
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(forged), check=False)
    assert refused(result, f"only members of {APPROVERS} may set {REASON}"), result.stderr


def test_removing_someone_elses_pending_abort_is_refused(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert annotate(actors.alice, release, cro, f"{ABORT}=alice", f"{REASON}=declines").returncode == 0
    message = f"{ABORT} names alice: only alice or the checkout-gates operator may remove it"
    for actor in (actors.mallory, actors.bob, actors.dan, kubectl):  # another approver, and the admin, too
        result = annotate(actor, release, cro, f"{ABORT}-")
        assert refused(result, message), result.stderr
    result = annotate(actors.mallory, release, cro, f"{REASON}-")
    assert refused(result, f"only the checkout-gates operator or members of {APPROVERS} may remove {REASON}"), (
        result.stderr
    )
    assert annotations_of(kubectl, release, cro)[ABORT] == "alice"


def test_removing_your_own_pending_abort_is_admitted(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert annotate(actors.alice, release, cro, f"{ABORT}=alice", f"{REASON}=declines").returncode == 0
    result = annotate(actors.alice, release, cro, f"{ABORT}-", f"{REASON}-")
    assert result.returncode == 0, result.stderr
    assert not {ABORT, REASON} & set(annotations_of(kubectl, release, cro))


def test_the_operators_removal_of_a_pending_abort_and_its_reason_is_admitted(
    actors: Actors, kubectl: Kubectl, release: Release, cro: str
) -> None:
    assert annotate(actors.alice, release, cro, f"{ABORT}=alice", f"{REASON}=declines").returncode == 0
    for key, value in ((ABORT, "alice"), (REASON, "declines")):  # as controller/kube.py remove_annotation
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        patch = json.dumps([{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}])
        removed = actors.operator("patch", "cro", cro, "-n", release.rollouts, "--type=json", "-p", patch, check=False)
        assert removed.returncode == 0, removed.stderr
    assert not {ABORT, REASON} & set(annotations_of(kubectl, release, cro))


# --- a narrower install ---------------------------------------------------------------------------


def test_namespaced_install_grants_rights_only_in_the_watched_namespaces(
    helm: Helm, kubectl: Kubectl, release: Release
) -> None:
    # A letter first: Helm reads values as YAML 1.2, where e.g. "8e0104" would be a number.
    suffix = "t" + uuid.uuid4().hex[:5]
    narrow = Release(
        name=f"cgn{suffix}",
        namespace=f"cgn-ops-{suffix}",
        rollouts=f"cgn-pay-{suffix}",
        fullname=f"cgn{suffix}-checkout-gates",
    )
    kubectl("create", "namespace", narrow.rollouts)
    values = {
        "watchNamespaces": [narrow.rollouts],
        "rbac": {"routers": {"replicas": True}, "secrets": {"restrictToNames": False}},
        "admissionPolicy": {"enabled": False},
    }
    try:
        helm.install(narrow.name, narrow.namespace, values)
        assert can_i(kubectl, narrow.user, "watch", ROLLOUTS, "rollouts", release=narrow)
        assert can_i(kubectl, narrow.user, "patch", "deployments.apps", "rollouts", release=narrow)
        assert can_i(kubectl, narrow.user, "get", "secrets/anything", "rollouts", release=narrow)
        assert not can_i(kubectl, narrow.user, "list", "secrets", "rollouts", release=narrow)
        assert not can_i(kubectl, narrow.user, "delete", "deployments.apps", "rollouts", release=narrow)
        assert not can_i(kubectl, narrow.user, "list", ROLLOUTS, "all", release=narrow)
        for resource in (ROLLOUTS, "deployments.apps", "secrets/anything", "httproutes.gateway.networking.k8s.io"):
            verb = "patch" if resource != "secrets/anything" else "get"
            assert not can_i(kubectl, narrow.user, verb, resource, "rollouts", release=release), (
                f"{verb} {resource} outside the watched namespaces"
            )
        assert not kubectl.json(
            "get", "validatingadmissionpolicies", "-l", f"app.kubernetes.io/instance={narrow.name}"
        )["items"]
    finally:
        helm("uninstall", narrow.name, "--namespace", narrow.namespace, check=False)
        for namespace in (narrow.rollouts, narrow.namespace):
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- the RBAC is enough: the operator completes a rollout as its ServiceAccount -------------------


def test_operator_completes_a_rollout_as_the_charts_service_account(
    kubectl: Kubectl,
    release: Release,
    actors: Actors,
    operator_kubeconfig: Path,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    tmp_path: Path,
) -> None:
    """setWeight 50, a short gate, an approval step for two (alice, then bob), setWeight 100: under
    the admission policy, with the operator holding only the chart's RBAC."""
    gates = ["auth-approval", "duplicate-charges"]
    rollout = Rollout(
        cluster_ready,
        scraping_prometheus,
        traffic,
        steps=[
            {"setWeight": 50},
            {"gate": {"pass": gates, "window": "3s"}},
            {"approval": {"approvers": 2}},
            {"setWeight": 100},
        ],
        analysis={"interval": "1s", "failureLimit": 2, "inconclusiveLimit": 10},
    )
    kubectl("label", "namespace", rollout.namespace, release.policy_label)
    kubectl(
        "create", "rolebinding", "approvers", "-n", rollout.namespace,
        f"--clusterrole={release.fullname}-approver", f"--group={APPROVERS}",
    )  # fmt: skip
    logs = tmp_path / "operator.log"
    operator = Operator(operator_kubeconfig, logs).start()
    try:
        rollout.apply()
        status = rollout.wait_phase("AwaitingApproval", timeout=90)
        assert status["weights"]["canary"] == 50 and rollout.route_weights() == (50, 50)
        actors.alice("annotate", "cro", rollout.name, "-n", rollout.namespace, f"{APPROVE}=alice")
        wait_for(lambda: "ApprovalRecorded" in [e["action"] for e in rollout.history()], "alice's approval counted")
        wait_for(lambda: APPROVE not in rollout.get()["metadata"].get("annotations", {}), "her approval consumed")
        assert rollout.get()["status"]["phase"] == "AwaitingApproval", "one of two approvers"
        assert [a["actor"] for a in rollout.get()["status"]["approvals"]] == ["alice"]
        actors.bob("annotate", "cro", rollout.name, "-n", rollout.namespace, f"{APPROVE}=bob")
        status = rollout.wait_phase("Promoted", timeout=60)
        assert status["weights"] == {"stable": 0, "canary": 100}
        assert rollout.route_weights() == (0, 100)
        history = rollout.history()
        assert history[0]["action"] == "Started" and history[-1]["action"] == "Promoted"
        assert [entry["actor"] for entry in history if entry["action"] == "Approved"] == ["bob"]
        assert [entry["actor"] for entry in history if entry["action"] == "ApprovalRecorded"] == ["alice"]
        wait_for(lambda: APPROVE not in rollout.get()["metadata"].get("annotations", {}), "the approval consumed")
        # The operator only logs an Event it could not create: check that they were created.
        reasons = wait_for(lambda: (r := rollout.events()) and "Promoted" in r and r, "a Promoted event", timeout=20)
        assert {"StepAdvanced", "Approved", "Promoted"} <= set(reasons)
        assert operator.process is not None and operator.process.poll() is None, "the operator is still running"
    finally:
        operator.stop()
        kubectl("delete", "namespace", rollout.namespace, "--wait=false", check=False)
    text = logs.read_text()
    for sign in ("HTTP 403", "Forbidden", "forbidden", "denied request", "Not enough permissions"):
        assert sign not in text, f"the operator was refused something ({sign!r}):\n{text[-4000:]}"


# --- egress: no request forgery, no credential sent where its Secret does not allow ---------------


class Trap:
    """A listener on loopback that records every request it gets and answers with a 'secret' page."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                trap.requests.append((self.command, self.path, dict(self.headers)))
                body = b"<html>internal admin: hunter2</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_request_forgery_and_token_exfiltration_are_refused_before_any_request(
    kubectl: Kubectl,
    release: Release,
    operator_kubeconfig: Path,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    tmp_path: Path,
) -> None:
    """Findings 3 and 4, as the chart's ServiceAccount with an egress allowlist of the real Prometheus
    and the attacker's own server: a rollout pointing at an internal address (not listed) gets no
    request made and nothing reflected; a rollout naming the Prometheus token and the attacker's
    (listed) server gets no token sent; both halt on Inconclusive and say why; their pages to an
    unlisted webhook are refused too."""
    internal, attacker = Trap(), Trap()
    steps = [{"setWeight": 5}, {"gate": {"pass": ["auth-approval"], "window": "30s"}}, {"setWeight": 100}]
    common: dict[str, Any] = {
        "steps": steps,
        "analysis": {"interval": "1s", "failureLimit": 2, "inconclusiveLimit": 3},
        "owner": {"name": "payments-oncall", "page": [{"webhook": {"url": f"{internal.url}/page"}}]},
    }
    forged = Rollout(cluster_ready, scraping_prometheus, traffic, **common)
    forged.manifest["spec"]["prometheus"] = {"address": f"{internal.url}/admin", "timeout": "2s"}
    token = {"name": PROMETHEUS_SECRET, "key": "token"}
    exfiltrating = Rollout(cluster_ready, scraping_prometheus, traffic, **common)
    exfiltrating.manifest["spec"]["prometheus"] = {"address": attacker.url, "bearerTokenSecret": token}
    kubectl(
        "create", "secret", "generic", PROMETHEUS_SECRET, "-n", exfiltrating.namespace, "--from-literal=token=s3cr3t"
    )
    kubectl(
        "annotate", "secret", PROMETHEUS_SECRET, "-n", exfiltrating.namespace,
        f"gates.checkout.dev/destinations={scraping_prometheus.url}",
    )  # fmt: skip
    allow = [f"--egress-allow={scraping_prometheus.url},{attacker.url}"]
    operator = Operator(operator_kubeconfig, tmp_path / "operator.log", args=allow).start()
    try:
        forged.apply()
        exfiltrating.apply()
        for rollout, field in (
            (forged, "spec.prometheus.address"),
            (exfiltrating, "spec.prometheus.bearerTokenSecret"),
        ):
            status = rollout.wait_phase("Halted", timeout=90)
            message = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")["message"]
            assert field in message, message
            assert "hunter2" not in json.dumps(status) and "s3cr3t" not in json.dumps(status)
            assert status["weights"]["canary"] == 5, "held at the exposure it had"
            refused = wait_for(
                lambda r=rollout: (
                    (c := next((c for c in r.status.get("conditions", []) if c["type"] == "PageDelivered"), None))
                    and c["status"] == "False"
                    and c
                ),
                "the page refused",
            )
            assert "is not an allowed destination" in refused["message"]
        assert internal.requests == [], "no request to the unlisted address, pages included"
        assert attacker.requests == [], "no request carried the token to the attacker's server"
    finally:
        operator.stop()
        internal.close()
        attacker.close()
        for rollout in (forged, exfiltrating):
            kubectl("delete", "namespace", rollout.namespace, "--wait=false", check=False)
