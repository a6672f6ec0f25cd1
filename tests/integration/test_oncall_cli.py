"""`checkout-gates status|list|approve|abort` and `kubectl checkout` against the testbed, operator running.

The operator harness's fixtures (operator, traffic, scraping_prometheus, cluster_ready, new_rollout)
are registered by tests/integration/conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, free_port
from checkout_gates_lab.testbed.kube import ADMIN_USER

from .operator_harness import Operator, Rollout, wait_for
from .receivers import Receiver

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
GATES = ["auth-approval", "duplicate-charges"]
# Quick to reach: approval right after the first weight; a long gate after it keeps the rollout still.
APPROVAL_FIRST = [{"setWeight": 5}, {"approval": {}}, {"setWeight": 25}, {"gate": {"pass": GATES, "window": "10m"}}]
LONG_GATE = [{"setWeight": 1}, {"gate": {"pass": GATES, "window": "10m"}}, {"approval": {}}, {"setWeight": 100}]


def cli(kubeconfig: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    command = [sys.executable, "-m", "checkout_gates.cli.main", *args, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def me(kube: LocalCluster | ExternalCluster, cluster_ready: Kubectl) -> str:
    """Who the admin kubeconfig authenticates as: the client certificate's CN on the local testbed."""
    if isinstance(kube, LocalCluster):
        return ADMIN_USER
    found = cluster_ready("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    return found


def at_phase(rollout: Rollout, phase: str, step: int) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := rollout.status).get("phase") == phase and s.get("currentStep") == step and s,
        f"{rollout.name} at {phase}, step {step}",
    )
    return status


def test_status_shows_the_phase_and_the_current_step(kube: Any, new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout(steps=APPROVAL_FIRST)
    rollout.apply()
    at_phase(rollout, "AwaitingApproval", 1)
    shown = cli(kube.kubeconfig, "status", rollout.name, "-n", rollout.namespace)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"{rollout.namespace}/{rollout.name}  AwaitingApproval  step 1/4  canary 5%")
    assert "  >  1  approval" in lines and "     0  setWeight 5%" in lines
    assert "weights:  stable 95%  canary 5%" in lines
    assert "\x1b[" not in shown.stdout, "no colour into a pipe"
    facts = json.loads(cli(kube.kubeconfig, "status", rollout.name, "-n", rollout.namespace, "-o", "json").stdout)
    assert facts["phase"] == "AwaitingApproval" and facts["currentStep"] == 1
    assert [s["index"] for s in facts["steps"] if s["current"]] == [1]


def test_approve_moves_the_rollout_on_and_names_the_actor(
    kube: Any, me: str, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=APPROVAL_FIRST)
    rollout.apply()
    at_phase(rollout, "AwaitingApproval", 1)
    approved = cli(kube.kubeconfig, "approve", rollout.name, "-n", rollout.namespace, "--timeout", "60")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approved.stdout.strip() == f"Approved by {me}: step 1 -> step 2, canary 5% -> 25%; phase Progressing"
    assert "gates.checkout.dev/approve" not in rollout.get()["metadata"].get("annotations", {})
    facts = json.loads(cli(kube.kubeconfig, "status", rollout.name, "-n", rollout.namespace, "-o", "json").stdout)
    assert facts["phase"] == "Progressing" and facts["currentStep"] == 3 and facts["weights"]["canary"] == 25
    approvals = [e for e in facts["history"] if e["action"] == "Approved"]
    assert [(e["actor"], e["reason"]) for e in approvals] == [(me, f"approve requested by {me}")]
    text = cli(kube.kubeconfig, "status", rollout.name, "-n", rollout.namespace).stdout
    assert any(line.split()[1:3] == [me, "Approved"] for line in text.splitlines() if line.startswith("  2"))


def test_abort_drops_the_canary_to_zero(kube: Any, me: str, new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout(steps=LONG_GATE)
    rollout.apply()
    at_phase(rollout, "Progressing", 1)
    aborted = cli(kube.kubeconfig, "abort", rollout.name, "-n", rollout.namespace, "--reason", "bad build 4711")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert aborted.stdout.strip() == f"Aborted by {me}: at step 1, canary 1% -> 0%; phase Aborted"
    facts = json.loads(cli(kube.kubeconfig, "status", rollout.name, "-n", rollout.namespace, "-o", "json").stdout)
    assert facts["phase"] == "Aborted" and facts["weights"] == {"stable": 100, "canary": 0}
    newest = facts["history"][-1]
    assert (newest["actor"], newest["action"], newest["reason"]) == (me, "Aborted", "bad build 4711")
    annotations = rollout.get()["metadata"].get("annotations", {})
    assert not [key for key in annotations if key.startswith("gates.checkout.dev/")], annotations
    wait_for(lambda: rollout.route_weights() == (100, 0), "the route back at stable")


def test_approve_with_nothing_to_approve_exits_1_with_the_reason(
    kube: Any, me: str, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=LONG_GATE)
    rollout.apply()
    at_phase(rollout, "Progressing", 1)
    ignored = cli(kube.kubeconfig, "approve", rollout.name, "-n", rollout.namespace)
    assert ignored.returncode == 1, ignored.stdout + ignored.stderr
    assert ignored.stdout.strip() == "Ignored: nothing awaits approval in phase Progressing"
    newest = rollout.history()[-1]
    assert (newest["actor"], newest["action"]) == (me, "Ignored")
    assert rollout.status["phase"] == "Progressing"


def test_kubectl_checkout_plugin_and_list_across_namespaces(
    kube: Any, cluster_ready: Kubectl, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=APPROVAL_FIRST)
    rollout.apply()
    at_phase(rollout, "AwaitingApproval", 1)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": str(kube.kubeconfig)}
    env.pop("NO_COLOR", None)
    plugins = subprocess.run(
        [str(cluster_ready.binary), "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert str(BIN / "kubectl-checkout") in plugins.stdout, plugins.stdout + plugins.stderr
    shown = subprocess.run(
        [str(cluster_ready.binary), "checkout", "status", rollout.name, "-n", rollout.namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{rollout.namespace}/{rollout.name}  AwaitingApproval  step 1/4")
    helped = subprocess.run(
        [str(cluster_ready.binary), "checkout", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert helped.stdout.startswith("usage: kubectl checkout "), helped.stdout

    listed = cli(kube.kubeconfig, "list", "-A")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "STEP", "CANARY", "VERDICT", "AGE"]
    row = next(line.split() for line in lines if line.split()[:2] == [rollout.namespace, rollout.name])
    assert row[2:5] == ["AwaitingApproval", "1/4", "5%"]
    in_one = cli(kube.kubeconfig, "list", "-n", rollout.namespace, "-o", "json")
    assert [(r["name"], r["phase"]) for r in json.loads(in_one.stdout)] == [(rollout.name, "AwaitingApproval")]


def test_errors_are_one_line_with_exit_3(
    kube: LocalCluster | ExternalCluster, cluster_ready: Kubectl, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=LONG_GATE)
    rollout.apply()
    missing = cli(kube.kubeconfig, "status", "nope", "-n", rollout.namespace)
    assert (missing.returncode, missing.stderr.strip()) == (3, f"no CheckoutRollout {rollout.namespace}/nope")

    port = free_port()
    offline = Path(str(kube.kubeconfig) + ".offline")
    offline.write_text(kube.kubeconfig.read_text().replace(kube_server(kube.kubeconfig), f"https://127.0.0.1:{port}"))
    unreachable = cli(offline, "approve", rollout.name, "-n", rollout.namespace)
    assert unreachable.returncode == 3
    assert unreachable.stderr.strip() == f"cannot reach the cluster at https://127.0.0.1:{port}: connection refused"

    if not isinstance(kube, LocalCluster):
        return
    # A reader: may get and watch rollouts, not patch them.
    reader = "reader-" + rollout.name
    cluster_ready(
        "create",
        "role",
        "rollout-reader",
        "-n",
        rollout.namespace,
        "--verb=get,list,watch",
        "--resource=checkoutrollouts.gates.checkout.dev",
    )
    cluster_ready(
        "create", "rolebinding", "rollout-reader", "-n", rollout.namespace, "--role=rollout-reader", f"--user={reader}"
    )
    readers_config = kube.kubeconfig_for(reader)
    assert cli(readers_config, "status", rollout.name, "-n", rollout.namespace).returncode == 0
    forbidden = cli(readers_config, "approve", rollout.name, "-n", rollout.namespace)
    assert forbidden.returncode == 3
    assert forbidden.stderr.strip() == f"you ({reader}) may not patch checkoutrollouts in {rollout.namespace}"
    across = cli(readers_config, "list", "-A")
    assert (across.returncode, across.stderr.strip()) == (
        3,
        f"you ({reader}) may not list checkoutrollouts across namespaces",
    )


def test_the_actor_is_who_the_api_server_says_not_the_kubeconfig_entry_name(
    kube: Any, me: str, new_rollout: Callable[..., Rollout]
) -> None:
    if not isinstance(kube, LocalCluster):
        pytest.skip("rewrites the testbed's own one-context admin kubeconfig")
    rollout = new_rollout(steps=LONG_GATE)
    config = yaml.safe_load(kube.kubeconfig.read_text())
    entry = config["contexts"][0]["context"]["user"]
    config["users"][0]["name"] = config["contexts"][0]["context"]["user"] = f"laptop-{entry}"
    renamed = Path(str(kube.kubeconfig) + ".renamed")
    renamed.write_text(yaml.safe_dump(config))
    rollout.apply()
    placed = cli(renamed, "pause", rollout.name, "-n", rollout.namespace, "--no-wait")
    assert placed.returncode == 0, placed.stderr
    assert placed.stderr.strip() == f"gates.checkout.dev/pause={me} set on {rollout.namespace}/{rollout.name}"


def kube_server(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def test_approve_times_out_with_exit_2_when_no_operator_runs(
    kube: Any, operator: Operator, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=APPROVAL_FIRST)
    rollout.apply()
    at_phase(rollout, "AwaitingApproval", 1)
    operator.stop()
    try:
        waited = cli(kube.kubeconfig, "approve", rollout.name, "-n", rollout.namespace, "--timeout", "3")
    finally:
        operator.start()
    assert waited.returncode == 2, waited.stdout + waited.stderr
    assert "is the operator running?" in waited.stderr
    placed = cli(kube.kubeconfig, "approve", rollout.name, "-n", rollout.namespace, "--no-wait")
    assert placed.returncode == 0
    at_phase(rollout, "Progressing", 3)


def test_status_watch_prints_every_change_until_a_terminal_phase(
    kube: Any, me: str, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=LONG_GATE)
    rollout.apply()
    at_phase(rollout, "Progressing", 1)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    command = [sys.executable, "-m", "checkout_gates.cli.main", "status", rollout.name, "-n", rollout.namespace]
    watching = subprocess.Popen(
        [*command, "--watch", "-o", "json", "--kubeconfig", str(kube.kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watching.stdout is not None
        first = json.loads(watching.stdout.readline())
        assert (first["phase"], first["currentStep"]) == ("Progressing", 1)
        rollout.annotate("gates.checkout.dev/abort", me)
        out, err = watching.communicate(timeout=60)
    finally:
        watching.kill()
    assert watching.returncode == 0, err
    updates = [json.loads(line) for line in out.splitlines()]
    assert updates[-1]["phase"] == "Aborted" and updates[-1]["weights"]["canary"] == 0


def test_promote_full_needs_a_reason_and_jumps_past_every_step_with_one_record(
    kube: Any, me: str, new_rollout: Callable[..., Rollout], receiver: Receiver, operator: Operator
) -> None:
    rollout = new_rollout(
        steps=LONG_GATE, owner={"name": "payments-oncall", "page": [{"webhook": {"url": f"{receiver.url}/page"}}]}
    )
    rollout.apply()
    at_phase(rollout, "Progressing", 1)
    unsaid = cli(kube.kubeconfig, "promote-full", rollout.name, "-n", rollout.namespace)
    assert unsaid.returncode == 3 and "--reason" in unsaid.stderr
    assert "gates.checkout.dev/promote-full" not in rollout.get()["metadata"].get("annotations", {})
    reason = "the fix for the 3-D Secure outage must reach everyone now"
    done = cli(kube.kubeconfig, "promote-full", rollout.name, "-n", rollout.namespace, "--reason", reason)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"PromotedFull by {me}: step 1 -> step 4"), done.stdout
    status = rollout.wait_phase("Promoted")
    assert status["weights"] == {"stable": 0, "canary": 100}
    records = [e for e in rollout.history() if e["action"] == "PromotedFull"]
    assert [(e["actor"], reason in e["reason"]) for e in records] == [(me, True)]
    (sent,) = wait_for(lambda: receiver.accepted("/page"), "the override told to the owner's pager")
    assert sent["event"] == "trigger" and sent["severity"] == "warning" and "promoted by" in sent["summary"]

    # The audit log: one line per transition of the history, with who and why.
    def audited() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in operator.logs.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "audit" and line.get("rollout") == rollout.name]

    history = rollout.history()
    lines = wait_for(lambda: len(found := audited()) >= len(history) and found, "an audit line per transition")
    assert [(line["action"], line["actor"]) for line in lines] == [(e["action"], e["actor"]) for e in history]
    assert len({line["key"] for line in lines}) == len(lines)
    (override,) = [line for line in lines if line["action"] == "PromotedFull"]
    assert reason in override["reason"] and override["logger"] == "checkout_gates.audit"


def test_spec_paused_from_git_holds_the_rollout_without_restarting_it(
    kube: Any, cluster_ready: Kubectl, new_rollout: Callable[..., Rollout]
) -> None:
    rollout = new_rollout(steps=LONG_GATE)
    rollout.apply()
    at_phase(rollout, "Progressing", 1)
    wait_for(lambda: rollout.route_weights() == (99, 1), "1% on the canary")

    def patch(paused: bool) -> None:
        body = json.dumps({"spec": {"paused": paused}})
        cluster_ready("patch", "cro", rollout.name, "-n", rollout.namespace, "--type=merge", "-p", body)

    patch(True)
    status = at_phase(rollout, "Paused", 1)
    assert status["weights"]["canary"] == 1 and rollout.route_weights() == (99, 1), "held, not restarted"
    assert "paused by spec.paused" in status["message"]
    patch(False)
    at_phase(rollout, "Progressing", 1)
    actions = [e["action"] for e in rollout.history()]
    assert "Restarted" not in actions and actions.count("SpecChanged") == 2, actions
    assert actions[-1] == "Resumed"
