"""Where the operator may send requests, and where a Secret's value may go.

A rollout names its own Prometheus and pager URLs, so whoever may write a rollout could otherwise
make the operator fetch any internal URL (an SSRF) or send a credential it reads to their own
server. Two rules close that, both pure and checked before any request is made:

- **The egress allowlist** (:class:`EgressPolicy`): the operator's own setting (``run
  --egress-allow``, the chart's ``egress.allowedDestinations``), not the rollout's. A URL outside it
  is refused with a message naming the field.
- **Credentials bound to destinations** (:func:`credential_refusal`): a Secret whose value is a
  credential says where it may be sent, in its annotation :data:`DESTINATIONS_ANNOTATION`. The
  Secret's owner decides, not the author of the rollout that refers to it. PagerDuty routing keys
  may always go to PagerDuty's own Events API (:data:`PAGERDUTY_DESTINATIONS`).

A destination is ``scheme://host[:port][/path-prefix]``; the host may start with ``*.`` to match any
subdomain (not the domain itself); a missing port is the scheme's default; a path prefix matches
whole segments. URLs with user info or a fragment are refused outright: both are ways to make a
URL read as one host and go to another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from checkout_gates.api.text import shown

DESTINATIONS_ANNOTATION = "gates.checkout.dev/destinations"
# How a (Secret name, key) lookup asks for that annotation: Secret data keys match [-._a-zA-Z0-9]+,
# so this can never be one of them.
DESTINATIONS_KEY = "@destinations"
PAGERDUTY_DESTINATIONS = ("https://events.pagerduty.com", "https://events.eu.pagerduty.com")
DEFAULT_PORTS = {"http": 80, "https": 443}
# Names under which anyone who may create a Service could add one (no wildcard over them).
_CLUSTER_SUFFIXES = frozenset({"svc", "cluster.local", "svc.cluster.local"})
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
# A host name or an IPv6 literal, and nothing a second URL parser (the HTTP client's) could read
# as a different host: no backslash, percent escape or other punctuation.
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$|^[0-9a-f:.]+$")


class DestinationError(ValueError):
    """A destination (or a URL) that cannot be read; the message says which part and why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # lower case; with a leading "*." for any subdomain
    port: int
    path: str = ""  # a prefix of whole segments, without the trailing "/"

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{'' if default else f':{self.port}'}{self.path}"

    def allows(self, url: Destination) -> bool:
        if (url.scheme, url.port) != (self.scheme, self.port):
            return False
        if self.host.startswith("*."):
            if not url.host.endswith(self.host[1:]):
                return False
        elif url.host != self.host:
            return False
        return not self.path or url.path == self.path or url.path.startswith(self.path + "/")


def _split(text: str, *, pattern: bool) -> Destination:
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as error:
        raise DestinationError(f"{shown(text)} is not a URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise DestinationError(f"{shown(text)} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise DestinationError(f"{shown(text)} has user info before its host; give credentials through a Secret")
    if parts.fragment or "#" in text:
        raise DestinationError(f"{shown(text)} has a fragment ('#'), which would cut off the path the operator adds")
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationError(f"{shown(text)} has no host")
    if "*" in host and not (pattern and host.startswith("*.") and "*" not in host[2:] and len(host) > 2):
        raise DestinationError(
            f"{shown(text)}: a wildcard is allowed only as the first label of an allowed host (*.example.com)"
        )
    if host.startswith("*.") and host[2:] in _CLUSTER_SUFFIXES:
        raise DestinationError(
            f"{shown(text)}: a wildcard over the cluster's Service names would let anyone who may create a "
            "Service (an ExternalName one points anywhere) add a destination; name the namespace (*.monitoring.svc)"
        )
    if not _HOST.match(host):
        raise DestinationError(f"{shown(text)}: the host may have letters, digits, '.' and '-' only")
    if pattern and parts.query:
        raise DestinationError(f"{shown(text)}: an allowed destination has no query string")
    # The HTTP client removes dot segments before sending (/team-a/../team-b goes to /team-b), and
    # proxies decode %2e and %2f: a path is compared only when it means what it says.
    if _ENCODED_SEPARATOR.search(parts.path) or "\\" in parts.path:
        raise DestinationError(f"{shown(text)}: the path has an encoded '.', '/' or '\\'")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise DestinationError(f"{shown(text)}: the path has a '.' or '..' segment")
    path = parts.path.rstrip("/")
    return Destination(scheme, host, port if port is not None else DEFAULT_PORTS[scheme], path)


def parse_destination(text: str) -> Destination:
    """An allowed destination (a pattern); DestinationError says what is wrong with it."""
    return _split(text, pattern=True)


def parse_destinations(entries: Iterable[str]) -> tuple[Destination, ...]:
    """Destinations from entries that may each hold several, separated by commas or spaces."""
    return tuple(parse_destination(item) for entry in entries for item in entry.replace(",", " ").split())


def _target(url: str, what: str) -> Destination | str:
    try:
        return _split(url, pattern=False)
    except DestinationError as error:
        return f"{what}: {error}"


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's egress allowlist; ``allowed=None`` lets every destination through."""

    allowed: tuple[Destination, ...] | None = None

    @classmethod
    def of(cls, entries: Iterable[str]) -> EgressPolicy:
        return cls(parse_destinations(entries))

    @property
    def restricted(self) -> bool:
        return self.allowed is not None

    def refusal(self, url: str, what: str, *, base: bool = False) -> str | None:
        """Why a request to ``url`` (from field ``what``) may not be made, or None when it may.

        ``base``: the operator appends a path to ``url`` (Prometheus' /api/v1/query), so a query
        string, which would end the URL before that path, is refused."""
        target = _target(url, what)
        if isinstance(target, str):
            return target
        if base and "?" in url:
            return f"{what}: {shown(url)} has a query string; give the server's base URL only"
        if self.allowed is None or any(allowed.allows(target) for allowed in self.allowed):
            return None
        listed = ", ".join(str(allowed) for allowed in self.allowed[:5]) or "nothing"
        more = f" and {len(self.allowed) - 5} more" if len(self.allowed) > 5 else ""
        return (
            f"{what}: {shown(str(target))} is not an allowed destination of this operator "
            f"(its egress allowlist: {listed}{more}); the operator's installer adds destinations "
            "with the chart's egress.allowedDestinations"
        )


def credential_refusal(
    secret: str, annotation: str | None, url: str, what: str, *, implied: Iterable[str] = ()
) -> str | None:
    """Why Secret ``secret``'s value may not be sent to ``url``, or None when it may.

    ``annotation`` is the Secret's :data:`DESTINATIONS_ANNOTATION` (None when it has none);
    ``implied`` are destinations the value may go to when the Secret names none (PagerDuty's API
    for what looks like a routing key): a Secret's own annotation always wins.
    """
    target = _target(url, what)
    if isinstance(target, str):
        return target
    if annotation is None and any(parse_destination(item).allows(target) for item in implied):
        return None
    if annotation is None:
        return (
            f"{what}: Secret {shown(secret)} does not say where its value may be sent; to allow this "
            f"destination its owner annotates it {DESTINATIONS_ANNOTATION}={shown(str(replace(target, path='')))}"
        )
    try:
        bound = parse_destinations([annotation])
    except DestinationError as error:
        return f"{what}: Secret {shown(secret)} has an unreadable {DESTINATIONS_ANNOTATION} annotation: {error}"
    if any(destination.allows(target) for destination in bound):
        return None
    return (
        f"{what}: Secret {shown(secret)} may not be sent to {shown(str(target))} "
        f"(its {DESTINATIONS_ANNOTATION} annotation names {', '.join(str(d) for d in bound[:5]) or 'nothing'})"
    )
