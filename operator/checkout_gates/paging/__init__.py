"""Paging: PagerDuty Events v2, Alertmanager v2, Slack, a generic webhook; deduplicated by key.

The controller resolves the Secret values a rollout's owner needs (:func:`owner_secrets`),
then hands the decision's page actions to :func:`send_page_actions` and records each
:class:`DeliveryOutcome` (a core type, re-exported here) with ``rollout.outcomes.apply_outcomes``.
"""

from checkout_gates.paging.alertmanager import AlertmanagerPager
from checkout_gates.paging.base import (
    DeliveryError,
    MissingSecretError,
    PageContext,
    Pager,
    PagingError,
    make_pager,
    owner_secrets,
    required_secrets,
)
from checkout_gates.paging.delivery import deliver, new_client, send_page_actions
from checkout_gates.paging.pagerduty import PagerDutyPager
from checkout_gates.paging.slack import SlackPager
from checkout_gates.paging.webhook import WebhookPager
from checkout_gates.rollout.outcomes import DeliveryOutcome

__all__ = [
    "AlertmanagerPager",
    "DeliveryError",
    "DeliveryOutcome",
    "MissingSecretError",
    "PageContext",
    "Pager",
    "PagerDutyPager",
    "PagingError",
    "SlackPager",
    "WebhookPager",
    "deliver",
    "make_pager",
    "new_client",
    "owner_secrets",
    "required_secrets",
    "send_page_actions",
]
