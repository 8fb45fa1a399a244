"""Fuzz the ``/predict`` body parser of ``advlab serve`` (:mod:`advlab.serve._parse`).

Every body is parsed twice: by the small-body path (one ``json.loads``) and by the
chunked path that large bodies take (image by image, bounded; forced here by lowering
``SMALL_BODY`` so that short fuzz inputs reach it). Each parse either returns a finite
``float32`` batch ``(N, 1, 2, 2)`` with ``1 <= N <= 4`` and values in ``[0, 1]``, or raises
:class:`~advlab.serve._parse.ApiError` with status 400, 413 or 422 and a one-line message.
Whatever the strict chunked path accepts, the small path must accept with the same array.

Run: ``python tests/fuzz/fuzz_serve_body.py -runs=20000 -timeout=5``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run  # noqa: E402

with instrumented(__name__ == "__main__"):
    import numpy as np

    from advlab.serve import _parse
    from advlab.serve._parse import ApiError, parse_inputs

SHAPE, BOUNDS, MAX_BATCH = (1, 2, 2), (0.0, 1.0), 4
_SMALL = _parse.SMALL_BODY


def seeds() -> list[bytes]:
    """Valid bodies: nested and flat images, one to four of them, odd spacing."""
    image = [[[0.0, 0.5], [1.0, 0.25]]]
    bodies = [{"inputs": [image]}, {"inputs": [image] * 4}, {"inputs": [[0, 1, 0.5, 0.125]]},
              {"inputs": [image, [0.1, 0.2, 0.3, 0.4]]}]
    out = [json.dumps(b).encode() for b in bodies]
    out.append(b'  {"inputs" :[ [[[0,0],[0,0]]] ,[[[1,1],[1,1]]] ]}  ')
    return out


def _parse_with(body: bytes, small: int) -> object:
    _parse.SMALL_BODY = small
    try:
        return expect_clean(lambda: parse_inputs(body, SHAPE, BOUNDS, MAX_BATCH), (ApiError,))
    except ApiError as e:  # pragma: no cover - expect_clean re-raises only on a bad message
        raise Finding(str(e)) from e
    finally:
        _parse.SMALL_BODY = _SMALL


def _check(batch: object, path: str) -> None:
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
        raise Finding(f"{path} path returned {type(batch).__name__}")
    if batch.shape[1:] != SHAPE or not 1 <= batch.shape[0] <= MAX_BATCH:
        raise Finding(f"{path} path returned shape {batch.shape}")
    if not np.isfinite(batch).all() or batch.min() < BOUNDS[0] or batch.max() > BOUNDS[1]:
        raise Finding(f"{path} path returned values outside {BOUNDS}")


def one_input(data: bytes) -> None:
    """Parse ``data`` on both paths; check each result, the statuses, and that they agree."""
    results = {}
    for path, small in (("small", len(data) + 1), ("chunked", 0)):
        try:
            results[path] = _parse_with(data, small)
        except ApiError:
            raise
        if results[path] is not None:
            _check(results[path], path)
    chunked, small = results["chunked"], results["small"]
    if chunked is not None and (small is None or not np.array_equal(chunked, small)):
        raise Finding("the chunked path accepted a body the small path refused or read differently")


def _status_check(data: bytes) -> None:
    for small in (len(data) + 1, 0):
        _parse.SMALL_BODY = small
        try:
            parse_inputs(data, SHAPE, BOUNDS, MAX_BATCH)
        except ApiError as e:
            if e.status not in (400, 413, 422):
                raise Finding(f"status {e.status} for a bad body") from e
        except Exception:  # noqa: BLE001 - the other check reports it with its traceback
            pass
        finally:
            _parse.SMALL_BODY = _SMALL


def one_input_all(data: bytes) -> None:
    one_input(data)
    _status_check(data)


if __name__ == "__main__":
    run(one_input_all, seeds())
