"""``advlab serve`` against requests drawn from its own OpenAPI description (hypothesis), and its
query accounting under concurrent load with malformed requests mixed in: every answer is JSON
with a documented status, and every labelled image is counted exactly once."""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advlab.serve import BackgroundServer, ServeConfig, create_app

SHAPE = (1, 8, 8)
D = 64
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url: str, method: str, path: str, body: bytes | None = None,
             ctype: str | None = "application/json") -> tuple[int, object]:
    headers = {"Content-Type": ctype} if ctype else {}
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with OPENER.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())  # every error is JSON too


@pytest.fixture(scope="module")
def server(trained_softmax):  # type: ignore[no-untyped-def]
    cfg = ServeConfig(in_shape=SHAPE, num_classes=10, max_batch=16, max_body_bytes=100_000)
    with BackgroundServer(create_app(trained_softmax, cfg)) as srv:
        status, spec = _request(srv.url, "GET", "/openapi.json")
        assert status == 200
        yield srv, spec


def _documented(spec: dict, path: str, method: str) -> set[int]:
    """Statuses the description documents for ``method path`` (404/405 for anything else)."""
    op = spec["paths"].get(path, {}).get(method.lower())
    if op is None:
        return {404, 405}
    return {int(s) for s in op["responses"] if s.isdigit()} | {404, 405}


PIXEL = st.floats(0, 1, allow_nan=False, width=32)
ODD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                st.text(max_size=4), st.none(), st.booleans())
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
                       lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c,
                                                                                   max_size=3)),
                       max_leaves=12)


@st.composite
def predict_bodies(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A body for POST /predict and, when it is valid, its number of images."""
    kind = draw(st.sampled_from(["valid", "valid-nested", "odd-value", "wrong-length", "too-many",
                                 "not-inputs", "json-value", "bytes", "deep", "nan-token", "empty"]))
    n = draw(st.integers(1, 4))
    if kind == "valid":
        rows = [draw(st.lists(PIXEL, min_size=D, max_size=D)) for _ in range(n)]
        return json.dumps({"inputs": rows}).encode(), n
    if kind == "valid-nested":
        row = draw(st.lists(PIXEL, min_size=D, max_size=D))
        return json.dumps({"inputs": [[[row[i * 8:(i + 1) * 8] for i in range(8)]]] * n}).encode(), n
    if kind == "odd-value":
        row = [0.5] * D
        row[draw(st.integers(0, D - 1))] = draw(ODD)
        try:
            return json.dumps({"inputs": [row]}, allow_nan=True).encode(), None
        except (TypeError, ValueError, OverflowError):
            return b'{"inputs": [[1e999]]}', None
    if kind == "wrong-length":
        length = draw(st.integers(0, 200).filter(lambda k: k != D))
        return json.dumps({"inputs": [[0.5] * length]}).encode(), None
    if kind == "too-many":
        return json.dumps({"inputs": [[0.5] * D] * 17}).encode(), None
    if kind == "not-inputs":
        key = draw(st.text(max_size=8).filter(lambda k: k != "inputs"))
        return json.dumps({key: [[0.5] * D]}).encode(), None
    if kind == "json-value":
        return json.dumps(draw(JSONISH)).encode(), None
    if kind == "bytes":
        return draw(st.binary(max_size=200)), None
    if kind == "deep":
        depth = draw(st.integers(50, 20_000))
        return (b"[" * depth + b"]" * depth), None
    if kind == "nan-token":
        return b'{"inputs": [[NaN' + b", 0.5" * (D - 1) + b"]]}", None
    return b"", None


ROUTES = st.one_of(st.sampled_from(["/predict", "/info", "/stats", "/health", "/openapi.json"]),
                   st.text(alphabet="abcdefghij/._-%", max_size=12).map(lambda s: "/" + s))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=ROUTES, body=predict_bodies(),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None]))
def test_every_answer_is_json_with_a_documented_status(server, method, path, body, ctype):  # type: ignore[no-untyped-def]
    srv, spec = server
    data, n = body
    status, answer = _request(srv.url, method, path, data if method in ("POST", "PUT") else None, ctype)
    assert isinstance(answer, dict)
    assert status in _documented(spec, path, method), (status, answer)
    assert status != 500, answer  # a well-behaved model never fails
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"]
    if method == "POST" and path == "/predict" and status == 200:
        assert n is not None and ctype is not None and ctype.startswith("application/json")
        assert len(answer["labels"]) == n and all(0 <= v < 10 for v in answer["labels"])
    is_json = ctype is not None and ctype.startswith("application/json")
    if method == "POST" and path == "/predict" and n is not None and is_json:
        assert status == 200, answer  # valid requests are answered
    assert _request(srv.url, "GET", "/health")[0] == 200  # and the server is still alive


def test_accounting_is_exact_under_concurrent_load_with_malformed_requests(trained_softmax):  # type: ignore[no-untyped-def]
    budget = 300
    cfg = ServeConfig(in_shape=SHAPE, num_classes=10, max_batch=8, query_budget=budget)
    labelled = []
    statuses: list[int] = []
    lock = threading.Lock()
    with BackgroundServer(create_app(trained_softmax, cfg)) as srv:
        def client(seed: int) -> None:
            rng = random.Random(seed)
            while True:
                if rng.random() < 0.3:  # malformed: never charged
                    body = rng.choice([b"{", b'{"inputs": [[2.0]]}', b'{"inputs": "x"}', b"[" * 5000])
                    status, _ = _request(srv.url, "POST", "/predict", body)
                    with lock:
                        statuses.append(status)
                    continue
                n = rng.randint(1, 8)
                status, ans = _request(srv.url, "POST", "/predict",
                                       json.dumps({"inputs": [[0.5] * D] * n}).encode())
                with lock:
                    statuses.append(status)
                    if status == 200:
                        assert isinstance(ans, dict)
                        labelled.append(len(ans["labels"]))
                if status == 403:
                    with lock:
                        if sum(labelled) >= budget - 7:  # budget (nearly) spent: stop
                            return
                    if n == 1:
                        return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        status, stats = _request(srv.url, "GET", "/stats")
    assert status == 200 and isinstance(stats, dict)
    assert stats["queries"] == sum(labelled)  # every labelled image counted, exactly once
    assert stats["requests"] == len(labelled) and stats["reserved"] == 0
    assert budget - 7 <= stats["queries"] <= budget  # never over the budget
    assert stats["budget_left"] == budget - stats["queries"]
    assert stats["rejected"] == sum(1 for s in statuses if s >= 400)
    assert set(statuses) <= {200, 400, 403, 413, 422}
