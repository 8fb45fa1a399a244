"""Latency of ``advlab serve`` under concurrent clients (issue 18).

    .venv/bin/python bench/server_load.py [--seconds 5] [--clients 1,8,32] [--batch 16]

Serves a small MNIST-shaped CNN (random weights: latency does not depend on accuracy) on a
loopback port from a background thread of this process, then for each client count runs that
many threads, each with its own keep-alive HTTP connection, posting ``/predict`` batches for
``--seconds``. Meanwhile one more thread polls ``GET /health`` every 50 ms, one posts large
bodies (``--large-batch`` images, megabytes of JSON) and one posts malformed bodies (invalid
JSON, wrong shapes, values out of range, deep nesting: each must get a 4xx). Prints p50/p99
latency of ``/predict`` and of ``/health`` per client count, checks the target that
``/health`` answers in under 100 ms (p99) while ``/predict`` is loaded, and checks that the
server's query counter equals the images labelled in 200 answers (exact accounting). Server and clients
share this machine's cores, so the numbers are an upper bound on the server's own latency.
Results go to ``bench/results/server_load.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch

from advlab.models import create_model  # noqa: E402
from advlab.serve import ServeConfig, create_app  # noqa: E402
from advlab.serve.server import BackgroundServer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def _client(port: int, bodies: list[tuple[bytes, int | None]], path: str, method: str,
            stop: threading.Event, out: list[float], errors: list[str], labelled: list[int],
            pause: float = 0.0) -> None:
    """Send ``bodies`` in turn until ``stop``; ``(body, n)``: ``n`` images expect a 200, ``None``
    a 4xx. Latencies go to ``out``, labelled image counts to ``labelled``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    i = 0
    while not stop.is_set():
        body, n = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{type(e).__name__}: {e}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        if n is None:
            if not 400 <= resp.status < 500:
                errors.append(f"malformed body answered HTTP {resp.status}")
        elif resp.status != 200:
            errors.append(f"HTTP {resp.status}")
        elif method == "POST":
            labelled.append(n)
        out.append(time.perf_counter() - t0)
        if pause:
            time.sleep(pause)
    conn.close()


MALFORMED = [b"{", b'{"inputs": "x"}', b'{"inputs": [[0.5, 0.5]]}', b'{"inputs": [[[[2.0]]]]}',
             b"[" * 50_000 + b"]" * 50_000, b'{"inputs": [[NaN]]}', b"\xff\xfe"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--large-batch", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("cnn", in_shape=(1, 28, 28), num_classes=10).eval()
    x = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    body = json.dumps({"inputs": np.round(x.numpy(), 4).tolist()}).encode()
    big = torch.rand(args.large_batch, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    large = json.dumps({"inputs": np.round(big.numpy(), 4).tolist()}).encode()
    cfg = ServeConfig(in_shape=(1, 28, 28), num_classes=10, max_batch=max(256, args.large_batch),
                      max_body_bytes=max(16_000_000, 2 * len(large)))
    app = create_app(model, cfg)
    rows = []
    labelled: list[int] = []
    with BackgroundServer(app) as srv:
        for n in (int(c) for c in args.clients.split(",")):
            stop = threading.Event()
            lat: list[float] = []
            health: list[float] = []
            errors: list[str] = []
            extra: list[float] = []
            threads = [threading.Thread(target=_client, args=(srv.port, [(body, args.batch)], "/predict",
                                                              "POST", stop, lat, errors, labelled))
                       for _ in range(n)]
            threads.append(threading.Thread(target=_client, args=(srv.port, [(b"", 0)], "/health", "GET",
                                                                  stop, health, errors, [], 0.05)))
            threads.append(threading.Thread(target=_client, args=(srv.port, [(large, args.large_batch)],
                                                                  "/predict", "POST", stop, extra, errors,
                                                                  labelled)))
            threads.append(threading.Thread(target=_client, args=(srv.port, [(m, None) for m in MALFORMED],
                                                                  "/predict", "POST", stop, extra, errors,
                                                                  labelled, 0.01)))
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join()
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            conn.request("GET", "/stats")
            stats = json.loads(conn.getresponse().read())
            conn.close()
            row = {"clients": n, "batch": args.batch, "requests": len(lat),
                   "images_per_s": round(len(lat) * args.batch / args.seconds, 1),
                   "predict_p50_ms": round(_pct(lat, 50), 1), "predict_p99_ms": round(_pct(lat, 99), 1),
                   "health_p50_ms": round(_pct(health, 50), 1), "health_p99_ms": round(_pct(health, 99), 1),
                   "health_under_100ms": _pct(health, 99) < 100.0, "errors": len(errors),
                   "large_and_malformed_requests": len(extra), "queries_counted": stats["queries"],
                   "images_labelled": sum(labelled), "accounting_exact": stats["queries"] == sum(labelled),
                   "first_error": errors[0] if errors else None}
            rows.append(row)
            print(f"{n:>3} clients: {row['requests']:>5} requests, {row['images_per_s']:>7} img/s, /predict "
                  f"p50 {row['predict_p50_ms']} ms p99 {row['predict_p99_ms']} ms; /health p50 "
                  f"{row['health_p50_ms']} ms p99 {row['health_p99_ms']} ms; errors {row['errors']}; "
                  f"{row['large_and_malformed_requests']} large/malformed; counted "
                  f"{row['queries_counted']} = labelled {row['images_labelled']}: {row['accounting_exact']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "server_load.json").write_text(json.dumps({"rows": rows, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
