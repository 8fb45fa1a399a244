"""Reading and checking a ``POST /predict`` body without stalling the server.

The body is read in chunks and refused (413) as soon as it passes the limit, so no more
than the limit is ever buffered. Parsing runs in a worker thread, but CPython's ``json``
decoder holds the GIL for the whole of one call (about 35 ms per MB here), so a big body
parsed in one call would still freeze every other request for that long. A body over
:data:`SMALL_BODY` bytes is therefore decoded image by image (one short decoder call per
image, each bounded in length); between calls the event loop gets the GIL back. Such a
body must have exactly the form ``{"inputs": [image, ...]}``. Small bodies go through
``json.loads``. Nesting deeper than the decoder's recursion limit is a 400, not a crash.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from starlette.requests import Request

__all__ = ["ApiError", "SMALL_BODY", "read_body", "parse_inputs"]

#: bodies up to this size are parsed with one ``json.loads`` call (at most a few ms of GIL)
SMALL_BODY = 256 * 1024

_DECODER = json.JSONDecoder()
_HEAD = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"inputs"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*')
_WS = " \t\n\r"
_FORM = 'a body over {kb} KiB must be exactly {{"inputs": [image, ...]}} with each image an array of numbers'


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is (or says it will be) over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _loads_small(body: bytes) -> Any:
    # JSON between systems is UTF-8 (RFC 8259, 8.1): decode it as such, as the chunked path
    # does, rather than let json.loads guess UTF-16/32 from the first bytes
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 JSON: {e}") from None
    try:
        payload = json.loads(text)
    except RecursionError:
        raise ApiError(400, "body is not usable JSON: nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ApiError(422, 'expected a JSON object {"inputs": [[...], ...]}')
    return payload["inputs"]


def _images_chunked(body: bytes, max_len: int, max_batch: int) -> list[Any]:
    """The images of a large body ``{"inputs": [...]}``, one bounded decoder call each."""
    form = _FORM.format(kb=SMALL_BODY // 1024)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 JSON: {e}") from None
    head = _HEAD.match(text)
    tail = text.rstrip(_WS)
    if head is None or not tail.endswith("}") or not tail[:-1].rstrip(_WS).endswith("]"):
        raise ApiError(422, form)
    pos, stop = head.end(), len(tail[:-1].rstrip(_WS)) - 1  # stop: index of the closing "]"
    images: list[Any] = []
    while pos < stop:
        window = text[pos:min(stop, pos + max_len)]
        try:
            image, used = _DECODER.raw_decode(window)
        except RecursionError:
            raise ApiError(400, "body is not usable JSON: nested too deeply") from None
        except json.JSONDecodeError as e:
            if pos + max_len < stop:
                raise ApiError(422, f"image {len(images)} is longer than {max_len} characters, more "
                                    "than any valid image") from None
            raise ApiError(400, f"{form}; image {len(images)} is not valid JSON: {e.msg}") from None
        images.append(image)
        if len(images) > max_batch:
            raise ApiError(413, f"batch of more than {max_batch} images exceeds the limit of {max_batch}")
        pos += used
        while pos < stop and text[pos] in _WS:
            pos += 1
        if pos < stop:
            if text[pos] != ",":
                raise ApiError(422, form)
            pos += 1
            while pos < stop and text[pos] in _WS:
                pos += 1
            if pos == stop:
                raise ApiError(400, "body is not valid JSON: trailing comma in \"inputs\"")
    return images


def _to_array(images: list[Any], shape: tuple[int, ...], bounds: tuple[float, float]) -> np.ndarray:
    """Check each image (numbers only, shape ``shape`` or flat, finite, in bounds) into one array."""
    flat = int(np.prod(shape))
    out = np.empty((len(images), *shape), dtype=np.float32)
    lo, hi = bounds
    for i, image in enumerate(images):  # one short numpy call per image: the GIL is released between
        try:
            arr = np.asarray(image)
        except (ValueError, TypeError, RecursionError):
            raise ApiError(422, f'image {i} of "inputs" must be a rectangular array of numbers') from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                       or np.issubdtype(arr.dtype, np.integer)):
            raise ApiError(422, f'"inputs" must contain only numbers, got dtype {arr.dtype} in image {i}')
        if arr.shape == (flat,):
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise ApiError(422, f"each image must have shape {list(shape)} (or {flat} numbers), "
                                f"got {list(arr.shape)} for image {i}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ApiError(422, "inputs contain NaN or infinite values")
        a_min, a_max = float(arr.min()), float(arr.max())
        if a_min < lo or a_max > hi:
            raise ApiError(422, f"input values must lie in [{lo:g}, {hi:g}], got "
                                f"[{a_min:.4g}, {a_max:.4g}] in image {i}")
        out[i] = arr
    return out


def parse_inputs(body: bytes, shape: tuple[int, ...], bounds: tuple[float, float],
                 max_batch: int) -> np.ndarray:
    """The checked ``(N, *shape)`` float32 batch of a ``/predict`` body, or :class:`ApiError`.

    Meant to run in a worker thread (see the module docstring for the GIL bound).
    """
    if len(body) <= SMALL_BODY:
        inputs = _loads_small(body)
    else:
        # a valid image has at most ~25 characters per number plus its brackets
        max_len = 40 * int(np.prod(shape)) + 1024
        inputs = _images_chunked(body, max_len, max_batch)
    if not isinstance(inputs, list):
        raise ApiError(422, '"inputs" must be a list of images')
    if len(inputs) == 0:
        raise ApiError(422, '"inputs" is empty; send at least one image')
    if len(inputs) > max_batch:
        raise ApiError(413, f"batch of {len(inputs)} images exceeds the limit of {max_batch}")
    return _to_array(inputs, shape, bounds)
