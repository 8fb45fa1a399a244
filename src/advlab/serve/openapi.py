"""The OpenAPI 3.1 description of the prediction API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_spec"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(codes: dict[int, str]) -> dict[str, Any]:
    return {str(code): _json(_ERROR, text) for code, text in codes.items()}


def _predict_body(in_shape: list[int], bounds: list[float], max_batch: int) -> dict[str, Any]:
    number = {"type": "number", "minimum": bounds[0], "maximum": bounds[1]}
    flat = 1
    for s in in_shape:
        flat *= s
    nested: dict[str, Any] = number
    for s in reversed(in_shape):
        nested = {"type": "array", "items": nested, "minItems": s, "maxItems": s}
    flat_image = {"type": "array", "items": number, "minItems": flat, "maxItems": flat}
    return {"type": "object", "required": ["inputs"], "properties": {"inputs": {
        "type": "array", "minItems": 1, "maxItems": max_batch,
        "description": f"a batch of images, each of shape {in_shape} or {flat} numbers",
        "items": {"oneOf": [nested, flat_image]}}}}


def openapi_spec(in_shape: list[int], bounds: list[float], max_batch: int, max_body_bytes: int,
                 has_budget: bool, has_rate_limit: bool) -> dict[str, Any]:
    """The API's description for these limits (every route, request body and response)."""
    predict_errors = {400: "invalid JSON, or nested too deeply",
                      413: f"body over {max_body_bytes} bytes or more than {max_batch} images",
                      415: "Content-Type is not application/json",
                      422: "wrong structure, shape, type, NaN/inf or out-of-range values",
                      500: "the model failed or returned non-finite logits (not charged)"}
    if has_budget:
        predict_errors[403] = "query budget exhausted"
    if has_rate_limit:
        predict_errors[429] = "rate limit exceeded (see the Retry-After header)"
    info = {"type": "object", "properties": {
        "in_shape": {"type": "array", "items": {"type": "integer"}},
        "num_classes": {"type": ["integer", "null"]},
        "bounds": {"type": "array", "items": {"type": "number"}},
        "max_batch": {"type": "integer"}, "max_body_bytes": {"type": "integer"},
        "query_budget": {"type": ["integer", "null"]}, "rate_limit": {"type": ["number", "null"]},
        "output": {"type": "string"}}}
    counters = {k: {"type": "integer"} for k in ("queries", "requests", "rejected", "errors", "reserved")}
    stats = {"type": "object", "properties": {**counters, "budget_left": {"type": ["integer", "null"]}}}
    other = {"default": _json(_ERROR, "any other error: 404 unknown route, 405 wrong method")}

    def get(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": _json(schema, "OK"), **other}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "advlab label-only prediction API", "version": "1",
                 "description": "Only predicted labels are returned; every labelled image is counted. "
                                "Every response is JSON; errors are {\"error\": \"...\"} "
                                "(404 unknown route, 405 wrong method)."},
        "paths": {
            "/predict": {"post": {
                "summary": "Labels for a batch of images (counted against the query budget)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _predict_body(in_shape, bounds, max_batch)}}},
                "responses": {"200": _json({"type": "object", "required": ["labels"], "properties": {
                    "labels": {"type": "array", "items": {"type": "integer", "minimum": 0}}}},
                    "one label per image"), **_errors(predict_errors), **other}}},
            "/info": get("Input shape, classes and limits", info),
            "/stats": get("Query counters", stats),
            "/health": get("Liveness check", {"type": "object", "properties": {"status": {"const": "ok"}}}),
            "/openapi.json": get("This description", {"type": "object"}),
        },
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }
