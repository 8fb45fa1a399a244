"""A full disk, for real: a small tmpfs (mounted where the test runs as root and may mount;
skipped with the reason elsewhere). Writing a checkpoint or results onto it gives one line and
exit 1, leaves no partial or temporary file, and results already computed are saved to a
fallback file that the message names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bad_input import place, run  # noqa: F401 - shared fixtures


@pytest.fixture
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 64 KiB tmpfs (unmounted afterwards)."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path_factory.mktemp("full") / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({type(e).__name__}: {getattr(e, 'stderr', b'') or e})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True, timeout=30)


def _fill(disk: Path) -> None:
    """Fill ``disk`` to the last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)


def _leftovers(disk: Path) -> list[str]:
    return [p.name for p in disk.rglob("*")
            if p.name != "filler" and (".tmp" in p.name or p.name.startswith("."))]


def test_a_checkpoint_that_does_not_fit_is_one_line_and_leaves_nothing(run, small_disk: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    code, _, err = run("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                       "--out", str(small_disk / "model"))
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1, err
    assert lines[-1].startswith("error:") and "No space left" in lines[-1]
    assert "Traceback" not in err
    assert _leftovers(small_disk) == []


def test_results_on_a_full_disk_are_saved_to_a_fallback_that_the_message_names(run, small_disk: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    _fill(small_disk)
    code, _, err = run("eval", "ckpt", "--dataset", "digits", "--limit", "16", "--attack", "fgsm",
                       "--eps", "0.1", "--out", str(small_disk / "r.json"))
    assert code == 1, err
    assert "Traceback" not in err and "No space left" in err
    m = re.search(r"saved to (\S+\.json)", err)
    assert m, err
    fallback = Path(m.group(1))
    try:
        saved = json.loads(fallback.read_text())
        assert 0.0 <= saved["robust_acc"] <= saved["clean_acc"] <= 1.0
    finally:
        fallback.unlink(missing_ok=True)
    assert not (small_disk / "r.json").exists() and _leftovers(small_disk) == []
