"""The fuzz harnesses of ``tests/fuzz/`` under hypothesis (no atheris needed), and under
atheris for a bounded run when it is installed.

Each harness's ``one_input`` returns normally when the reader accepts an input or refuses it
with a one-line error, and raises otherwise (a wrong exception type, a multi-line message, a
forbidden audit event such as ``exec`` or ``subprocess.Popen``, or a result that disagrees
with the bytes). Hypothesis feeds it the harness's valid seeds, each with random bytes
flipped, cut or appended, and plain random bytes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parent / "fuzz"
HARNESSES = sorted(p.stem for p in FUZZ.glob("fuzz_*.py"))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "append", "insert"]))
        if op == "flip" and len(data) > 1:
            i = draw(st.integers(1, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut" and len(data) > 1:
            data = data[: draw(st.integers(1, len(data)))]
        elif op == "append":
            data += draw(st.binary(max_size=16))
        elif op == "insert" and len(data) > 1:
            i = draw(st.integers(1, len(data) - 1))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def test_there_are_harnesses() -> None:
    assert "fuzz_idx" in HARNESSES


@pytest.mark.parametrize("name", HARNESSES)
def test_seeds_are_accepted(name: str) -> None:
    harness = _load(name)
    seeds = harness.seeds()
    assert seeds
    for seed in seeds:
        getattr(harness, "one_input_all", harness.one_input)(seed)


@pytest.mark.parametrize("name", HARNESSES)
def test_mutated_inputs_are_read_or_refused_cleanly(name: str) -> None:
    harness = _load(name)

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(_mutated(harness.seeds()), st.binary(max_size=64)))
    def check(data: bytes) -> None:
        getattr(harness, "one_input_all", harness.one_input)(data)

    check()


def test_harness_catches_a_bad_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not vacuous: a reader that leaks a multi-line error is a Finding."""
    harness = _load("fuzz_idx")
    from advlab.data import DatasetError

    def leaky(path: object, magic: object = None) -> None:
        raise DatasetError("first line\nsecond line")

    monkeypatch.setattr(harness, "read_idx", leaky)
    with pytest.raises(AssertionError, match="one-line"):
        harness.one_input(b"\x00" + b"\x00" * 8)


def test_harness_flags_code_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = _load("fuzz_idx")

    def runs_code(path: object, magic: object = None) -> None:
        exec("1 + 1")  # noqa: S102 - the audit hook must flag it

    monkeypatch.setattr(harness, "read_idx", runs_code)
    with pytest.raises(AssertionError, match="audit event (exec|compile)"):
        harness.one_input(b"\x00" + b"\x00" * 8)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("name", HARNESSES)
def test_atheris_bounded_run(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(FUZZ / f"{name}.py"), "-runs=3000", "-timeout=5",
                           "-seed=1", f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _zip_member(name: str, payload: bytes, method: int = 0) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, payload)
    data = bytearray(buf.getvalue())
    if method:  # rewrite the compression method in the local and the central header
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            i = data.index(sig)
            off = 8 if sig == b"PK\x03\x04" else 10
            data[i + off:i + off + 2] = method.to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("case", ["npy-file", "unknown-compression", "non-npy-member", "bad-header"])
def test_npz_findings_are_one_line_errors(case: str, tmp_path: Path) -> None:
    """Regressions the npz harness found: each once escaped as a raw TypeError,
    NotImplementedError, AttributeError or tokenize.TokenError."""
    import io

    import numpy as np

    from advlab.data import DatasetError
    from advlab.data.npz import load_npz

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 1, 4, 4), np.uint8))
    npy = buf.getvalue()
    data = {"npy-file": npy,
            "unknown-compression": _zip_member("x.npy", npy, method=99),
            "non-npy-member": _zip_member("x.npy", b"not an array"),
            "bad-header": _zip_member("x.npy", npy[:10] + b"{'descr': (" + npy[21:])}[case]
    path = tmp_path / "x.npz"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as info:
        load_npz(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _mlp_checkpoint(meta: str) -> bytes:
    from safetensors.torch import save as st_save

    from advlab.models import create_model

    net = create_model("mlp", hidden=[4], in_shape=[1, 2, 2], num_classes=3)
    return st_save({k: v.contiguous() for k, v in net.state_dict().items()}, metadata={"advlab": meta})


@pytest.mark.parametrize("case", ["persistent-id", "memo-index-bomb", "negative-width", "mismatched-width",
                                  "overflowing-width"])
def test_cifar_and_checkpoint_findings_are_one_line_errors(case: str, tmp_path: Path) -> None:
    """Regressions the CIFAR and checkpoint harnesses found: pickle's multi-line persistent-id
    message; a 10-byte pickle whose memo index made CPython's unpickler grow its table to
    1.4 GB (libFuzzer: out of memory); torch's multi-line state-dict mismatch list; a
    negative or overflowing layer width in the metadata escaping as RuntimeError or as a
    multi-line message."""
    import json
    import struct

    from advlab.checkpoint import CheckpointError, load_model
    from advlab.data import DatasetError
    from advlab.data.cifar10 import load_cifar10_batch

    settings = {"in_shape": [1, 2, 2], "num_classes": 3}
    if case in ("persistent-id", "memo-index-bomb"):
        path = tmp_path / "data_batch_1"
        path.write_bytes(b"P" if case == "persistent-id" else
                         b"\x80\x04N" + b"r" + struct.pack("<I", 175_399_797) + b".")
        with pytest.raises(DatasetError) as info:
            load_cifar10_batch(path)
    else:
        hidden = {"negative-width": [-4], "mismatched-width": [3], "overflowing-width": [2**70]}[case]
        path = tmp_path / "model.safetensors"
        meta = json.dumps({"model": "mlp", "settings": {**settings, "hidden": hidden}})
        path.write_bytes(_mlp_checkpoint(meta))
        with pytest.raises(CheckpointError) as info:
            load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    if case == "memo-index-bomb":
        assert "memo index" in message
