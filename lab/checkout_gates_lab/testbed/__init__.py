"""A real local testbed: etcd, kube-apiserver, kube-controller-manager, Prometheus, Alertmanager.

Used by the test fixtures (tests/conftest.py) and by the demo. Binaries come from
`hack/testbed.sh build` and `hack/install-deps.sh`; see hack/TESTBED.md.
"""

from checkout_gates_lab.testbed.alertmanager import Alertmanager
from checkout_gates_lab.testbed.binaries import MissingComponentError, find, gateway_api_crds
from checkout_gates_lab.testbed.certs import CertificateAuthority, KeyPair
from checkout_gates_lab.testbed.kube import ExternalCluster, LocalCluster
from checkout_gates_lab.testbed.kubectl import Kubectl, KubectlError
from checkout_gates_lab.testbed.operator import operator_argv
from checkout_gates_lab.testbed.processes import ManagedProcess, TestbedError, free_port, wait_until
from checkout_gates_lab.testbed.prometheus import Prometheus

__all__ = [
    "Alertmanager",
    "CertificateAuthority",
    "ExternalCluster",
    "KeyPair",
    "Kubectl",
    "KubectlError",
    "LocalCluster",
    "ManagedProcess",
    "MissingComponentError",
    "Prometheus",
    "TestbedError",
    "find",
    "free_port",
    "gateway_api_crds",
    "operator_argv",
    "wait_until",
]
