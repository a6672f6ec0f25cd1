"""Fixtures shared by the integration tests that run the operator (see operator_harness.py)."""

from tests.integration.operator_harness import (  # noqa: F401
    cluster_ready,
    new_rollout,
    operator,
    scraping_prometheus,
    traffic,
)
from tests.integration.receivers import receiver  # noqa: F401
from tests.integration.release_harness import release_cluster  # noqa: F401
from tests.integration.reliability import live  # noqa: F401
