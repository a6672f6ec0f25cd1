"""What the target modules share: the page context, the errors, HTTP and formatting helpers.

Re-exported by :mod:`checkout_gates.paging.base`, which is where callers should import them from;
they live here so that ``base.make_pager`` can import the target modules without a cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from checkout_gates.api.destinations import PAGERDUTY_DESTINATIONS
from checkout_gates.api.text import printable

BODY_SHOWN = 200  # characters of a response body quoted in an error
MAX_RETRY_AFTER = 30.0  # seconds: a Retry-After above this is capped


class PagingError(Exception):
    """Base of the paging errors."""


class MissingSecretError(PagingError):
    """A target needs a Secret value the controller did not supply (or supplied empty)."""


class DeliveryError(PagingError):
    """A target did not accept a page.

    ``retryable`` for connection failures, timeouts, 408, 429 and 5xx; ``retry_after`` is the
    server's Retry-After in seconds when it sent one. ``answer`` is what may be said of the reply
    (see :func:`describe_answer`): never the body of an arbitrary server, which the rollout's author
    could read back from the status (a request forgery that shows its answer).
    """

    def __init__(
        self,
        kind: str,
        url: str,
        *,
        status: int | None = None,
        answer: str = "",
        reason: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.host = url_host(url)
        self.status = status
        self.answer = shorten(answer)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1  # set by deliver() to the number of attempts made
        parts = [f"{kind} at {self.host}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if reason:
            parts.append(reason)
        if self.answer:
            parts.append(f"answer: {self.answer}")
        super().__init__(": ".join(parts))


class DestinationRefusedError(PagingError):
    """A target's URL is outside the operator's egress allowlist, or its credential may not go there."""


@dataclass(frozen=True)
class PageContext:
    """Where a page comes from: the rollout, its owner, the sender, and the times involved.

    ``triggered_at`` is when the halt was paged (``status.page.triggeredAt``): it stays the same
    on every resend, so a target that keys on it (Alertmanager's ``startsAt``) sees one alert.
    ``now`` is the time of this delivery (an Alertmanager resolve's ``endsAt``); ``None`` reads
    the clock. ``links`` are (text, URL) pairs, e.g. a dashboard.
    """

    namespace: str
    name: str
    owner: str
    source: str = "checkout-gates"
    triggered_at: datetime | None = None
    now: datetime | None = None
    links: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def rollout(self) -> str:
        return f"{self.namespace}/{self.name}"

    def at(self) -> datetime:
        """The delivery time, timezone-aware."""
        return as_utc(self.now) if self.now is not None else datetime.now(UTC)

    def started(self) -> datetime:
        """When the halt was paged (the delivery time when unknown)."""
        return as_utc(self.triggered_at) if self.triggered_at is not None else self.at()


# --- helpers shared by the target modules -------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shorten(text: str, limit: int = BODY_SHOWN) -> str:
    """Whitespace collapsed, at most ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, the last one an ellipsis when cut (line breaks kept)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def url_host(url: str) -> str:
    """host[:port] of a URL, nothing of its path, query or credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid URL>"
    host = parsed.host or "<no host>"
    return f"{host}:{parsed.port}" if parsed.port is not None else host


def _redact(message: str, url: str) -> str:
    """An exception text without the URL's path (which may hold a secret)."""
    if url:
        message = message.replace(url, url_host(url))
        try:
            path = httpx.URL(url).raw_path.decode("ascii", "replace")
        except (httpx.InvalidURL, TypeError, ValueError):
            path = ""
        if len(path) > 1:
            message = message.replace(path, "/<redacted>")
    return message


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for these APIs; the plain backoff applies
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


async def post_json(
    client: httpx.AsyncClient,
    kind: str,
    url: str,
    body: object,
    *,
    accept: tuple[int, ...] = (),
) -> httpx.Response:
    """POST JSON; a response outside ``accept`` (default: any 2xx) or a transport error raises."""
    try:
        response = await client.post(url, json=body)
    except httpx.InvalidURL:
        raise DeliveryError(kind, url, reason="invalid URL") from None
    except httpx.TimeoutException as exc:
        raise DeliveryError(kind, url, reason=f"timed out ({type(exc).__name__})", retryable=True) from None
    except httpx.TransportError as exc:
        text = _redact(str(exc), url) or type(exc).__name__
        raise DeliveryError(kind, url, reason=f"connection failed: {text}", retryable=True) from None
    check_response(kind, url, response, accept=accept)
    return response


def check_response(kind: str, url: str, response: httpx.Response, *, accept: tuple[int, ...] = ()) -> None:
    ok = response.status_code in accept if accept else 200 <= response.status_code < 300
    if ok:
        return
    raise DeliveryError(
        kind,
        url,
        status=response.status_code,
        answer=describe_answer(kind, response),
        retryable=retryable_status(response.status_code),
        retry_after=_retry_after(response),
    )


_SLACK_ERROR = re.compile(r"[a-z][a-z_]{0,63}")
SLACK_HOST = "hooks.slack.com"
PAGERDUTY_HOSTS = frozenset(urlsplit(url).hostname for url in PAGERDUTY_DESTINATIONS)


def describe_answer(kind: str, response: httpx.Response) -> str:
    """What an error message may say of a reply: Slack's documented error codes and PagerDuty's own
    error fields (each from its own hosts only), else its media type and size only."""
    text = response.text.strip()
    if kind == "slack" and response.url.host == SLACK_HOST and _SLACK_ERROR.fullmatch(text):
        return text  # Slack's documented plain-text codes: invalid_payload, no_service, ...
    if kind == "pager_duty" and response.url.host in PAGERDUTY_HOSTS:
        try:
            document = response.json()
        except ValueError:
            document = None
        if isinstance(document, dict):
            said = [document.get("message"), *(document.get("errors") or [])[:3]]
            words = [printable(shorten(item, 80)) for item in said if isinstance(item, str) and item]
            if words:
                return "; ".join(words)
    media = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    return f"{printable(shorten(media, 60))}, {len(response.content)} bytes"


_LABEL_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """A detail key as a Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*."""
    name = _LABEL_NAME_BAD.sub("_", key) or "_"
    return f"_{name}" if name[0].isdigit() else name
