"""The prediction API: an ASGI app (Starlette) that returns only predicted labels.

``POST /predict`` with ``{"inputs": [...]}`` (a batch of images, nested lists of shape
``(N, C, H, W)`` or ``(N, C*H*W)``, values in the model's bounds) answers
``{"labels": [...]}``. ``GET /info`` describes the expected input and the limits,
``GET /stats`` the query counters, ``GET /health`` is a liveness check.

Every bad request gets a 4xx JSON answer ``{"error": "..."}`` and never reaches the
model: wrong content type (415), body too large (413), invalid JSON (400), wrong
structure, shape, dtype, NaN/inf or out-of-range values (422), batch too large (413),
query budget exhausted (403), rate limit exceeded (429 with ``Retry-After``).
Queries are counted per image labelled.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import nn

from advlab.models.sklearn import Classifier, as_classifier

__all__ = ["ServeConfig", "QueryStats", "create_app"]

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Limits of the prediction API.

    Attributes:
        in_shape: shape of one input ``(C, H, W)``.
        num_classes: number of classes (reported by ``/info``; ``None`` to hide it).
        bounds: valid input range.
        max_batch: most images per request.
        max_body_bytes: largest request body accepted.
        query_budget: most images labelled over the server's life (``None``: unlimited).
        rate_limit: most requests per second (token bucket, burst of ``max(1, rate_limit)``;
            ``None``: unlimited).
    """

    in_shape: tuple[int, ...]
    num_classes: int | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    max_batch: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    query_budget: int | None = None
    rate_limit: float | None = None

    def validate(self) -> None:
        if not self.in_shape or any(int(s) < 1 for s in self.in_shape):
            raise ValueError(f"in_shape must be positive sizes, got {self.in_shape}")
        if self.max_batch < 1 or self.max_body_bytes < 1:
            raise ValueError("max_batch and max_body_bytes must be >= 1")
        if self.query_budget is not None and self.query_budget < 0:
            raise ValueError(f"query_budget must be >= 0, got {self.query_budget}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 requests per second, got {self.rate_limit}")


@dataclass
class QueryStats:
    """Counters of the prediction API."""

    queries: int = 0
    requests: int = 0
    rejected: int = 0
    errors: int = 0


class _ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _State:
    def __init__(self, classifier: Classifier, config: ServeConfig) -> None:
        self.classifier = classifier
        self.config = config
        self.stats = QueryStats()
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.tokens = float(max(1.0, config.rate_limit or 1.0))
        self.last = time.monotonic()

    def take_token(self) -> None:
        rate = self.config.rate_limit
        if rate is None:
            return
        burst = max(1.0, rate)
        with self.lock:
            now = time.monotonic()
            self.tokens = min(burst, self.tokens + (now - self.last) * rate)
            self.last = now
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) / rate
                raise _ApiError(429, f"rate limit of {rate:g} requests/s exceeded; retry later",
                                {"Retry-After": str(max(1, math.ceil(wait)))})
            self.tokens -= 1.0

    def reserve(self, n: int) -> None:
        budget = self.config.query_budget
        with self.lock:
            if budget is not None and self.stats.queries + n > budget:
                left = budget - self.stats.queries
                raise _ApiError(403, f"query budget exhausted: {left} of {budget} queries left, "
                                     f"this request needs {n}")
            self.stats.queries += n
            self.stats.requests += 1


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
        except ValueError:
            raise _ApiError(400, "invalid Content-Length header") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_inputs(body: bytes, cfg: ServeConfig) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _ApiError(400, f"body is not valid JSON: {e}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise _ApiError(422, 'expected a JSON object {"inputs": [[...], ...]}')
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise _ApiError(422, '"inputs" must be a list of images')
    if len(inputs) == 0:
        raise _ApiError(422, '"inputs" is empty; send at least one image')
    if len(inputs) > cfg.max_batch:
        raise _ApiError(413, f"batch of {len(inputs)} images exceeds the limit of {cfg.max_batch}")
    try:
        arr = np.asarray(inputs)
    except (ValueError, TypeError):
        raise _ApiError(422, '"inputs" must be a rectangular array of numbers') from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise _ApiError(422, f'"inputs" must contain only numbers, got dtype {arr.dtype}')
    arr = arr.astype(np.float32)
    shape = tuple(int(s) for s in cfg.in_shape)
    flat = int(np.prod(shape))
    if arr.shape[1:] == (flat,):
        arr = arr.reshape(arr.shape[0], *shape)
    if arr.shape[1:] != shape:
        raise _ApiError(422, f"each image must have shape {list(shape)} (or {flat} numbers), "
                             f"got {list(arr.shape[1:])}")
    if not np.isfinite(arr).all():
        raise _ApiError(422, "inputs contain NaN or infinite values")
    lo, hi = cfg.bounds
    if float(arr.min()) < lo or float(arr.max()) > hi:
        raise _ApiError(422, f"input values must lie in [{lo:g}, {hi:g}], got "
                             f"[{float(arr.min()):.4g}, {float(arr.max()):.4g}]")
    return arr


def create_app(model: nn.Module | Classifier, config: ServeConfig) -> Starlette:
    """Build the prediction API for ``model``.

    Args:
        model: a torch model returning logits or any classifier with ``predict``.
        config: shapes and limits (:class:`ServeConfig`).

    Returns:
        A Starlette app; ``app.state.stats`` holds the :class:`QueryStats`.
    """
    config.validate()
    state = _State(as_classifier(model), config)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        with state.lock:
            state.stats.rejected += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def predict(request: Request) -> JSONResponse:
        try:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise _ApiError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
            state.take_token()
            body = await _read_body(request, config.max_body_bytes)
            arr = _parse_inputs(body, config)
            state.reserve(arr.shape[0])
        except _ApiError as e:
            return error(e.status, e.message, e.headers)

        def run() -> list[int]:
            with state.model_lock, torch.no_grad():
                labels = state.classifier.predict(torch.from_numpy(arr))
            return [int(v) for v in labels.reshape(-1).tolist()]

        try:
            labels = await run_in_threadpool(run)
        except Exception:  # a model failure must not take the server down
            log.exception("prediction failed")
            with state.lock:
                state.stats.errors += 1
            return JSONResponse({"error": "internal error while predicting"}, status_code=500)
        return JSONResponse({"labels": labels})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"in_shape": list(config.in_shape), "num_classes": config.num_classes,
                             "bounds": list(config.bounds), "max_batch": config.max_batch,
                             "max_body_bytes": config.max_body_bytes,
                             "query_budget": config.query_budget, "rate_limit": config.rate_limit,
                             "output": "labels only"})

    async def stats(request: Request) -> JSONResponse:
        with state.lock:
            d: dict[str, Any] = asdict(state.stats)
        d["budget_left"] = (None if config.query_budget is None
                            else config.query_budget - d["queries"])
        return JSONResponse(d)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])
    app.state.stats = state.stats
    app.state.config = config
    return app
