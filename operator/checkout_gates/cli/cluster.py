"""The CLI's connection to a cluster: a kubeconfig, who you are, and every failure as one line.

The official client is imported only when a command talks to a cluster, so ``lint`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from checkout_gates.api.spec import GROUP, KIND, PLURAL, VERSION
from checkout_gates.apiserver import (
    GONE_OR_CHANGED,
    JSON_PATCH,
    MERGE_PATCH,
    pointer,
    remove_if_unchanged,
    server_message,
)

Raw = dict[str, Any]
REQUEST_TIMEOUT = 15.0
POLL_SECONDS = 2.0
WATCH_CHUNK_SECONDS = 120


class ClusterError(Exception):
    """Why the cluster could not do what was asked, in one line fit to print."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current context)")


def kubeconfig_path(explicit: str | None) -> str:
    return explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """A client for the kubeconfig's context; ClusterError when the kubeconfig cannot be used."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig_path(kubeconfig)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        chosen = active if context is None else next((c for c in contexts if c.get("name") == context), None)
        api_client = None
        if chosen is not None:
            api_client = config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        raise ClusterError(f"cannot use the kubeconfig {path}: {_one_line(error)}") from error
    if chosen is None or api_client is None:
        names = ", ".join(sorted(str(c.get("name", "")) for c in contexts)) or "none"
        raise ClusterError(f"the kubeconfig {path} has no context {context!r} (it has: {names})")
    entry: Mapping[str, Any] = chosen.get("context") or {}
    return Cluster(api_client, context_user=str(entry.get("user", "")), namespace=str(entry.get("namespace") or ""))


class Cluster:
    """Reads and patches CheckoutRollouts for a person at a terminal; errors become ClusterError."""

    def __init__(self, api_client: Any, *, context_user: str = "", namespace: str = "") -> None:
        from kubernetes.client import CustomObjectsApi

        self.api_client = api_client
        self.context_user = context_user
        self.namespace = namespace or "default"
        self.host = str(api_client.configuration.host)
        self._custom = CustomObjectsApi(api_client)
        self._user: str | None = None

    # --- identity ----------------------------------------------------------------------------

    def user(self) -> str:
        """The authenticated user name (SelfSubjectReview), else the kubeconfig context's user entry."""
        if self._user is None:
            self._user = self._review_user() or self.context_user or "unknown"
        return self._user

    def _review_user(self) -> str:
        from kubernetes.client import AuthenticationV1Api, V1SelfSubjectReview
        from kubernetes.client.exceptions import ApiException

        body = V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
        try:
            review = AuthenticationV1Api(self.api_client).create_self_subject_review(
                body, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException:
            return ""  # an older server, or reviews not allowed: the kubeconfig's name will do
        except Exception as error:
            raise self._failure(error, verb="get", namespace=None) from error
        info = getattr(getattr(review, "status", None), "user_info", None)
        return str(getattr(info, "username", "") or "")

    # --- calls -------------------------------------------------------------------------------

    def get_rollout(self, namespace: str, name: str) -> Raw:
        return self._call(
            lambda: self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            ),
            verb="get",
            namespace=namespace,
            name=name,
        )

    def list_rollouts(self, namespace: str | None) -> list[Raw]:
        """Every rollout in a namespace, or in all of them when namespace is None."""
        if namespace is None:
            listing = self._call(
                lambda: self._custom.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT
                ),
                verb="list",
                namespace=None,
            )
        else:
            listing = self._call(
                lambda: self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
                ),
                verb="list",
                namespace=namespace,
            )
        return list(listing.get("items", []))

    def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> Raw:
        """A merge patch of metadata.annotations; a None value removes the key."""
        body = {"metadata": {"annotations": dict(annotations)}}
        return self._call(
            lambda: self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            verb="patch",
            namespace=namespace,
            name=name,
        )

    def remove_annotation_if(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Remove key only while it still holds value (a JSON patch test); False when it moved on."""
        from kubernetes.client.exceptions import ApiException

        patch = remove_if_unchanged(pointer("metadata", "annotations", key), value)
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type=JSON_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status in GONE_OR_CHANGED:
                return False
            raise self._failure(error, verb="patch", namespace=namespace, name=name) from error
        except Exception as error:
            raise self._failure(error, verb="patch", namespace=namespace, name=name) from error
        return True

    def follow(self, namespace: str, name: str, *, timeout: float | None = None) -> Generator[Raw | None]:
        """The rollout now, then again on every change (None once deleted), until timeout seconds pass.

        Uses the watch API; when watching is not allowed, polls every POLL_SECONDS instead.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self.get_rollout(namespace, name)
        yield current
        watching = True
        while deadline is None or time.monotonic() < deadline:
            remaining = WATCH_CHUNK_SECONDS if deadline is None else max(0.5, deadline - time.monotonic())
            try:
                changes = self._watch(namespace, name, current, remaining) if watching else self._poll(namespace, name)
                for changed in changes:
                    yield changed
                    if changed is None:
                        return
                    current = changed
            except _WatchRefusedError:
                watching = False
            except NotFoundError:
                yield None
                return

    def _poll(self, namespace: str, name: str) -> Iterator[Raw]:
        time.sleep(POLL_SECONDS)
        yield self.get_rollout(namespace, name)

    def _watch(self, namespace: str, name: str, current: Raw, seconds: float) -> Iterator[Raw | None]:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            events = stream.stream(  # type: ignore[no-untyped-call]
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=_version(current),
                timeout_seconds=max(1, int(seconds)),
                _request_timeout=seconds + REQUEST_TIMEOUT,
            )
            for event in events:
                kind, obj = event.get("type"), event.get("object")
                if kind == "DELETED":
                    yield None
                    return
                if kind in ("ADDED", "MODIFIED") and isinstance(obj, dict):
                    yield cast(Raw, obj)
        except ApiException as error:
            if error.status in (403, 405):
                raise _WatchRefusedError from error
            if error.status != 410:  # 410: the version expired; the caller starts a new watch
                raise self._failure(error, verb="watch", namespace=namespace, name=name) from error
            yield self.get_rollout(namespace, name)
        except Exception as error:
            raise self._failure(error, verb="watch", namespace=namespace, name=name) from error
        finally:
            stream.stop()  # type: ignore[no-untyped-call]

    def _call(self, call: Callable[[], Any], *, verb: str, namespace: str | None, name: str | None = None) -> Raw:
        try:
            return cast(Raw, call())
        except Exception as error:
            raise self._failure(error, verb=verb, namespace=namespace, name=name) from error

    # --- errors ------------------------------------------------------------------------------

    def _failure(
        self, error: BaseException, *, verb: str, namespace: str | None, name: str | None = None
    ) -> ClusterError:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(error, ClusterError):
            return error
        if isinstance(error, HTTPError | OSError):
            return ClusterError(f"cannot reach the cluster at {self.host}: {connection_reason(error)}")
        if not isinstance(error, ApiException):
            return ClusterError(f"a request to the cluster at {self.host} failed: {type(error).__name__}: {error}")
        message = server_message(error)
        if error.status == 404 and name is not None:
            if f'"{name}"' not in message:  # not the object but the resource type is missing
                return NotFoundError(f"no {KIND} {namespace}/{name}: the cluster does not serve {PLURAL}.{GROUP}")
            return NotFoundError(f"no {KIND} {namespace}/{name}")
        if error.status == 404:
            return ClusterError(f"the cluster at {self.host} does not serve {PLURAL}.{GROUP} (is the CRD installed?)")
        if error.status == 401:
            return ClusterError(f"the cluster at {self.host} does not accept your credentials (HTTP 401)")
        if error.status == 403 and is_rbac_denial(message):
            where = f"in {namespace}" if namespace else "across namespaces"
            return ClusterError(f"you ({self.user_for_errors()}) may not {verb} {PLURAL} {where}")
        target = f"{namespace}/{name}" if name else PLURAL
        if error.status in (400, 403, 409, 422):
            return RefusedError(f"the cluster refused to {verb} {target}: {message} (HTTP {error.status})")
        return ClusterError(f"the cluster at {self.host} failed to {verb} {target}: {message} (HTTP {error.status})")

    def user_for_errors(self) -> str:
        with contextlib.suppress(ClusterError):
            return self.user()
        return self.context_user or "unknown"


class RefusedError(ClusterError):
    """The API server understood and refused the request: admission, validation, a conflict."""


class NotFoundError(ClusterError):
    """No such rollout (or no such resource type)."""


class _WatchRefusedError(Exception):
    pass


def is_rbac_denial(message: str) -> bool:
    return "cannot " in message and "denied request" not in message and "admission" not in message


def _version(obj: Raw) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def connection_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words: the root cause in urllib3's chain of wrappers."""
    seen: set[int] = set()
    cause: BaseException | None = error
    chain: list[BaseException] = []
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        nested = getattr(cause, "reason", None)
        cause = nested if isinstance(nested, BaseException) else (cause.__cause__ or cause.__context__)
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "cannot resolve the host name"
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"its certificate is not trusted ({item.verify_message})"
        if isinstance(item, ssl.SSLError):
            return f"TLS failed ({item.reason or item})"
        if isinstance(item, TimeoutError | socket.timeout) or "timed out" in str(item).lower():
            return "timed out"
    text = _one_line(str(chain[-1]))
    refused = "connection refused" in text.lower() or "errno 111" in text.lower()
    return "connection refused" if refused else text


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())
