"""The label-only prediction API (`advlab serve`): a real server on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import pytest
import torch

from advlab.serve import BackgroundServer, HTTPOracle, OracleError, ServeConfig, create_app
from advlab.serve.server import bind_loopback, check_loopback

SHAPE = (1, 8, 8)


def _post(url: str, body: bytes, ctype: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": ctype})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _inputs(n: int, value: float = 0.5) -> bytes:
    return json.dumps({"inputs": [[value] * 64] * n}).encode()


@pytest.fixture(scope="module")
def served(trained_softmax):  # type: ignore[no-untyped-def]
    cfg = ServeConfig(in_shape=SHAPE, num_classes=10, max_batch=32, max_body_bytes=200_000,
                      query_budget=500)
    app = create_app(trained_softmax, cfg)
    with BackgroundServer(app) as srv:
        yield srv, app


def test_labels_match_the_model_and_queries_are_counted(served, trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    srv, app = served
    assert srv.port > 0 and srv.url.startswith("http://127.0.0.1:")
    x, _ = digits_test.tensors()
    oracle = HTTPOracle(srv.url, batch_size=32)
    before = app.state.stats.queries
    labels = oracle.predict(x[:70])  # 3 requests
    with torch.no_grad():
        assert torch.equal(labels, trained_softmax(x[:70]).argmax(1))
    assert oracle.queries == 70 and oracle.requests == 3
    assert app.state.stats.queries - before == 70
    info = oracle.info()
    assert info["in_shape"] == list(SHAPE) and info["output"] == "labels only"
    st = oracle.stats()
    assert st["budget_left"] == 500 - st["queries"]
    # flat images are accepted too; only labels come back
    status, body = _post(srv.url, _inputs(2))
    assert status == 200 and set(body) == {"labels"} and len(body["labels"]) == 2


@pytest.mark.parametrize("body,ctype,status", [
    (b"{not json", "application/json", 400),
    (b'{"x": 1}', "application/json", 422),
    (b'{"inputs": 3}', "application/json", 422),
    (b'{"inputs": []}', "application/json", 422),
    (b'{"inputs": [[0.5, 0.5]]}', "application/json", 422),          # wrong shape
    (b'{"inputs": [[0.5], [0.5, 0.5]]}', "application/json", 422),   # ragged
    (json.dumps({"inputs": [["a"] * 64]}).encode(), "application/json", 422),
    (json.dumps({"inputs": [[True] * 64]}).encode(), "application/json", 422),
    (b'{"inputs": [[' + b",".join([b"NaN"] * 64) + b"]]}", "application/json", 422),
    (_inputs(1, 1.5), "application/json", 422),                      # out of [0, 1]
    (_inputs(1, -0.1), "application/json", 422),
    (_inputs(33), "application/json", 413),                          # batch limit
    (b" " * 300_000, "application/json", 413),                       # body limit
    (_inputs(1), "text/plain", 415),
])
def test_bad_requests_get_4xx_and_the_server_survives(served, body, ctype, status):  # type: ignore[no-untyped-def]
    srv, app = served
    q = app.state.stats.queries
    got, payload = _post(srv.url, body, ctype)
    assert got == status and "error" in payload
    assert app.state.stats.queries == q  # rejected requests are not counted as queries
    ok, _ = _post(srv.url, _inputs(1))
    assert ok == 200


def test_wrong_method_and_path(served):  # type: ignore[no-untyped-def]
    srv, _ = served
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for url, method in ((srv.url + "/predict", "GET"), (srv.url + "/nope", "GET")):
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(urllib.request.Request(url, method=method), timeout=10)
        assert 400 <= e.value.code < 500


def test_query_budget_and_rate_limit(trained_softmax):  # type: ignore[no-untyped-def]
    app = create_app(trained_softmax, ServeConfig(in_shape=SHAPE, query_budget=10, max_batch=8))
    with BackgroundServer(app) as srv:
        oracle = HTTPOracle(srv.url, batch_size=8)
        oracle.predict(torch.rand(8, *SHAPE))
        with pytest.raises(OracleError) as e:
            oracle.predict(torch.rand(8, *SHAPE))  # would exceed the budget of 10
        assert e.value.status == 403
        assert oracle.predict(torch.rand(2, *SHAPE)).shape == (2,)  # exactly the rest
        assert app.state.stats.queries == 10
    app = create_app(trained_softmax, ServeConfig(in_shape=SHAPE, rate_limit=0.5))
    with BackgroundServer(app) as srv:
        assert _post(srv.url, _inputs(1))[0] == 200
        status, body = _post(srv.url, _inputs(1))
        assert status == 429 and "rate limit" in body["error"]
        with pytest.raises(OracleError):
            HTTPOracle(srv.url, max_retries=0).predict(torch.rand(1, *SHAPE))


def test_concurrent_clients(served, trained_softmax):  # type: ignore[no-untyped-def]
    srv, _ = served
    x = torch.rand(40, *SHAPE)
    with torch.no_grad():
        want = trained_softmax(x).argmax(1)
    results: list[bool] = []

    def worker(i: int) -> None:
        results.append(bool(torch.equal(HTTPOracle(srv.url, batch_size=10).predict(x[i * 10:(i + 1) * 10]),
                                        want[i * 10:(i + 1) * 10])))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


def test_server_stops_and_only_binds_loopback(trained_softmax):  # type: ignore[no-untyped-def]
    app = create_app(trained_softmax, ServeConfig(in_shape=SHAPE))
    srv = BackgroundServer(app).start()
    port = srv.port
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        bind_loopback("example.com", 0)
    with pytest.raises(ValueError):
        ServeConfig(in_shape=SHAPE, rate_limit=0).validate()
    with pytest.raises(ConnectionError):
        HTTPOracle(f"http://127.0.0.1:{port}").predict(torch.rand(1, *SHAPE))


def test_cli_serve_and_blackbox_end_to_end(trained_softmax, tmp_path, cli_env):  # type: ignore[no-untyped-def]
    """`advlab serve` in a subprocess on a free port; `advlab blackbox --oracle URL` attacks it."""
    import subprocess
    import sys
    import time

    from advlab.checkpoint import save_model

    ckpt = tmp_path / "ckpt"
    save_model(ckpt, trained_softmax, meta={"dataset": "digits"})
    proc = subprocess.Popen([sys.executable, "-m", "advlab", "serve", str(ckpt), "--port", "0",
                             "--budget", "1000", "--max-batch", "100"],
                            env=cli_env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "serving" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            line = proc.stderr.readline()  # type: ignore[union-attr]
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        status, _ = _post(url, _inputs(1, 7.0))
        assert status == 422
        out = tmp_path / "bb.json"
        r = subprocess.run([sys.executable, "-m", "advlab", "blackbox", "--oracle", url,
                            "--dataset", "digits",
                            "--seed-size", "30", "--substitute-epochs", "3", "--train-epochs", "3",
                            "--max-queries", "200", "--n-eval", "50", "--no-eval-every-round",
                            "--out", str(out)], env=cli_env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        res = json.loads(out.read_text())
        assert res["queries"] == 120  # 30 + 30 + 60 labels for the substitute
        stats = HTTPOracle(url).stats()
        assert stats["queries"] == 120 + 2 * 50  # plus the final evaluation
        assert 0 <= res["final"]["oracle_misclassification"] <= 1
        assert proc.poll() is None  # still serving
        # a substitute ensemble, FGSM on the noise-smoothed substitute: no extra attack queries
        r = subprocess.run([sys.executable, "-m", "advlab", "blackbox", "--oracle", url,
                            "--dataset", "digits",
                            "--seed-size", "30", "--substitute-epochs", "3", "--train-epochs", "3",
                            "--max-queries", "200", "--n-eval", "50", "--no-eval-every-round",
                            "--ensemble", "2", "--craft-noise", "0.3", "--craft-samples", "4",
                            "--augment", "affine", "--out", str(out)],
                           env=cli_env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        res = json.loads(out.read_text())
        assert res["queries"] == 120 and res["settings"]["ensemble"] == 2
        assert res["settings"]["augment"]["transform"] == "Affine"
        assert res["craft_attack"]["attack"] == "EOT" and res["craft_attack"]["steps"] == 1
        assert res["final"]["ensemble"] == 2 and 0 <= res["final"]["oracle_misclassification"] <= 1
        assert HTTPOracle(url).stats()["queries"] == 2 * (120 + 2 * 50)
        bad = subprocess.run([sys.executable, "-m", "advlab", "blackbox", "--oracle", url, "--ensemble", "0"],
                             env=cli_env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and "--ensemble must be >= 1" in bad.stderr
        assert "Traceback" not in bad.stderr
        bad = subprocess.run([sys.executable, "-m", "advlab", "blackbox", "--oracle", url,
                              "--augment", "flip"],
                             env=cli_env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and "--augment must be none or affine" in bad.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bodies_must_be_utf8_on_both_parse_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """A UTF-16 body is refused (400) whether it is small or takes the chunked path."""
    from advlab.serve import _parse

    body = json.dumps({"inputs": [[0.0, 0.5, 1.0, 0.25]]}).encode("utf-16")
    for small in (len(body) + 1, 0):
        monkeypatch.setattr(_parse, "SMALL_BODY", small)
        with pytest.raises(_parse.ApiError) as info:
            _parse.parse_inputs(body, (1, 2, 2), (0.0, 1.0), 4)
        assert info.value.status == 400 and "UTF-8" in info.value.message
    monkeypatch.setattr(_parse, "SMALL_BODY", len(body) + 1)
    ok = _parse.parse_inputs(body.decode("utf-16").encode(), (1, 2, 2), (0.0, 1.0), 4)
    assert ok.shape == (1, 1, 2, 2)
