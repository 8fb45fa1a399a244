"""The prediction API: an ASGI app (Starlette) that returns only predicted labels.

``POST /predict`` with ``{"inputs": [...]}`` (a batch of images, nested lists of shape
``(N, C, H, W)`` or ``(N, C*H*W)``, values in the model's bounds) answers
``{"labels": [...]}``. ``GET /info`` describes the expected input and the limits,
``GET /stats`` the query counters, ``GET /health`` is a liveness check and
``GET /openapi.json`` the OpenAPI description of all of them.

Every answer is JSON. Every bad request gets a 4xx ``{"error": "..."}`` and never reaches
the model: wrong content type (415), body too large (413, refused while streaming, before
more than the limit is read), invalid or too deeply nested JSON (400), wrong structure,
shape, dtype, NaN/inf or out-of-range values (422), batch too large (413), query budget
exhausted (403), rate limit exceeded (429 with ``Retry-After``), unknown route (404) or
method (405). A model that raises or returns non-finite logits gives a 500 JSON error.

Queries are counted per image labelled, exactly: a request's images are reserved against
the budget before the model runs and charged only if the model succeeds (refunded
otherwise), so concurrent clients can never overspend the budget. Bodies are parsed in a
worker thread in short steps and the model runs in a worker thread, so ``/health`` stays
responsive while large requests are served (``bench/server_load.py`` measures it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import nn

from advlab.models.sklearn import Classifier, TorchClassifier, as_classifier
from advlab.serve._parse import ApiError, parse_inputs, read_body
from advlab.serve.openapi import openapi_spec

__all__ = ["ServeConfig", "QueryStats", "create_app"]

log = logging.getLogger(__name__)

#: the default body limit is sized for ``max_batch`` images at this many bytes per number
_BYTES_PER_NUMBER = 12


@dataclass
class ServeConfig:
    """Limits of the prediction API.

    Attributes:
        in_shape: shape of one input ``(C, H, W)``.
        num_classes: number of classes (reported by ``/info``, and labels outside
            ``[0, num_classes)`` are a model failure; ``None`` to hide it).
        bounds: valid input range.
        max_batch: most images per request.
        max_body_bytes: largest request body accepted; ``None``: room for ``max_batch``
            images at 12 bytes per number (6 decimals), at least 1 MiB and at most 16 MiB.
        query_budget: most images labelled over the server's life (``None``: unlimited).
        rate_limit: most requests per second (token bucket, burst of ``max(1, rate_limit)``;
            ``None``: unlimited).
    """

    in_shape: tuple[int, ...]
    num_classes: int | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    max_batch: int = 256
    max_body_bytes: int | None = None
    query_budget: int | None = None
    rate_limit: float | None = None

    def validate(self) -> None:
        if not self.in_shape or any(int(s) < 1 for s in self.in_shape):
            raise ValueError(f"in_shape must be positive sizes, got {self.in_shape}")
        if self.max_batch < 1 or (self.max_body_bytes is not None and self.max_body_bytes < 1):
            raise ValueError("max_batch and max_body_bytes must be >= 1")
        if self.query_budget is not None and self.query_budget < 0:
            raise ValueError(f"query_budget must be >= 0, got {self.query_budget}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 requests per second, got {self.rate_limit}")

    def body_limit(self) -> int:
        """The body limit in bytes (``max_body_bytes``, or the default sized for ``max_batch``)."""
        if self.max_body_bytes is not None:
            return int(self.max_body_bytes)
        need = _BYTES_PER_NUMBER * self.max_batch * math.prod(int(s) for s in self.in_shape) + 65536
        return min(16 * 1024 * 1024, max(1024 * 1024, need))


@dataclass
class QueryStats:
    """Counters of the prediction API.

    Attributes:
        queries: images labelled (charged to the budget) by successful requests.
        requests: successful ``/predict`` requests.
        rejected: requests refused with a 4xx.
        errors: requests whose model call failed (500, not charged).
        reserved: images of requests whose model call is running now.
    """

    queries: int = 0
    requests: int = 0
    rejected: int = 0
    errors: int = 0
    reserved: int = 0


class _ModelError(Exception):
    """The model ran but its answer is unusable (non-finite logits, bad labels)."""


class _State:
    def __init__(self, classifier: Classifier, config: ServeConfig) -> None:
        self.classifier = classifier
        self.module = classifier.as_module() if isinstance(classifier, TorchClassifier) else None
        self.config = config
        self.stats = QueryStats()
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.tokens = float(max(1.0, config.rate_limit or 1.0))
        self.last = time.monotonic()
        self.parse_slots = anyio.CapacityLimiter(2)  # big parses take turns: the loop gets the GIL often

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
                raise ApiError(429, f"rate limit of {rate:g} requests/s exceeded; retry later",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
            self.tokens -= 1.0

    def reserve(self, n: int) -> None:
        """Hold ``n`` queries of the budget for a request about to reach the model."""
        budget = self.config.query_budget
        with self.lock:
            used = self.stats.queries + self.stats.reserved
            if budget is not None and used + n > budget:
                left = budget - used
                raise ApiError(403, f"query budget exhausted: {left} of {budget} queries left, "
                                    f"this request needs {n}")
            self.stats.reserved += n

    def settle(self, n: int, ok: bool) -> None:
        """Charge the ``n`` reserved queries (the model answered) or give them back."""
        with self.lock:
            self.stats.reserved -= n
            if ok:
                self.stats.queries += n
                self.stats.requests += 1
            else:
                self.stats.errors += 1

    def labels(self, arr: np.ndarray) -> list[int]:
        """The model's labels for a checked batch (runs in a worker thread)."""
        n = arr.shape[0]
        x = torch.from_numpy(arr)
        with self.model_lock, torch.no_grad():
            if self.module is not None:
                labels = _module_labels(self.module, x)
            else:
                labels = torch.as_tensor(self.classifier.predict(x))
        if labels.shape != (n,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise _ModelError(f"the model returned labels of shape {list(labels.shape)} and dtype "
                              f"{labels.dtype} for {n} images")
        out = [int(v) for v in labels.tolist()]
        k = self.config.num_classes
        if any(v < 0 or (k is not None and v >= k) for v in out):
            raise _ModelError(f"the model returned labels outside [0, {k})")
        return out


    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        with self.lock:
            self.stats.rejected += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def predict(self, request: Request) -> JSONResponse:
        """``POST /predict``: check, reserve, run the model, then charge or refund."""
        cfg = self.config
        try:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
            self.take_token()
            body = await read_body(request, cfg.body_limit())
            shape = tuple(int(s) for s in cfg.in_shape)
            bounds = (float(cfg.bounds[0]), float(cfg.bounds[1]))
            arr = await anyio.to_thread.run_sync(parse_inputs, body, shape, bounds, cfg.max_batch,
                                                 limiter=self.parse_slots)
            n = int(arr.shape[0])
            self.reserve(n)
        except ApiError as e:
            return self.error(e.status, e.message, e.headers)
        try:
            labels = await anyio.to_thread.run_sync(self.labels, arr)
        except BaseException as e:  # the model never answered: nothing is charged
            self.settle(n, ok=False)
            if isinstance(e, _ModelError):
                log.error("prediction failed: %s", e)
                return JSONResponse({"error": f"{e}; the request was not charged"}, status_code=500)
            if isinstance(e, Exception):  # a model failure must not take the server down
                log.exception("prediction failed")
                return JSONResponse({"error": f"the model failed on this batch ({type(e).__name__}); "
                                              "the request was not charged"}, status_code=500)
            raise
        self.settle(n, ok=True)
        return JSONResponse({"labels": labels})


def _module_labels(module: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Argmax of the logits, refusing non-finite logits (a NaN argmax is an arbitrary label)."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was = module.training
    module.eval()
    try:
        logits = torch.cat([module(x[s:s + batch_size].to(device)) for s in range(0, x.shape[0], batch_size)])
    finally:
        module.train(was)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise _ModelError(f"the model returned logits of shape {list(logits.shape)} for {x.shape[0]} images")
    if not bool(torch.isfinite(logits).all()):
        raise _ModelError("the model returned non-finite logits (NaN or inf)")
    return logits.argmax(1).cpu()


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
    shape = tuple(int(s) for s in config.in_shape)
    bounds = (float(config.bounds[0]), float(config.bounds[1]))
    limit = config.body_limit()
    spec = openapi_spec(list(shape), list(bounds), config.max_batch, limit,
                        config.query_budget is not None, config.rate_limit is not None)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"in_shape": list(shape), "num_classes": config.num_classes,
                             "bounds": list(bounds), "max_batch": config.max_batch,
                             "max_body_bytes": limit,
                             "query_budget": config.query_budget, "rate_limit": config.rate_limit,
                             "output": "labels only"})

    async def stats(request: Request) -> JSONResponse:
        with state.lock:
            d: dict[str, Any] = asdict(state.stats)
        d["budget_left"] = (None if config.query_budget is None
                            else config.query_budget - d["queries"] - d["reserved"])
        return JSONResponse(d)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(spec)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        text = {404: f"no route {request.url.path!r}; see GET /openapi.json",
                405: f"method {request.method} not allowed on {request.url.path}"}
        message = text.get(exc.status_code, str(exc.detail))
        return state.error(exc.status_code, message, dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        with state.lock:
            state.stats.errors += 1
        return JSONResponse({"error": f"internal server error ({type(exc).__name__})"}, status_code=500)

    app = Starlette(routes=[
        Route("/predict", state.predict, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.stats = state.stats
    app.state.config = config
    app.state.openapi = spec
    return app
