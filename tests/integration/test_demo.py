"""`checkout-gates demo`, as a user runs it: checkout:v1 is adopted as stable, `kubectl set image`
deploys v2 and the rollout starts by itself; a healthy v2 ends stable; a v2 that charges customers
twice is stopped, its owner paged once in Alertmanager, v1 still stable and v2 scaled down."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from checkout_gates_lab.demo.stack import missing_components

pytestmark = pytest.mark.integration

TIMEOUT = 540.0  # the demo takes two to three minutes; its own timeout is 600 s


RUNS = {"healthy": (), "duplicate-charges": ("--fault", "duplicate-charges")}


@pytest.fixture(scope="module")
def demos() -> dict[str, subprocess.CompletedProcess[str]]:
    """Both demos, run at once as two users on one machine would (each its own testbed, ports and
    work directory): most of a demo is waiting for pass windows, so together they take the time of
    one."""
    missing = missing_components()
    if missing:
        message = "testbed not built: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = [sys.executable, "-m", "checkout_gates.cli.main", "demo", "--seed", "7"]
    started = {
        name: subprocess.Popen([*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in RUNS.items()
    }
    results = {}
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def demo(demos: dict[str, subprocess.CompletedProcess[str]], name: str) -> subprocess.CompletedProcess[str]:
    result = demos[name]
    print(result.stdout[-6000:])
    print(result.stderr[-3000:], file=sys.stderr)
    return result


def leftovers(output: str) -> bool:
    """Whether the demo's work directory is still there after it said it stopped."""
    match = re.search(r"^work directory: (\S+)$", output, re.MULTILINE)
    return bool(match) and os.path.exists(match.group(1))


def test_demo_promotes_a_healthy_canary(demos: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = demo(demos, "healthy")
    assert result.returncode == 0
    out = result.stdout
    assert "starting etcd, kube-apiserver and kube-controller-manager… ok" in out
    assert "starting kube-scheduler and kwok (2 simulated nodes)… ok" in out
    assert "kubectl set image deployment/checkout-api app=checkout:v2 -n checkout-demo" in out
    assert re.search(r"^outcome:\s+Promoted at step 8, canary 100%: as expected", out, re.MULTILINE)
    assert re.search(r"^stable:\s+revision [0-9a-f]{10} \(checkout:v2\) on checkout-api-stable", out, re.MULTILINE)
    assert re.search(r"^canary:\s+Deployment checkout-api at 0 replicas", out, re.MULTILINE)
    assert "adopted as stable" in out, "v1 was adopted first, then v2 rolled out by itself"
    assert "Approved by demo" in out  # the approval step, granted by the demo as actor `demo`
    assert "page:      none" in out
    assert not leftovers(out)


def test_demo_with_duplicate_charges_aborts_and_pages_once(demos: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = demo(demos, "duplicate-charges")
    assert result.returncode == 0
    out = result.stdout
    assert re.search(r"^outcome:\s+(Aborted|Halted) at step \d+, canary \d+%.*: as expected", out, re.MULTILINE)
    assert "gate:      duplicate-charges" in out
    assert "app=checkout:v2-duplicate-charges" in out
    assert re.search(r"^stable:\s+revision [0-9a-f]{10} \(checkout:v1\) on checkout-api-stable", out, re.MULTILINE)
    assert re.search(r"^canary:\s+Deployment checkout-api at 0 replicas", out, re.MULTILINE)
    assert re.search(r"^page:\s+1 alert in Alertmanager", out, re.MULTILINE)
    assert "alertname: CheckoutRolloutHalted" in out
    assert "owner: payments-oncall" in out
    assert not leftovers(out)
