"""Fuzzed CheckoutRollouts: kube-apiserver and ``parse_rollout`` (lint, the operator) must agree.

Hypothesis mutates the valid examples of ``examples/gates`` (drops, duplicates and retypes fields,
puts numbers out of range, writes bad durations and tolerances, random and huge strings, nested
garbage, unknown fields) into at least ``CHECKOUT_GATES_FUZZ_COUNT`` (default 1,200) distinct
documents. Each is sent to kube-apiserver as a server-side dry run (``dryRun=All``, strict field
validation, as ``kubectl apply`` does) on a small thread pool, and given to ``parse_rollout``.

Properties:

* whenever kube-apiserver refuses, its answer names the field (a ``spec...`` path);
* kube-apiserver and ``parse_rollout`` of the document sent (what ``checkout-gates lint`` says)
  agree on accept/refuse; so do kube-apiserver and ``parse_rollout`` of the object it would store
  (what the operator reads). A document JSON cannot carry (NaN, Infinity: ``kubectl`` cannot send
  it) must be refused by lint too. Every disagreement is collected and reported, not just the first.

Then a sample of accepted-but-odd objects is created for real while the operator runs, next to a
healthy rollout: each odd one gets a status (a clear condition, or progress), the operator process
stays up with no unhandled traceback in its log, and the healthy rollout is still promoted.

The seed is fixed by default (CI repeats the same documents); ``CHECKOUT_GATES_FUZZ_SEED=<n>`` or
``=random`` explores others (the seed is printed either way).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import math
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes import config
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.crd import crd_manifest
from checkout_gates.api.quantities import DURATION_PATTERN, TOLERANCE_PATTERN
from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.spec import GROUP, PLURAL, VERSION
from checkout_gates_lab.demo.manifests import http_route
from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus
from tests.unit.bad_specs import EXAMPLE_FILES, load_example

from .checkout_traffic import CheckoutTraffic
from .operator_harness import Operator, Rollout, wait_for

pytestmark = pytest.mark.integration

COUNT = int(os.environ.get("CHECKOUT_GATES_FUZZ_COUNT", "1200"))
# A fixed seed by default, so that CI is repeatable; CHECKOUT_GATES_FUZZ_SEED=random explores new ground.
_SEED_TEXT = os.environ.get("CHECKOUT_GATES_FUZZ_SEED", "20261127")
SEED = random.randrange(1, 2**31) if _SEED_TEXT == "random" else int(_SEED_TEXT)
ODD_SAMPLE = 30
WORKERS = 6

Path = tuple[str | int, ...]
SPEC_SCHEMA: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
EXAMPLES = {path.name: load_example(path.name) for path in EXAMPLE_FILES}


# --- the generator ------------------------------------------------------------------------------


def schema_at(path: Path) -> dict[str, Any] | None:
    """The CRD schema node of a path below spec, or None where the schema does not go."""
    node: dict[str, Any] | None = SPEC_SCHEMA
    for part in path:
        if node is None:
            return None
        node = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
    return node


def paths_of(value: Any, prefix: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths_of(child, (*prefix, index))


def text_of(path: Path) -> str:
    out = "spec"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parent_of(spec: dict[str, Any], path: Path) -> Any:
    node: Any = spec
    for part in path[:-1]:
        node = node[part]
    return node


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
garbage = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
durationish = st.one_of(
    st.sampled_from(
        [
            "0s",
            "0.0ms",
            "00m",
            "1d",
            "1w",
            "10 m",
            "-5s",
            "+5s",
            "1.5.5s",
            "1e3s",
            "5us",
            "5µs",
            "1H",
            "1S",
            ".5s",
            "5.s",
            "1h1h",
            "1ms",
            "0.001ms",
            "9999999999999999h",
            "99999999999999999999h",
            "2562047h",
            "2562048h",
            "106751d",
            "720h",
            "8760h",
            "1h30m",
            "30s\n",
            " 30s",
            "",
            "s",
            "10",
            "5m0s",
            "1.5h",
        ]
    ),
    st.from_regex(re.compile(r"[0-9]{1,22}(\.[0-9]{1,3})?(ms|s|m|h|d|ns|us)"), fullmatch=True),
    st.from_regex(re.compile(r"([0-9]{1,4}(ms|s|m|h)){1,4}"), fullmatch=True),
)
toleranceish = st.one_of(
    st.sampled_from(
        ["0", "0pp", "0%", "-1pp", "1.pp", ".5pp", "5 pp", "5PP", "1e2%", "100%", "1000pp", "0.5pp\n", "5%%", "NaN", ""]
    ),
    st.from_regex(re.compile(r"[0-9]{1,30}(\.[0-9]{1,5})?(pp|%)?"), fullmatch=True),
)
nameish = st.one_of(
    st.sampled_from(["", "-a", "a-", "A", "a_b", "a.b", "a" * 63, "a" * 64, "ä", "a b", "0", "auth-approval"]),
    st.from_regex(re.compile(r"[a-z0-9-]{1,70}"), fullmatch=True),
)
urlish = st.one_of(
    st.sampled_from(
        [
            "http://",
            "https://a",
            "ftp://a",
            "http://a b",
            "http://a\tb",
            "http://a\u00a0b",
            "http://a\u2003b",
            "http://a\vb",
            "http://a\fb",
            "HTTP://a",
            "http://ä",
            "//a",
            "http://a/" + "x" * 2100,
            "http:// ",
        ]
    ),
    st.builds(lambda s: "http://" + s, st.text(min_size=1, max_size=20)),
)
labelish = st.one_of(
    st.sampled_from(["", "1a", "a-b", "_", "a.b", "ä", "A_1", "le", "__name__"]),
    st.text(min_size=0, max_size=10),
)


def numbers_for(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    special: list[Any] = [0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -0.0, 0.5, 1e-320, 1e300, -1e308, 5.0]
    for bound in ("minimum", "maximum"):
        if bound in node:
            value = node[bound]
            special += [value, value - 1, value + 1, value - 0.5, value + 1e-9, value - 1e-9]
    return st.one_of(
        st.sampled_from(special),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.integers(min_value=-1000, max_value=10**6),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def strings_for(path: Path, node: dict[str, Any]) -> st.SearchStrategy[Any]:
    pattern = node.get("pattern", "")
    options: list[st.SearchStrategy[Any]] = [st.text(max_size=40)]
    if pattern == DURATION_PATTERN:
        options.append(durationish)
    elif pattern == TOLERANCE_PATTERN:
        options.append(toleranceish)
    elif "https?" in pattern:
        options.append(urlish)
    elif pattern.startswith("^[a-z0-9]"):
        options.append(nameish)
    elif pattern:
        options.append(labelish)
    if "enum" in node:
        options.append(st.sampled_from([v.upper() for v in node["enum"]] + ["", "other", " threshold"]))
    if "maxLength" in node:
        limit = node["maxLength"]
        options.append(st.sampled_from(["x" * limit, "x" * (limit + 1), "é" * limit, "é" * (limit + 1)]))
    if path and path[-1] in ("good", "total", "count", "quantile", "gauge", "samples", "exposure"):
        options.append(
            st.sampled_from(
                [
                    "sum(rate(x[5m])",
                    "{{variant}}",
                    "up{{{unknown}}}",
                    'sum(increase(payment_authorizations_total{variant="{{variant}}"}[{{window}}]))',
                    "vector(0)/0",
                    "1/0",
                    "-1",
                    "{{name}}{{namespace}}{{service}}",
                    "x" * 4097,
                ]
            )
        )
    return st.one_of(*options)


@dataclass
class Case:
    index: int
    document: dict[str, Any]
    mutations: list[str]
    server: str = ""  # "accepted" or the refusal's message
    server_field: bool = True
    server_object: dict[str, Any] | None = None
    lint: list[str] | None = None  # None: accepted; else problems
    operator: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def server_accepted(self) -> bool:
        return self.server == "accepted"


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    example = draw(st.sampled_from(sorted(EXAMPLES)))
    document = copy.deepcopy(EXAMPLES[example])
    spec = document["spec"]
    done: list[str] = [example]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(paths_of(spec))
        path = draw(st.sampled_from(paths)) if paths else ()
        if not path:
            break
        node = schema_at(path) or {}
        parent = parent_of(spec, path)
        last = path[-1]
        kinds = ["drop", "null", "retype", "garbage", "add-unknown", "value"]
        if isinstance(last, int):
            kinds += ["duplicate", "swap"]
        if isinstance(parent, dict):
            kinds += ["add-known", "copy-sibling"]
        kind = draw(st.sampled_from(kinds))
        where = text_of(path)
        if kind == "drop":
            del parent[last]
        elif kind == "null":
            parent[last] = None
        elif kind == "retype":
            current = parent[last]
            choices: list[Any] = ["5", "true", "30s", 5, 5.5, True, False, [], {}, ["x"], {"a": 1}]
            parent[last] = draw(st.sampled_from([c for c in choices if type(c) is not type(current)]))
        elif kind == "garbage":
            parent[last] = draw(garbage)
        elif kind == "add-unknown":
            target = parent[last] if isinstance(parent[last], dict) else parent
            name = draw(st.sampled_from(["foo", "setweight", "Window", "gate", "spec", "status", "x-y", "名前"]))
            if isinstance(target, dict):
                target[name] = draw(json_scalars)
                where = f"{where} (+{name})"
        elif kind == "value":
            kind_of = node.get("type")
            if kind_of in ("integer", "number"):
                parent[last] = draw(numbers_for(node))
            elif kind_of == "string":
                parent[last] = draw(strings_for(path, node))
            elif kind_of == "boolean":
                parent[last] = draw(st.sampled_from(["true", "yes", 1, 0, "True", None]))
            elif kind_of == "array":
                parent[last] = draw(st.sampled_from([[], [None], [[]], [{}], "a", {}]))
            else:
                parent[last] = draw(st.sampled_from([{}, [], "x", 0]))
        elif kind == "duplicate":
            parent.insert(last, copy.deepcopy(parent[last]))
        elif kind == "swap":
            other = draw(st.integers(min_value=0, max_value=len(parent) - 1))
            parent[last], parent[other] = parent[other], parent[last]
        elif kind in ("add-known", "copy-sibling"):
            level = schema_at(path[:-1]) or {}
            known = sorted(set(level.get("properties", {})) - set(parent))
            if known:
                name = draw(st.sampled_from(known))
                if kind == "copy-sibling":
                    parent[name] = copy.deepcopy(parent[last])
                else:
                    sub = level["properties"][name]
                    if sub.get("type") in ("integer", "number"):
                        parent[name] = draw(numbers_for(sub))
                    elif sub.get("type") == "string":
                        parent[name] = draw(strings_for((*path[:-1], name), sub))
                    else:
                        parent[name] = draw(garbage)
                where = f"{text_of(path[:-1])}.{name}"
        done.append(f"{kind} {where}")
    return document, done


# Disagreements found by earlier runs (and by probing kube-apiserver by hand), kept as fixed cases.
KNOWN: list[tuple[str, Path, Any]] = [
    ("card-payments.yaml", ("gates", 0, "segmentBy"), None),  # kube-apiserver drops a null field
    ("card-payments.yaml", ("gates", 1, "minSamples"), None),
    ("refund-flow.yaml", ("analysis",), None),
    ("card-payments.yaml", ("gates", 1, "min"), True),  # lax pydantic took true for 1
    ("card-payments.yaml", ("gates", 3, "minSamples"), "5"),  # ... and "5" for 5
    ("card-payments.yaml", ("gates", 2, "critical"), 1),
    ("card-payments.yaml", ("gates", 3, "minSamples"), 5.0),  # kube-apiserver takes 5.0 (stores 5)
    ("card-payments.yaml", ("steps", 7, "setWeight"), 100.0),  # ... but not here: its CEL rule wants an int
    ("card-payments.yaml", ("gates", 3, "minSamples"), 2**63),  # beyond int64
    ("refund-flow.yaml", ("gates", 1, "max"), math.inf),  # JSON cannot carry it
    ("card-payments.yaml", ("gates", 3, "max"), math.nan),
    ("card-payments.yaml", ("prometheus", "address"), "http://a\u00a0b"),  # Go's \s is ASCII, Rust's Unicode
    ("card-payments.yaml", ("prometheus", "address"), "http://a\vb"),
    ("card-payments.yaml", ("analysis", "interval"), "99999999999999999999h"),  # beyond Go's durations
    ("card-payments.yaml", ("analysis", "interval"), "2562048h"),
    ("card-payments.yaml", ("analysis", "interval"), "8760.0000000001h"),  # 360 ns over the bound
    ("card-payments.yaml", ("analysis", "interval"), "8759h60m"),
    ("card-payments.yaml", ("steps", 4), {"pause": {"duration": "0.0000001ms"}}),  # 0 ns to Go, yet not 0
    ("card-payments.yaml", ("analysis", "foo"), None),  # an unknown field, even null, is refused
]


def known_cases() -> list[tuple[dict[str, Any], list[str]]]:
    cases = []
    for example, path, value in KNOWN:
        document = copy.deepcopy(EXAMPLES[example])
        parent_of(document["spec"], path)[path[-1]] = value
        cases.append((document, [example, f"known {text_of(path)} = {value!r}"]))
    return cases


def generate(count: int, seed_value: int) -> list[tuple[dict[str, Any], list[str]]]:
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for case in known_cases():
        found[json.dumps(case[0], sort_keys=True, default=str)] = case

    @seed(seed_value)
    @settings(
        max_examples=int(count * 1.3),
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_documents())
    def collect(case: tuple[dict[str, Any], list[str]]) -> None:
        key = json.dumps(case[0], sort_keys=True, default=str)
        found.setdefault(key, case)

    collect()
    return list(found.values())[:count]


# --- kube-apiserver ------------------------------------------------------------------------------

FIELD = re.compile(r"(^|[\s\"'.(])\.?spec(\.[A-Za-z_][\w-]*|\[\d+\])*")


def _api(kube: LocalCluster | ExternalCluster) -> Any:
    client: ApiClient = config.new_client_from_config(config_file=str(kube.kubeconfig))  # type: ignore[no-untyped-call]
    client.configuration.connection_pool_maxsize = WORKERS * 2
    return CustomObjectsApi(client)


def dry_run(api: Any, namespace: str, case: Case) -> None:
    body = copy.deepcopy(case.document)
    body["metadata"] = {"name": f"fz-{case.index:05d}", "namespace": namespace}
    try:
        json.dumps(body, allow_nan=False)
    except ValueError:
        case.server = "not sendable: JSON has no NaN or Infinity (kubectl refuses to convert it)"
        return
    for attempt in range(5):
        try:
            stored = api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict"
            )
        except ApiException as error:
            if error.status in (429, 500, 503, 504) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            try:
                answer = json.loads(error.body or "{}")
            except ValueError:
                answer = {}
            message = str(answer.get("message") or error.body or error.reason)
            causes = [c.get("field", "") for c in (answer.get("details") or {}).get("causes") or []]
            case.server = f"HTTP {error.status}: {message}"
            case.server_field = bool(FIELD.search(message)) or any(c.startswith(("spec", ".spec")) for c in causes)
            return
        case.server = "accepted"
        case.server_object = stored
        return


def parse(document: dict[str, Any]) -> list[str] | None:
    parsed = parse_rollout(document)
    if isinstance(parsed, CheckoutRollout):
        return None
    return [str(problem) for problem in parsed]


# --- the run, shared by the tests of this module ---------------------------------------------------


@dataclass
class FuzzRun:
    seed: int
    cases: list[Case]
    seconds: float

    def disagreements(self) -> list[tuple[str, Case]]:
        out: list[tuple[str, Case]] = []
        for case in self.cases:
            if case.server.startswith("not sendable"):
                if case.lint is None:
                    out.append(("lint accepts what kubectl cannot send", case))
                continue
            if case.server_accepted and case.lint is not None:
                out.append(("kube-apiserver accepts, lint refuses", case))
            if not case.server_accepted and case.lint is None:
                out.append(("kube-apiserver refuses, lint accepts", case))
            if case.server_accepted and case.operator is not None:
                out.append(("kube-apiserver stores what the operator refuses", case))
        return out

    def report(self) -> str:
        lines = [
            f"fuzz seed {self.seed}: {len(self.cases)} documents in {self.seconds:.1f}s; "
            f"kube-apiserver accepted {sum(c.server_accepted for c in self.cases)}, "
            f"lint accepted {sum(c.lint is None for c in self.cases)}"
        ]
        disagreements = self.disagreements()
        by_kind = Counter(kind for kind, _ in disagreements)
        lines.append(f"{len(disagreements)} disagreement(s): {dict(by_kind) or 'none'}")
        for kind, case in disagreements[:40]:
            lines.append(f"- {kind}: #{case.index} {'; '.join(case.mutations)}")
            lines.append(f"    server: {case.server[:300]}")
            lines.append(f"    lint:   {(case.lint or ['accepted'])[:3]}")
            if case.operator is not None:
                lines.append(f"    operator: {case.operator[:3]}")
        nameless = [c for c in self.cases if not c.server_accepted and not c.server_field]
        lines.append(f"{len(nameless)} refusal(s) that name no field")
        for case in nameless[:20]:
            lines.append(f"- #{case.index} {'; '.join(case.mutations)}: {case.server[:300]}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def fuzz_namespace(kubectl: Kubectl, cluster_ready: Kubectl) -> Iterator[str]:
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def fuzz_run(kube: LocalCluster | ExternalCluster, fuzz_namespace: str) -> FuzzRun:
    started = time.monotonic()
    generated = generate(COUNT, SEED)
    cases = [Case(index, document, mutations) for index, (document, mutations) in enumerate(generated)]
    api = _api(kube)
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda case: dry_run(api, fuzz_namespace, case), cases))
    for case in cases:
        case.lint = parse(case.document)
        if case.server_object is not None:
            stored = {k: v for k, v in case.server_object.items() if k != "status"}
            case.operator = parse(stored)
    run = FuzzRun(SEED, cases, time.monotonic() - started)
    print(run.report())
    return run


def test_at_least_a_thousand_distinct_documents(fuzz_run: FuzzRun) -> None:
    assert len(fuzz_run.cases) >= 1000, fuzz_run.report()
    accepted = sum(case.server_accepted for case in fuzz_run.cases)
    # Both sides of the border are exercised, not only garbage.
    assert 50 <= accepted <= len(fuzz_run.cases) - 500, fuzz_run.report()


def test_every_refusal_names_the_field(fuzz_run: FuzzRun) -> None:
    nameless = [case for case in fuzz_run.cases if not case.server_accepted and not case.server_field]
    assert not nameless, fuzz_run.report()


def test_lint_and_the_operator_agree_with_kube_apiserver(fuzz_run: FuzzRun) -> None:
    assert not fuzz_run.disagreements(), fuzz_run.report()


def test_every_lint_problem_names_a_field(fuzz_run: FuzzRun) -> None:
    vague = [case for case in fuzz_run.cases if case.lint and not all(p.startswith("spec") for p in case.lint)]
    assert not vague, [(c.index, c.mutations, c.lint) for c in vague[:10]]


# --- accepted-but-odd objects, for real, with the operator running -----------------------------------


def _oddness(case: Case) -> tuple[int, int]:
    return (-len(case.mutations), case.index)


def odd_documents(run: FuzzRun, prometheus_url: str, count: int) -> list[dict[str, Any]]:
    """Accepted documents, most mutated first, one in three pointed at the test Prometheus."""
    accepted = sorted((c for c in run.cases if c.server_accepted and c.lint is None), key=_oddness)
    picked = accepted[:count]
    documents = []
    for number, case in enumerate(picked):
        document = copy.deepcopy(case.document)
        if number % 3 == 0:
            document["spec"]["prometheus"]["address"] = prometheus_url
        documents.append(document)
    return documents


EXTRA_ODD: list[tuple[str, dict[str, str]]] = [
    ("malformed-promql", {"count": "sum(rate(payment_duplicate_charges_total[5m])"}),
    ("no-series", {"count": 'sum(nothing_here_total{variant="{{variant}}"})'}),
    ("negative", {"count": "-5"}),
    ("nan", {"count": "vector(0) / 0"}),
    ("inf", {"count": "vector(1) / 0"}),
]


def test_odd_objects_get_a_status_and_the_operator_keeps_serving(
    fuzz_run: FuzzRun,
    kubectl: Kubectl,
    cluster_ready: Kubectl,
    operator: Operator,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    new_rollout: Callable[..., Rollout],
) -> None:
    assert operator.process is not None
    pid = operator.process.pid
    healthy = new_rollout(
        steps=[{"setWeight": 10}, {"gate": {"pass": ["auth-approval"], "window": "4s"}}, {"setWeight": 100}]
    )
    healthy.apply()

    documents = odd_documents(fuzz_run, scraping_prometheus.url, ODD_SAMPLE)
    for name, signal in EXTRA_ODD:
        gate = {"name": name, **signal, "max": 0, "critical": True, "window": "5s"}
        extra = copy.deepcopy(EXAMPLES["card-payments.yaml"])
        extra["spec"]["prometheus"] = {"address": scraping_prometheus.url, "timeout": "2s"}
        extra["spec"]["gates"] = [gate]
        extra["spec"]["steps"] = [{"setWeight": 1}, {"gate": {"pass": [name], "window": "10s"}}, {"setWeight": 100}]
        extra["spec"]["analysis"] = {"interval": "2s", "inconclusiveLimit": 3}
        extra["metadata"]["name"] = name
        documents.append(extra)
    created: list[tuple[str, str]] = []
    for number, document in enumerate(documents):
        namespace = f"odd-{uuid.uuid4().hex[:5]}-{number}"
        kubectl("create", "namespace", namespace)
        document["metadata"]["namespace"] = namespace
        document["metadata"]["name"] = document["metadata"]["name"][:40]
        if number >= len(documents) - len(EXTRA_ODD):
            # These must be judged: a setWeight step completes only once a real route confirms it.
            spec = document["spec"]
            route = http_route(
                spec["routing"]["gatewayAPI"]["httpRoute"],
                namespace,
                spec["stable"]["service"],
                spec["canary"]["service"],
            )
            kubectl("apply", "-f", "-", input=yaml.safe_dump(route))
        kubectl("apply", "-f", "-", "--validate=strict", input=yaml.safe_dump(document))
        created.append((namespace, document["metadata"]["name"]))

    def statuses() -> dict[tuple[str, str], dict[str, Any]]:
        listing = kubectl.json("get", "checkoutrollouts", "-A")
        return {
            (item["metadata"]["namespace"], item["metadata"]["name"]): item.get("status") or {}
            for item in listing["items"]
        }

    def clear(status: dict[str, Any]) -> bool:
        conditions = status.get("conditions") or []
        return bool(conditions) and all(c.get("reason") for c in conditions) and bool(status.get("phase") or conditions)

    found = wait_for(
        lambda: (s := statuses()) and all(clear(s.get(key, {})) for key in created) and s,
        "a status on every odd rollout",
        timeout=120,
    )
    for key in created:
        status = found[key]
        invalid = [c for c in status["conditions"] if c["type"] == "SpecValid" and c["status"] == "False"]
        assert not invalid, f"{key}: the operator refuses what kube-apiserver accepted: {invalid}"

    # The explicit odd gates: Inconclusive with the reason, which halts on the inconclusive limit.
    for namespace, name in created[-len(EXTRA_ODD) :]:
        status = wait_for(
            lambda ns=namespace, n=name: (s := statuses()[(ns, n)]).get("gates") and s,  # type: ignore[misc]
            f"{name} evaluated",
            timeout=60,
        )
        gate = status["gates"][0]
        expected = {
            "malformed-promql": ("Inconclusive", "parse error"),
            "no-series": ("Inconclusive", "no data for canary"),
            "negative": ("Inconclusive", "negative"),
            "nan": ("Inconclusive", "NaN"),
            "inf": ("Inconclusive", "+Inf"),
        }[name]
        assert (gate["verdict"], expected[1] in gate["reason"]) == (expected[0], True), gate
    healthy.wait_phase("Promoted", timeout=120)

    assert operator.process is not None and operator.process.poll() is None and operator.process.pid == pid
    for namespace, _ in created:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    # A clean shutdown too: nothing left running that fails on the way out.
    operator.stop()
    log = operator.logs.read_text(errors="replace")
    operator.start()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 : log.index("Traceback") + 3000]
    assert "reconcile failed" not in log
    assert '"operator stopped"' in log
