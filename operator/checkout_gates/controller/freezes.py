"""Reading the cluster's CheckoutFreezes for the reconcile pass (the decision is rollout/freeze.py's).

One list of the cluster-scoped objects serves every rollout for FRESH_FOR seconds: a freeze is
declared minutes to months ahead, and a rollout's next pass is seconds away. The CRD not
installed is no freeze; any other failure is an error, and the core then holds exposure where it
is (fail closed: a freeze that cannot be read may be one that holds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from checkout_gates.api.freeze import FREEZE_PLURAL, CheckoutFreezeSpec
from checkout_gates.api.spec import GROUP, VERSION
from checkout_gates.apiserver import server_message
from checkout_gates.rollout.freeze import Freeze

log = structlog.get_logger(__name__)
FRESH_FOR = 5.0
# A failed list within this long of a good one serves the good one: a passing 429 or a restarting
# apiserver must not hold every rollout (and flap Frozen / FreezeEnded into every history).
GOOD_FOR = 60.0
FreezeRead = tuple[tuple[Freeze, ...], str | None]


class ClusterFreezes:
    def __init__(self, api_client: ApiClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._api: Any = CustomObjectsApi(api_client)
        self._clock = clock
        self._last: tuple[float, FreezeRead] | None = None
        self._good: tuple[float, FreezeRead] | None = None

    def read(self) -> FreezeRead:
        """The freezes and why they could not be read (synchronous: run it off the event loop)."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < FRESH_FOR:
            return self._last[1]
        result = self._list()
        if result[1] is None:
            self._good = (now, result)
        elif self._good is not None and now - self._good[0] < GOOD_FOR:
            log.warning("CheckoutFreezes not listed: the last list serves", error=result[1])
            result = self._good[1]
        self._last = (now, result)
        return result

    def _list(self) -> FreezeRead:
        try:
            response = self._api.list_cluster_custom_object(GROUP, VERSION, FREEZE_PLURAL, _preload_content=False)
            document = json.loads(response.data)
        except ApiException as error:
            if error.status == 404:
                return (), None  # the CheckoutFreeze CRD is not installed: no freeze
            return (), f"cannot list CheckoutFreezes: HTTP {error.status} {error.reason}: {server_message(error)}"
        except ValueError:
            return (), "cannot list CheckoutFreezes: the API server sent no JSON"
        except Exception as error:  # a connection reset, a timeout: an error to hold on, never a failed pass
            return (), f"cannot list CheckoutFreezes: {type(error).__name__}: {str(error)[:200]}"
        found = []
        for item in document.get("items") or [] if isinstance(document, dict) else []:
            if not isinstance(item, dict):
                continue
            name = str((item.get("metadata") or {}).get("name", ""))
            spec = item.get("spec") or {}
            try:
                found.append(Freeze(name, CheckoutFreezeSpec.model_validate(spec)))
            except ValidationError as error:
                # Admission cannot check a time zone: one this operator cannot read is still a
                # freeze, of the namespaces it names (all when it names none), and only those.
                raw = spec.get("namespaces") if isinstance(spec, dict) else None
                namespaces = tuple(str(n) for n in raw) if isinstance(raw, list) else ()
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                found.append(Freeze(name, None, f"spec.{where}: {first['msg']}"[:300], namespaces))
        return tuple(found), None
