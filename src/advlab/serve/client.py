"""A client for the prediction API: an oracle that only returns labels."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import torch

__all__ = ["HTTPOracle", "OracleError"]

log = logging.getLogger(__name__)


class OracleError(RuntimeError):
    """The prediction API refused a request (budget exhausted, bad input, server error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class HTTPOracle:
    """Label-only oracle behind ``advlab serve``: ``predict(x) -> labels``.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8000``.
        batch_size: images per request (at most the server's ``max_batch``).
        timeout: seconds per request.
        max_retries: retries after a 429 (rate limit), waiting ``Retry-After`` seconds.
        decimals: inputs are sent as JSON numbers rounded to this many decimals.

    Attributes:
        queries: images labelled through this client.
        requests: HTTP requests made.
    """

    def __init__(self, url: str, batch_size: int = 100, timeout: float = 60.0, max_retries: int = 20,
                 decimals: int = 6) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"oracle URL must start with http://, got {url!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.decimals = decimals
        self.queries = 0
        self.requests = 0
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # a loopback oracle is never reached through an HTTP proxy from the environment
        loopback = host == "localhost" or (host.replace(".", "").isdigit() and host.startswith("127.")) \
            or host == "::1"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if loopback \
            else urllib.request.build_opener()

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method="POST" if data is not None else "GET")
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                body = e.read()
                try:
                    msg = json.loads(body).get("error", body.decode(errors="replace"))
                except (ValueError, AttributeError):
                    msg = body.decode(errors="replace")
                if e.code == 429 and attempt < self.max_retries:
                    wait = float(e.headers.get("Retry-After", "1"))
                    log.info("rate limited; retrying in %.1f s", wait)
                    time.sleep(wait)
                    continue
                raise OracleError(e.code, msg) from None
            except urllib.error.URLError as e:
                raise ConnectionError(f"cannot reach the oracle at {self.url}: {e.reason}") from None
        raise OracleError(429, "rate limited too many times")  # pragma: no cover

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: input shape, classes, limits."""
        return self._call("/info")

    def stats(self) -> dict[str, Any]:
        """The server's query counters."""
        return self._call("/stats")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels for a float batch ``x`` (sent in requests of ``batch_size`` images)."""
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            raise TypeError("inputs must be a floating-point torch.Tensor")
        out: list[int] = []
        arr = x.detach().cpu().numpy()
        for s in range(0, arr.shape[0], self.batch_size):
            chunk = np.round(arr[s:s + self.batch_size].astype(np.float64), self.decimals)
            labels = self._call("/predict", {"inputs": chunk.tolist()})["labels"]
            if len(labels) != chunk.shape[0]:
                raise OracleError(200, f"expected {chunk.shape[0]} labels, got {len(labels)}")
            out.extend(int(v) for v in labels)
            self.queries += chunk.shape[0]
            self.requests += 1
        return torch.tensor(out, dtype=torch.long, device=x.device)

    def __repr__(self) -> str:
        return f"HTTPOracle({self.url!r}, queries={self.queries})"
