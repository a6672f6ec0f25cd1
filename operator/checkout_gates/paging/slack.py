"""Slack incoming webhook: ``POST {webhook URL}`` with ``{"text": ..., "blocks": [...]}``.

``text`` is the notification fallback (and what a screen reader reads); the blocks lay out the
same facts: what halted and why, the failing gate and segment, the weights, and the commands
that abort or retry. A resolve posts a short "resolved" message. Slack has no dedup of its own;
the core sends the trigger to a target once per halt, and the dedup key is shown for reference.

The webhook URL is a secret: errors name only its host.
"""

from __future__ import annotations

from typing import Any

import httpx

from checkout_gates.paging.common import PageContext, post_json, truncate
from checkout_gates.rollout.actions import PageOwner, ResolvePage

KIND = "slack"
MAX_TEXT = 3000  # a section block's text
MAX_HEADER = 150  # a header block's plain text
MAX_FIELD = 2000  # one section field
MAX_FIELDS = 10  # fields per section
FACT_KEYS = ("rollout", "owner", "phase", "step", "weights", "gate", "segment", "value", "baseline")
COMMAND_KEYS = ("abort", "retry", "approve")
SEVERITY_ICON = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":warning:"}


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return "`" + _escape(text).replace("`", "'") + "`"


def trigger_message(page: PageOwner, context: PageContext) -> dict[str, Any]:
    details = {key: value for key, value in page.details.items() if value}
    details.setdefault("rollout", context.rollout)
    details.setdefault("owner", context.owner)
    icon = SEVERITY_ICON.get(page.severity, ":information_source:")
    # A notice (owner.notify) carries the event it is about; a page is about a halt.
    title = f"Checkout rollout {context.rollout} " + (
        f"notice: {page.details['event']}" if "event" in page.details else f"halted ({page.severity})"
    )
    summary = page.summary or title
    commands = [(key, details[key]) for key in COMMAND_KEYS if key in details]
    text_lines = [f"{icon} {title}: {summary}"]
    text_lines += [f"{key}: {details[key]}" for key in FACT_KEYS if key in details]
    text_lines += [f"{key}: {command}" for key, command in commands]

    facts = [
        {"type": "mrkdwn", "text": truncate(f"*{key}*\n{_escape(details[key])}", MAX_FIELD)}
        for key in FACT_KEYS
        if key in details
    ]
    others = [
        (key, value)
        for key, value in details.items()
        if key not in FACT_KEYS and key not in COMMAND_KEYS and key != "reason"
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, MAX_HEADER)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(f"{icon} {_escape(summary)}", MAX_TEXT)}},
    ]
    if details.get("reason") and details["reason"] != summary:
        reason = f"*reason*: {_escape(details['reason'])}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(reason, MAX_TEXT)}})
    for start in range(0, len(facts), MAX_FIELDS):
        blocks.append({"type": "section", "fields": facts[start : start + MAX_FIELDS]})
    if others:
        extra = "\n".join(f"*{_escape(key)}*: {_escape(value)}" for key, value in others)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(extra, MAX_TEXT)}})
    if commands:
        lines = "\n".join(f"*{key}*: {_code(command)}" for key, command in commands)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(lines, MAX_TEXT)}})
    context_items = [f"dedup key {_code(page.dedup_key)}", f"from {_escape(context.source)}"]
    context_items += [f"<{href}|{_escape(text)}>" for text, href in context.links]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": item} for item in context_items]})
    return {"text": truncate("\n".join(text_lines), MAX_TEXT), "blocks": blocks}


def resolve_message(page: ResolvePage, context: PageContext) -> dict[str, Any]:
    text = f":white_check_mark: Checkout rollout {context.rollout} halt resolved"
    if page.reason:
        text += f": {page.reason}"
    return {
        "text": truncate(text, MAX_TEXT),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(_escape(text), MAX_TEXT)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"dedup key {_code(page.dedup_key)}"}]},
        ],
    }


class SlackPager:
    kind: str = KIND

    def __init__(self, webhook_url: str, client: httpx.AsyncClient) -> None:
        self.url = webhook_url
        self.client = client

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        await post_json(self.client, self.kind, self.url, trigger_message(page, context))

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        await post_json(self.client, self.kind, self.url, resolve_message(page, context))

    def __repr__(self) -> str:  # never the webhook URL
        return "SlackPager(<webhook URL from a Secret>)"
