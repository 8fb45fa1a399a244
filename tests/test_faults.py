"""Faults: a run killed with SIGKILL at a random moment loses nothing that was finished, leaves
no half-written file behind, and resumes to exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

TRAIN = ["train", "--dataset", "digits", "--model", "mlp", "--defense", "pgd", "--steps", "3",
         "--eps", "0.1", "--epochs", "30", "--no-curves"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "advlab", *args]


def _kill_when(proc: subprocess.Popen[bytes], ready: Path, delay: float, limit: float = 120.0) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready`` appears; fail if it ended first."""
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None, "the run ended before it wrote anything"
        assert time.monotonic() - t0 < limit
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _no_partial_files(folder: Path, killed: int | None = None) -> None:
    """No temporary or hidden file in ``folder``. Right after a SIGKILL (``killed``: its pid)
    the one exception is the atomic writer's own temporary file of the killed process
    (``.<target>.<pid>.<8 chars>.tmp``): a kill that lands between its creation and the rename
    cannot be cleaned up by the dying process; the next write of that target removes it
    (``advlab.io.remove_orphans``), which the checks after the resumed run verify."""
    own = re.compile(rf"^\..+\.{killed}\.[A-Za-z0-9_]{{8}}\.tmp$") if killed is not None else None
    leftovers = [p.name for p in folder.rglob("*") if (".tmp" in p.name or p.name.startswith("."))
                 and not (own is not None and own.match(p.name))]
    assert leftovers == []


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_train_killed_mid_run_resumes_to_the_same_weights(tmp_path: Path, cli_env: dict[str, str],
                                                          delay: float) -> None:
    subprocess.run(_cmd(*TRAIN, "--out", "whole"), cwd=tmp_path, env=cli_env, check=True,
                   capture_output=True, timeout=300)
    proc = subprocess.Popen(_cmd(*TRAIN, "--out", "cut"), cwd=tmp_path, env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, tmp_path / "cut" / "train_state.safetensors", delay)
    cut = tmp_path / "cut"
    _no_partial_files(cut, killed=proc.pid)
    # what was there is whole: every file that exists parses (model.json is written just after
    # the train state, so a kill at delay 0 may come before it exists)
    if (cut / "model.json").exists():
        json.loads((cut / "model.json").read_text())
    load_file(str(cut / "train_state.safetensors"))
    done = subprocess.run(_cmd(*TRAIN, "--out", "cut", "--resume"), cwd=tmp_path, env=cli_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(cut / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all(bool((whole[k] == resumed[k]).all()) for k in whole)
    _no_partial_files(cut)


def test_eval_cascade_killed_mid_run_resumes_to_the_same_verdict(tmp_path: Path,
                                                                 cli_env: dict[str, str]) -> None:
    train = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--out", "m"]
    subprocess.run(_cmd(*train), cwd=tmp_path, env=cli_env, check=True, capture_output=True, timeout=300)
    evaluate = ["eval", "m", "--dataset", "digits", "--attacks", "standard", "--eps", "0.1"]
    subprocess.run(_cmd(*evaluate, "--out", "whole.json"), cwd=tmp_path, env=cli_env, check=True,
                   capture_output=True, timeout=300)
    proc = subprocess.Popen(_cmd(*evaluate, "--state", "st.safetensors", "--out", "cut.json"),
                            cwd=tmp_path, env=cli_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _kill_when(proc, tmp_path / "st.safetensors", 0.3)
    assert not (tmp_path / "cut.json").exists()
    _no_partial_files(tmp_path, killed=proc.pid)
    done = subprocess.run(_cmd(*evaluate, "--state", "st.safetensors", "--out", "cut.json"),
                          cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole, cut = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("whole", "cut"))
    assert cut["resumed"] and not whole["resumed"]
    assert cut["robust_acc"] == whole["robust_acc"] and cut["clean_acc"] == whole["clean_acc"]


def _kill_at_successive_writes(cmd: list[str], state: Path, delays: list[float], cwd: Path,
                               env: dict[str, str]) -> int:
    """Start ``cmd`` once per delay and SIGKILL it ``delay`` s after its next write of ``state``
    (its first, or a rewrite by the resumed run); return how many runs were killed (a run
    that finishes first ends the series)."""
    killed = 0
    for delay in delays:
        before = state.stat().st_mtime_ns if state.exists() else None
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 120:
            if state.exists() and state.stat().st_mtime_ns != before:
                break
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed += 1
        _no_partial_files(state.parent, killed=proc.pid)
    return killed


def test_train_killed_at_random_moments_several_times_resumes_to_the_same_weights(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    import random

    subprocess.run(_cmd(*TRAIN, "--out", "whole"), cwd=tmp_path, env=cli_env, check=True,
                   capture_output=True, timeout=300)
    rng = random.Random(18)
    delays = [rng.uniform(0.0, 0.6) for _ in range(3)]
    first = _cmd(*TRAIN, "--out", "cut")
    state = tmp_path / "cut" / "train_state.safetensors"
    killed = _kill_at_successive_writes(first, state, delays[:1], tmp_path, cli_env)
    killed += _kill_at_successive_writes(_cmd(*TRAIN, "--out", "cut", "--resume"), state, delays[1:],
                                         tmp_path, cli_env)
    assert killed >= 2, f"killed only {killed} times; give the run more epochs"
    done = subprocess.run(_cmd(*TRAIN, "--out", "cut", "--resume"), cwd=tmp_path, env=cli_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert whole.keys() == resumed.keys() and all(bool((whole[k] == resumed[k]).all()) for k in whole)
    _no_partial_files(tmp_path / "cut")


CACHE_SCRIPT = """
import sys
from advlab.data import load_dataset
from advlab.experiments import Recipe, get_or_train
recipe = Recipe(name="faulty", model="mlp", settings={"hidden": [64]}, seed=5,
                train={"epochs": 40, "lr": 1e-2, "batch_size": 32})
got = get_or_train(recipe, load_dataset("digits", "train"), sys.argv[1],
                   progress=lambda m: print(m, file=sys.stderr))
print(got.path)
"""


def test_the_model_cache_killed_several_times_resumes_to_the_same_weights(tmp_path: Path,
                                                                         cli_env: dict[str, str]) -> None:
    """The lecture's model cache (``get_or_train``) killed at three moments in a row, then let
    finish: the weights equal those of an uninterrupted run, tensor for tensor."""
    script = tmp_path / "cache_run.py"
    script.write_text(CACHE_SCRIPT)
    whole = subprocess.run([sys.executable, str(script), str(tmp_path / "whole")], env=cli_env,
                           capture_output=True, text=True, timeout=300, check=True)
    entry = Path(whole.stdout.strip().splitlines()[-1])
    cut_dir = tmp_path / "cut"
    state = cut_dir / entry.name / "train_state.safetensors"
    killed = _kill_at_successive_writes([sys.executable, str(script), str(cut_dir)], state,
                                        [0.0, 0.4, 0.9], tmp_path, cli_env)
    assert killed >= 2, "the cache run finished before it could be killed twice; give it more epochs"
    done = subprocess.run([sys.executable, str(script), str(cut_dir)], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming faulty" in done.stderr  # it continued the killed run, not a fresh one
    a = load_file(str(entry / "model.safetensors"))
    b = load_file(str(Path(done.stdout.strip().splitlines()[-1]) / "model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    _no_partial_files(cut_dir)
