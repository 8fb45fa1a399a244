"""advlab.io: atomic writes (the old file survives a failed write, no temp file is left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import advlab.checkpoint
from advlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_bytes_text_json_round_trip(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "r.json", {"b": 1, "a": tmp_path})
    text = (tmp_path / "r.json").read_text()
    assert text.endswith("}\n") and "\n  " in text  # indented, newline-terminated
    assert json.loads(text) == {"b": 1, "a": str(tmp_path)}  # Path written as str
    atomic_write_json(tmp_path / "s.json", {"b": 1, "a": 2}, indent=None, sort_keys=True)
    assert (tmp_path / "s.json").read_text() == '{"a": 2, "b": 1}\n'


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_checkpoint_re_exports_the_writers() -> None:
    assert advlab.checkpoint.atomic_write_bytes is atomic_write_bytes
    assert advlab.checkpoint.atomic_write_text is atomic_write_text


def test_json_is_strict_nan_becomes_null_and_inf_a_string(tmp_path):  # type: ignore[no-untyped-def]
    import json as _json

    from advlab.io import atomic_write_json

    p = tmp_path / "r.json"
    atomic_write_json(p, {"acc": float("nan"), "rows": [1.0, float("inf"), (2.0, -float("inf"))]})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert _json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == \
        {"acc": None, "rows": [1.0, "inf", [2.0, "-inf"]]}


def test_orphaned_temp_files_of_killed_writers_are_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A kill -9 mid-write leaves ``.<name>.<pid>.<rand>.tmp``; the next write removes it."""
    import os
    import subprocess
    import sys

    from advlab.io import atomic_write_bytes, remove_orphans

    target = tmp_path / "model.json"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(child.stdout)  # that process has exited: its files are orphans
    orphan = tmp_path / f".model.json.{dead}.abcd1234.tmp"
    orphan.write_bytes(b"x" * 1000)
    live = tmp_path / f".model.json.{os.getppid()}.abcd1234.tmp"  # a live writer (our parent)
    live.write_bytes(b"y")
    other = tmp_path / f".model.json.other.{dead}.abcd1234.tmp"  # another target's temp file
    other.write_bytes(b"z")
    unrelated = tmp_path / ".model.json.notes"
    unrelated.write_bytes(b"keep")
    atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert not orphan.exists()
    assert live.exists() and other.exists() and unrelated.exists()
    assert remove_orphans(target) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(
        [live.name, other.name])
