"""The generated CRD against a real kube-apiserver: it is accepted, the examples are accepted
unchanged (nothing pruned), the bad specs of the shared table are refused with an error that
names the field, and the status subresource separates status writes from spec generations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.spec import GROUP, PLURAL
from checkout_gates.api.status import (
    CheckoutRolloutStatus,
    Condition,
    GateStatus,
    HistoryEntry,
    PageDelivery,
    PageState,
    Revision,
    Revisions,
    SegmentVerdict,
    UndoIntent,
    Weights,
)
from checkout_gates_lab.testbed import Kubectl
from checkout_gates_lab.testbed.processes import wait_until
from tests.unit.bad_specs import EXAMPLE_FILES, REPO, SERVER_BAD_SPECS, BadSpec, load_example

pytestmark = pytest.mark.integration

CRD_DIR = REPO / "crds"
CRD_NAME = f"{PLURAL}.{GROUP}"
RESOURCE = f"{PLURAL}.{GROUP}"


@pytest.fixture(scope="module")
def crd(kubectl: Kubectl) -> str:
    """Apply crds/ with kubectl and wait until the CheckoutRollout CRD is Established."""
    kubectl.apply(CRD_DIR)
    kubectl.wait_established(CRD_NAME)
    # Established means served; also wait until discovery knows the kind, for `kubectl apply`.
    kubectl("wait", "--for=condition=NamesAccepted", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl, crd: str) -> Iterator[str]:
    name = f"cro-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _in(namespace: str, document: dict[str, Any], name: str | None = None) -> str:
    document = json.loads(json.dumps(document))
    document["metadata"]["namespace"] = namespace
    if name is not None:
        document["metadata"]["name"] = name
    return yaml.safe_dump(document, sort_keys=False)


def _get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", RESOURCE, name, "-n", namespace)
    return found


def test_crd_is_established_with_its_schema(kubectl: Kubectl, crd: str) -> None:
    served = kubectl.json("get", "crd", crd)
    conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NamesAccepted") == "True"
    assert conditions.get("NonStructuralSchema", "False") != "True", served["status"]["conditions"]
    version = served["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert "x-kubernetes-validations" in version["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_example_is_accepted_unchanged(kubectl: Kubectl, namespace: str, path: Path) -> None:
    document = load_example(path.name)
    kubectl.apply(_in(namespace, document), "--validate=strict")
    stored = _get(kubectl, namespace, document["metadata"]["name"])
    # Nothing pruned, nothing defaulted: what the release engineer wrote is what is stored.
    assert stored["spec"] == document["spec"]
    assert stored["metadata"]["generation"] == 1
    rollout = parse_rollout(stored)
    assert isinstance(rollout, CheckoutRollout), rollout


def test_example_files_apply_as_they_are(kubectl: Kubectl, crd: str) -> None:
    """`kubectl apply -f examples/gates/`, in the examples' own namespaces (a server-side dry run)."""
    namespaces = {yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"]["namespace"] for path in EXAMPLE_FILES}
    created = [ns for ns in sorted(namespaces) if kubectl("create", "namespace", ns, check=False).returncode == 0]
    try:
        out = kubectl.apply(REPO / "examples" / "gates", "--validate=strict", "--dry-run=server")
    finally:
        # Wait until they are gone: other tests may create namespaces of the same names.
        for ns in created:
            kubectl("delete", "namespace", ns, "--timeout=90s", check=False)
    assert out.count(f"checkoutrollout.{GROUP}/") == len(EXAMPLE_FILES), out


def test_a_sequential_gate_with_exact_counts_of_bare_selectors_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    """The CRD's CEL rule for `counts: exact` (an RE2 pattern) accepts what lint accepts."""
    document = load_example("card-payments.yaml")
    selector = 'payment_authorizations_total{variant="{{variant}}"%s}'
    document["spec"]["gates"][0]["ratio"] = {"good": selector % ', outcome="approved"', "total": selector % ""}
    document["spec"]["gates"][0]["counts"] = "exact"
    assert isinstance(parse_rollout({**document, "metadata": {"name": "x", "namespace": namespace}}), CheckoutRollout)
    result = kubectl(
        "apply", "-f", "-", "--validate=strict", input=_in(namespace, document, "exact-counts"), check=False
    )
    assert result.returncode == 0, result.stderr
    stored = _get(kubectl, namespace, "exact-counts")
    assert stored["spec"]["gates"][0]["counts"] == "exact"


def test_the_table_has_enough_server_side_cases() -> None:
    assert len(SERVER_BAD_SPECS) >= 8


@pytest.mark.parametrize("bad", SERVER_BAD_SPECS, ids=lambda bad: bad.id)
def test_bad_spec_is_refused_naming_the_field(kubectl: Kubectl, namespace: str, bad: BadSpec) -> None:
    assert bad.server_path is not None and bad.server_message is not None
    name = f"bad-{bad.id}"[:63].rstrip("-")
    result = kubectl("apply", "-f", "-", "--validate=strict", input=_in(namespace, bad.document(), name), check=False)
    error = result.stderr
    assert result.returncode != 0, f"{bad.id} was accepted: {result.stdout}"
    assert bad.server_path in error, f"the refusal does not name {bad.server_path}: {error}"
    assert bad.server_message in error, f"the refusal does not say {bad.server_message!r}: {error}"
    missing = kubectl("get", RESOURCE, name, "-n", namespace, "--ignore-not-found", "-o", "name", check=False)
    assert missing.stdout.strip() == ""


def _status_patch(kubectl: Kubectl, namespace: str, name: str, status: dict[str, Any], *extra: str) -> Any:
    return kubectl(
        "patch",
        RESOURCE,
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        *extra,
        check=False,
    )


def test_status_subresource_and_generation(kubectl: Kubectl, namespace: str) -> None:
    name = "generations"
    kubectl.apply(_in(namespace, load_example("refund-flow.yaml"), name))
    assert _get(kubectl, namespace, name)["metadata"]["generation"] == 1

    result = _status_patch(
        kubectl,
        namespace,
        name,
        {"phase": "Progressing", "currentStep": 1, "weights": {"stable": 95, "canary": 5}},
        "--subresource=status",
    )
    assert result.returncode == 0, result.stderr
    stored = _get(kubectl, namespace, name)
    assert stored["metadata"]["generation"] == 1, "a status write must not bump the generation"
    assert stored["status"]["phase"] == "Progressing"
    assert stored["status"]["weights"] == {"stable": 95, "canary": 5}

    # Through the main resource, status is ignored: only the operator's status writes count.
    _status_patch(kubectl, namespace, name, {"phase": "Aborted"})
    stored = _get(kubectl, namespace, name)
    assert stored["status"]["phase"] == "Progressing"
    assert stored["metadata"]["generation"] == 1

    spec_patch = json.dumps({"spec": {"onHalt": "hold"}})
    kubectl("patch", RESOURCE, name, "-n", namespace, "--type=merge", "-p", spec_patch)
    stored = _get(kubectl, namespace, name)
    assert stored["metadata"]["generation"] == 2, "a spec change must bump the generation"
    assert stored["spec"]["onHalt"] == "hold"
    assert stored["status"]["phase"] == "Progressing"

    # The status schema is enforced too.
    refused = _status_patch(kubectl, namespace, name, {"weights": {"canary": 101}}, "--subresource=status")
    assert refused.returncode != 0
    assert "status.weights.canary" in refused.stderr


def test_printer_columns_show_the_status(kubectl: Kubectl, namespace: str) -> None:
    name = "columns"
    kubectl.apply(_in(namespace, load_example("card-payments.yaml"), name))
    status = {"phase": "AwaitingApproval", "currentStep": 4, "weights": {"stable": 95, "canary": 5}, "verdict": "ok"}
    assert _status_patch(kubectl, namespace, name, status, "--subresource=status").returncode == 0
    table = kubectl("get", "cro", name, "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "PHASE",
        "STEP",
        "CANARY",
        "VERDICT",
        "STABLE",
        "REVISION",
        "FROZEN-UNTIL",
        "AGE",
    ]
    assert table[1].split()[:5] == [name, "AwaitingApproval", "4", "5", "ok"]


def test_a_full_status_round_trips_without_pruning(kubectl: Kubectl, namespace: str) -> None:
    """Every field of the status model survives a write through the status subresource."""
    name = "full-status"
    kubectl.apply(_in(namespace, load_example("card-payments.yaml"), name))
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    status = CheckoutRolloutStatus(
        phase="Paused",
        paused_from="Progressing",
        observed_generation=1,
        current_step=3,
        step_started_at=now,
        last_evaluated_at=now,
        weights=Weights.canary_at(5),
        router_target=Weights.canary_at(5),
        router_weights=Weights.canary_at(5),
        message="paused by alice",
        verdict="auth-approval Pass",
        halt_reason="",
        failures=1,
        inconclusives=2,
        epoch=4,
        conditions=[
            Condition(
                type="Progressing",
                status="True",
                reason="StepStarted",
                message="step 3",
                last_transition_time=now,
                observed_generation=1,
            )
        ],
        gates=[
            GateStatus(
                name="auth-approval",
                verdict="Pass",
                reason="within 0.5pp",
                segment='provider="adyen"',
                value=0.97,
                baseline=0.971,
                samples=1200.0,
                evaluated_at=now,
                passing_since=now,
                segments=[SegmentVerdict(segment='provider="adyen"', verdict="Pass", value=0.97, samples=1200.0)],
            )
        ],
        page=PageState(
            dedup_key="uid/3/fail",
            reason="fail",
            summary="auth-approval failed",
            triggered_at=now,
            deliveries=[PageDelivery(target="pagerDuty", delivered_at=now, attempts=1)],
        ),
        history=[
            HistoryEntry(
                time=now, actor="alice", action="pause", reason="annotation", step=3, canary_weight=5, generation=1
            )
        ],
        revisions=Revisions(
            stable=Revision(hash="f92f23fe38", images=["checkout:v1"]),
            canary=Revision(hash="13ce60bcf0", images=["checkout:v2", "sidecar:1"]),
            waiting_since=now,
            canary_ready_at=now,
            promoting=True,
            replicas=3,
            previous=Revision(hash="0a1b2c3d4e", images=["checkout:v0"]),
            undo=UndoIntent(to="f92f23fe38", replacing="13ce60bcf0", actor="erin", since=now),
            error="quota exceeded",
        ),
    )
    wire = status.to_wire()
    result = _status_patch(kubectl, namespace, name, wire, "--subresource=status")
    assert result.returncode == 0, result.stderr
    stored = _get(kubectl, namespace, name)
    rollout = parse_rollout(stored)
    assert isinstance(rollout, CheckoutRollout), rollout
    assert rollout.status == status
    assert stored["status"].keys() == wire.keys()


def test_kubectl_explain_explains_the_fields(kubectl: Kubectl, crd: str) -> None:
    """`kubectl explain` reads the CRD's published schema: each field says what it means."""

    def explained(path: str) -> str:
        return str(kubectl("explain", path).stdout)

    gates = wait_for_explain(kubectl, "checkoutrollouts.spec.gates")
    assert "segmentBy" in gates and "each judged on its own" in gates
    tail = explained("checkoutrollouts.spec.gates.tail")
    assert "stable's requests" in tail and "histogram" in tail
    owner = explained("checkoutrollouts.spec.owner.escalateAfter")
    assert "Escalate a page nobody acknowledged" in owner
    status = explained("checkoutrollouts.status.guarantee")
    assert "false-halt bound" in status


def wait_for_explain(kubectl: Kubectl, path: str) -> str:
    """The explanation once the apiserver publishes the CRD's OpenAPI (a moment after it is Established)."""
    found: list[str] = []

    def published() -> bool:
        result = kubectl("explain", path, check=False)
        found[:] = [str(result.stdout)]
        return result.returncode == 0 and "segmentBy" in result.stdout

    wait_until(published, timeout=60, what=f"kubectl explain {path}")
    return found[0]
