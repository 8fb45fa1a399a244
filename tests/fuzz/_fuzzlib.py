"""Shared plumbing of the fuzz harnesses in this folder.

Each harness (``fuzz_*.py``) defines

* ``seeds()``: a list of valid inputs built in code (the starting corpus),
* ``one_input(data)``: feeds one input to a reader and returns normally when the reader
  accepts it or refuses it cleanly (see :func:`expect_clean`); anything else raises
  :class:`Finding` or lets the unexpected exception escape,

and ends with ``if __name__ == "__main__": run(one_input, seeds())``. :func:`run` hands both to
atheris (libFuzzer) with the command-line options, e.g.::

    python tests/fuzz/fuzz_idx.py -runs=20000 -timeout=5 -seed=1

``tests/test_fuzz.py`` runs every harness that way (bounded runs and time) and also feeds the
same ``one_input`` from hypothesis, which needs no atheris.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path

#: Audit events that must never happen while a reader parses untrusted bytes.
FORBIDDEN_EVENTS = frozenset({
    "exec", "compile", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "subprocess.Popen", "ctypes.dlopen", "socket.connect", "urllib.Request",
    "os.remove", "os.rmdir", "shutil.rmtree", "os.rename",
})


class Finding(AssertionError):
    """A reader misbehaved on a fuzz input (wrong exception, multi-line message, code run)."""


_watching = False


def _is_import(event: str, args: tuple[object, ...]) -> bool:
    """Not a reader running code: an ``exec`` of a module's code read from a file (Python
    importing a module lazily, e.g. ``encodings.cp437`` for zip names), or ``ast.parse``."""
    if event == "compile" and len(args) > 1 and args[1] == "<unknown>":
        return True  # ast.parse (numpy reads .npy headers with ast.literal_eval); running it is exec
    code = args[0] if args else None
    return (event == "exec" and isinstance(code, types.CodeType) and code.co_name == "<module>"
            and Path(code.co_filename).is_file())


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _watching and event in FORBIDDEN_EVENTS and not _is_import(event, args):
        raise Finding(f"the reader triggered the audit event {event} {args!r:.200}")


sys.addaudithook(_audit)


@contextlib.contextmanager
def watched() -> Iterator[None]:
    """Flag any :data:`FORBIDDEN_EVENTS` audit event raised inside the block."""
    global _watching
    _watching = True
    try:
        yield
    finally:
        _watching = False


def expect_clean(call: Callable[[], object], allowed: tuple[type[BaseException], ...]) -> object:
    """Run ``call``; a refusal must be one of ``allowed`` with a one-line, non-empty message.

    Returns:
        What ``call`` returned, or ``None`` when it refused cleanly.

    Raises:
        Finding: ``call`` raised an allowed type with an empty or multi-line message, or it
            triggered a forbidden audit event. Any other exception escapes unchanged (the
            fuzzer reports it with its traceback).
    """
    try:
        with watched():
            return call()
    except allowed as exc:
        message = str(exc)
        if not message.strip() or "\n" in message or "\r" in message:
            raise Finding(f"{type(exc).__name__} without a one-line message: {message!r:.300}") from exc
        return None


def scratch_dir() -> Path:
    """A private folder for the files a harness writes (in RAM where ``/dev/shm`` exists)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="advlab-fuzz-", dir=base))


@contextlib.contextmanager
def instrumented(active: bool) -> Iterator[None]:
    """Instrument ``advlab``'s modules for coverage feedback when ``active`` (run as a script)."""
    if not active:
        yield
        return
    import atheris

    with atheris.instrument_imports(include=["advlab"]):
        yield


def run(one_input: Callable[[bytes], None], seeds: list[bytes]) -> None:
    """Fuzz ``one_input`` with atheris, starting from ``seeds`` (written to a corpus folder).

    The command line (``sys.argv``) carries libFuzzer's options (``-runs``, ``-timeout``,
    ``-max_total_time``, ``-seed``, ``-artifact_prefix``, ...).
    """
    import atheris

    corpus = scratch_dir()
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    argv = [a for a in sys.argv if a]
    # libFuzzer reads corpus folders from its positional arguments (after the options)
    atheris.Setup([*argv, str(corpus)], one_input)
    atheris.Fuzz()
