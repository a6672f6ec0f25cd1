"""What every caller of kube-apiserver shares: patch content types, guarded JSON patches, errors.

Used by the routers (adapters), the controller and the CLI (shells), so that a JSON pointer is
escaped one way and an API error reads the same in a log line, a router error and a terminal.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client takes a second to import; `lint` and `evaluate` never need it
    from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "checkout-gates"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# What kube-apiserver answers (422) when a JSON patch's "test" operation does not hold.
JSON_PATCH_TEST_FAILED = "the server rejected our request due to an error in our request"
# A guarded removal that meets one of these lost a race (gone, or the value moved on): not an error.
GONE_OR_CHANGED = (404, 409, 422)
MESSAGE_LIMIT = 500


def pointer(*tokens: str) -> str:
    """A JSON pointer (RFC 6901) to the path ``tokens``, each escaped (``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in tokens)


def remove_if_unchanged(path: str, value: object) -> list[dict[str, Any]]:
    """A JSON patch that removes ``path`` only while it still holds ``value`` (a ``test`` first)."""
    return [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]


def server_message(error: ApiException) -> str:
    """The API server's own message (its Status ``message``), on one line and bounded; else the reason."""
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    message = str(error.reason or "no details")
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        status = json.loads(body or "{}")
        if isinstance(status, dict) and status.get("message"):
            message = str(status["message"])
    message = " ".join(message.split())
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


def describe(error: BaseException) -> str:
    """A one-line account of an error; for an API error, its status and the server's message."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - loaded by whoever raised it

    if isinstance(error, ApiException):
        return f"HTTP {error.status}: {server_message(error)}"
    return " ".join(f"{type(error).__name__}: {error}".split())
