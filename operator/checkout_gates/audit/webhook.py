"""An audit sink that POSTs each batch as JSON to one URL.

Body: ``{"records": [record, ...]}`` (rollout/audit.py names the fields); header
``Authorization: Bearer <token>`` when a token file is given, read at every delivery so that a
rotated Secret takes effect without a restart. Any 2xx takes the whole batch; anything else,
a timeout or a connection failure is a failed delivery, retried later with the same keys.
Vector's and Fluent Bit's HTTP sources, Logstash's http input and most log stores take this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from checkout_gates.audit.port import AuditDeliveryError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class WebhookSink:
    def __init__(
        self,
        url: str,
        *,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"audit sink URL {parts.scheme}://{parts.netloc}...: want http(s)://host[:port]/path")
        if parts.username or parts.password:
            raise ValueError("audit sink URL: give credentials with --audit-token-file, not in the URL")
        self.url = url
        self.token_file = token_file
        self.description = f"audit webhook at {parts.scheme}://{parts.netloc}"  # a path may hold a token
        self.client = client or httpx.AsyncClient(
            timeout=TIMEOUT,
            verify=str(ca_file) if ca_file is not None else True,
            follow_redirects=False,
            headers={"User-Agent": "checkout-gates"},
        )

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        headers = {}
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except (OSError, UnicodeError) as error:
                why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
                raise AuditDeliveryError(f"audit sink token file {self.token_file}: {why}") from None
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = await self.client.post(self.url, json={"records": list(records)}, headers=headers)
        except (httpx.HTTPError, UnicodeError, ValueError) as error:  # a token no header may carry, too
            # The exception's text may carry the URL; its kind is what is safe and useful to say.
            raise AuditDeliveryError(f"{self.description}: {type(error).__name__}") from None
        if not 200 <= answer.status_code < 300:
            raise AuditDeliveryError(f"{self.description} answered {answer.status_code}")

    async def aclose(self) -> None:
        await self.client.aclose()

    def __repr__(self) -> str:
        return f"WebhookSink({self.description})"
