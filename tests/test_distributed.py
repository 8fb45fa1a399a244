"""DDP: ``torchrun --nproc_per_node=2 -m advlab train`` (gloo, CPU) matches a single-process run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from advlab.checkpoint import read_metadata
from advlab.cli.app import app

ARGS = ["train", "--dataset", "digits", "--model", "mlp", "--settings", '{"hidden": [32]}',
        "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--defense", "fgsm", "--eps", "0.1",
        "--lr-schedule", "cyclic", "--curve-n", "100", "--curve-steps", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_process_ddp_matches_single_process(tmp_path: Path, cli_env: dict[str, str]) -> None:
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "advlab", *ARGS, "--out", str(ddp_out)]
    env = dict(cli_env, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = CliRunner().invoke(app, [*ARGS, "--out", str(single_out)])
    assert single.exit_code == 0, single.output

    a = load_file(str(ddp_out / "model.safetensors"))
    b = load_file(str(single_out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # same data, same global batches: equal up to float summation order
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    ma, mb = read_metadata(ddp_out), read_metadata(single_out)
    assert ma["world_size"] == 2 and "world_size" not in mb
    assert ma["passes"] == mb["passes"] == 2 * 3 * 1437  # all-reduced over ranks
    ha, hb = ma["history"], mb["history"]
    for ea, eb in zip(ha, hb, strict=True):
        assert ea["train_acc"] == pytest.approx(eb["train_acc"], abs=2e-3)
        assert ea["loss"] == pytest.approx(eb["loss"], rel=1e-3)
        assert ea["test_acc"] == pytest.approx(eb["test_acc"], abs=1e-9)  # sharded, all-reduced
        assert ea["extra"]["clean_error"] == pytest.approx(eb["extra"]["clean_error"], abs=1e-9)
    # only rank 0 writes: one result line on stdout, one checkpoint, no stray temp files
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["passes"] == ma["passes"]
    assert sorted(p.name for p in ddp_out.iterdir()) == sorted(p.name for p in single_out.iterdir())


def test_eval_backend_follows_the_device_not_the_machine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Under torchrun, nccl only for a rank computing on a GPU; --device cpu on a GPU machine is gloo."""
    import torch
    import torch.distributed as dist

    from advlab.cli import cmd_evaluation

    calls: list[str] = []
    devices: list[object] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(backend))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    cmd_evaluation._maybe_init_distributed(torch.device("cpu"))
    cmd_evaluation._maybe_init_distributed(torch.device("cuda", 1))
    assert calls == ["gloo", "nccl"]
    assert devices == [torch.device("cuda", 1)]
