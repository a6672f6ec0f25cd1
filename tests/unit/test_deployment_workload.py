"""The Deployment adapter's pure parts: the stable copy it builds, and when it calls a rollout done.

Its calls to kube-apiserver are tested on the testbed (tests/integration/test_release_testbed.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from checkout_gates.rollout.workload import template_revision
from checkout_gates.workloads.base import WorkloadError
from checkout_gates.workloads.deployment import (
    REVISION_ANNOTATION,
    ROLLOUT_LABEL,
    TEMPLATE_ANNOTATION,
    TEMPLATE_LIMIT,
    stable_copy,
    state_of,
)


def user_deployment(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "checkout-api",
            "namespace": "payments",
            "generation": 4,
            "labels": {"app": "checkout-api", "team": "payments"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "checkout-api"}},
            "progressDeadlineSeconds": 300,
            "template": {
                "metadata": {"labels": {"app": "checkout-api", "tier": "web"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "app", "image": "checkout:v2"}]},
            },
            **spec,
        },
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
        },
    }


def test_the_copy_selects_only_its_own_pods_and_never_goes_unavailable() -> None:
    user = user_deployment()
    copied = stable_copy(user, rollout="checkout", revision="abc", replicas=5)
    assert copied["metadata"]["name"] == "checkout-api-stable"
    assert copied["metadata"]["labels"] == {
        "app": "checkout-api-stable",
        "team": "payments",
        "app.kubernetes.io/managed-by": "checkout-gates",
        ROLLOUT_LABEL: "checkout",
    }
    annotations = copied["metadata"]["annotations"]
    assert annotations[REVISION_ANNOTATION] == "abc"
    kept = json.loads(annotations[TEMPLATE_ANNOTATION])
    assert kept == user["spec"]["template"], "the template as the user wrote it, for an undo to write back"
    assert "ownerReferences" not in copied["metadata"], "deleting the rollout must not delete stable's pods"
    spec = copied["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "checkout-api-stable"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "checkout-api-stable", "tier": "web"}
    assert spec["template"]["spec"] == user["spec"]["template"]["spec"]
    assert spec["replicas"] == 5 and spec["progressDeadlineSeconds"] == 300
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The user's Deployment is not touched by building the copy.
    assert user == user_deployment()


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}, "matchLabels only"),
        ({}, "no matchLabels"),
        ({"matchLabels": {"app": "x" * 60}}, "too long to carry the -stable suffix"),
    ],
)
def test_selectors_the_copy_cannot_tell_apart_are_refused_with_the_reason(
    selector: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkloadError, match=message):
        stable_copy(user_deployment(selector=selector), rollout="checkout", revision="abc", replicas=3)


def test_a_rolled_out_deployment_is_ready_and_its_images_are_named() -> None:
    state = state_of(user_deployment(), "abc")
    assert state.ready and state.replicas == 3 and state.ready_replicas == 3
    assert state.images == ("checkout:v2",) and state.revision == "abc" and not state.failure


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ({"observedGeneration": 3}, "the controller has not seen the latest spec"),
        ({"replicas": 4, "updatedReplicas": 3}, "an old replica is still running"),
        ({"updatedReplicas": 2}, "not every replica runs the new template"),
        ({"availableReplicas": 2}, "not every replica is available"),
    ],
)
def test_a_deployment_is_not_ready_while_it_still_rolls(status: dict[str, Any], why: str) -> None:
    deployment = user_deployment()
    deployment["status"] |= status
    assert not state_of(deployment, "abc").ready, why


def test_zero_replicas_is_never_ready_and_a_deadline_exceeded_is_reported() -> None:
    deployment = user_deployment(replicas=0)
    assert not state_of(deployment, "abc").ready
    stuck = user_deployment()
    stuck["status"] |= {
        "availableReplicas": 1,
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
        ],
    }
    assert state_of(stuck, "abc").failure == "ProgressDeadlineExceeded: too slow"


def test_hostile_status_fields_read_as_nothing_rather_than_crashing() -> None:
    deployment = user_deployment()
    deployment["status"] = {"replicas": "3", "updatedReplicas": True, "conditions": ["junk", None]}
    deployment["spec"]["template"]["spec"]["containers"] = ["junk", {"image": "ok:1"}]
    state = state_of(deployment, "abc")
    assert not state.ready and state.images == ("ok:1",)


def test_the_revision_is_the_template_and_nothing_else() -> None:
    one = user_deployment()
    other = copy.deepcopy(one)
    other["spec"]["replicas"] = 0
    other["status"] = {}
    assert template_revision(one["spec"]["template"]) == template_revision(other["spec"]["template"])
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "checkout:v3"
    assert template_revision(one["spec"]["template"]) != template_revision(other["spec"]["template"])
    reordered = {"spec": one["spec"]["template"]["spec"], "metadata": one["spec"]["template"]["metadata"]}
    assert template_revision(reordered) == template_revision(one["spec"]["template"])


def test_a_template_too_large_to_keep_is_not_kept_and_the_copy_is_still_made() -> None:
    user = user_deployment()
    user["spec"]["template"]["metadata"]["annotations"] = {"big": "x" * TEMPLATE_LIMIT}
    copied = stable_copy(user, rollout="checkout", revision="abc", replicas=3)
    assert TEMPLATE_ANNOTATION not in copied["metadata"]["annotations"]
    assert copied["spec"]["template"]["metadata"]["annotations"]["big"] == "x" * TEMPLATE_LIMIT
