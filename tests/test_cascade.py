"""The cascade evaluator: worst case over stages, resumable state, threat-model check, sharding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from advlab.attacks import APGD, FGSM, PGD, Attack, AttackResult, DeepFool, Square
from advlab.criteria import Criterion
from advlab.evaluation.cascade import PRESETS, cascade, make_stages
from advlab.threat import ThreatModel


@pytest.fixture(scope="module")
def data(digits_test):  # type: ignore[no-untyped-def]
    return digits_test.subset(limit=60).tensors()


@pytest.fixture(scope="module")
def digits_mlp(digits_train, digits_settings):  # type: ignore[no-untyped-def]
    from advlab.defenses import TrainConfig, fit
    from advlab.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", **digits_settings)
    fit(model, digits_train.images, digits_train.labels, TrainConfig(epochs=4, lr=3e-3, seed=0))
    return model.eval()


def deterministic_stages() -> list[tuple[str, Attack]]:
    return [("fgsm", FGSM()),
            ("bim", PGD(steps=10, random_init=False, early_stop=True)),
            ("apgd", APGD(steps=10, random_init=False, early_stop=True)),
            ("deepfool", DeepFool())]


def test_never_higher_than_any_single_stage(digits_mlp, data):  # type: ignore[no-untyped-def]
    x, y = data
    threat = ThreatModel("linf", 0.08)
    full = cascade(digits_mlp, x, y, deterministic_stages(), threat, batch_size=25)
    accs = [s.robust_acc for s in full.stages]
    assert accs == sorted(accs, reverse=True)  # robust accuracy only goes down
    assert full.robust_acc == pytest.approx(accs[-1])
    assert full.robust_acc <= full.clean_acc
    assert int(full.robust_correct.sum()) == round(full.robust_acc * len(y))
    for name, atk in deterministic_stages():
        single = cascade(digits_mlp, x, y, [(name, atk)], threat, batch_size=25)
        assert full.robust_acc <= single.robust_acc + 1e-9, name
        # per sample: a point broken by one stage alone is broken in the cascade
        assert bool((~full.robust_correct | single.robust_correct).all()), name
    # the stages really contributed: later stages broke points the first one missed
    assert sum(s.broken for s in full.stages[1:]) > 0
    assert full.stages[1].attacked == full.stages[0].attacked - full.stages[0].broken


def test_unbounded_attack_counts_only_points_inside_the_ball(trained_softmax, data):  # type: ignore[no-untyped-def]
    x, y = data
    threat = ThreatModel("linf", 0.05)
    r = cascade(trained_softmax, x, y, [("deepfool", DeepFool())], threat, batch_size=30,
                keep_adversarials=True)
    df = DeepFool()(trained_softmax, x, y, threat=threat)
    inside = threat.contains(df.x_adv, x)
    clean_ok = r.clean_correct
    assert r.stages[0].broken == int((df.success & inside & clean_ok).sum())
    assert r.stages[0].broken < int((df.success & clean_ok).sum())  # some were too far
    assert bool(threat.contains(r.x_adv, x).all())


class Liar(Attack):
    """Claims success everywhere; returns the clean input or a point outside the ball."""

    def __init__(self, outside: bool) -> None:
        self.outside = outside

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        xa = (x + 10 * threat.eps).clamp(*threat.bounds) if self.outside else x.clone()
        n = x.shape[0]
        one = torch.ones(n, dtype=torch.long)
        return AttackResult(xa, torch.ones(n, dtype=torch.bool), model(xa).detach(),
                            threat.strategy.distance(xa, x), one, one)


def test_final_check_rejects_false_claims(trained_softmax, data, tmp_path):  # type: ignore[no-untyped-def]
    x, y = data
    threat = ThreatModel("linf", 0.02)
    state = tmp_path / "liar.state"
    out = cascade(trained_softmax, x, y, [("liar", Liar(outside=True))], threat, batch_size=30,
                  state_path=state)
    assert out.robust_acc == pytest.approx(out.clean_acc)
    assert "outside_threat_model" in [w.code for w in out.warnings]
    # the warning survives a resume from the finished state file
    again = cascade(trained_softmax, x, y, [("liar", Liar(outside=True))], threat,
                    batch_size=30, state_path=state)
    assert again.resumed and "outside_threat_model" in [w.code for w in again.warnings]
    same = cascade(trained_softmax, x, y, [("liar", Liar(outside=False))], threat, batch_size=30)
    assert same.robust_acc == pytest.approx(same.clean_acc)
    assert "not_reproducible" in [w.code for w in same.warnings]


class Interrupt(Exception):
    pass


def test_resume_after_interrupt_gives_the_same_answer(trained_softmax, data, tmp_path):  # type: ignore[no-untyped-def]
    x, y = data
    threat = ThreatModel("linf", 0.06)

    def stages() -> list[tuple[str, Attack]]:  # randomized attacks: the seeds matter
        return [("apgd", APGD(steps=6, early_stop=True)), ("square", Square(queries=40))]

    ref = cascade(trained_softmax, x, y, stages(), threat, seed=3, batch_size=10,
                  keep_adversarials=True)
    state = tmp_path / "state.safetensors"
    calls = {"n": 0}

    def stop_after_three(stage: str, done: int, total: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        cascade(trained_softmax, x, y, stages(), threat, seed=3, batch_size=10,
                state_path=state, on_chunk=stop_after_three)
    assert state.is_file()
    again = cascade(trained_softmax, x, y, stages(), threat, seed=3, batch_size=10,
                    state_path=state, keep_adversarials=True)
    assert again.resumed
    assert torch.equal(again.robust_correct, ref.robust_correct)
    assert torch.equal(again.broken_by, ref.broken_by)
    assert torch.equal(again.x_adv, ref.x_adv)
    assert [(s.attacked, s.broken) for s in again.stages] == [(s.attacked, s.broken)
                                                              for s in ref.stages]
    # a finished state file answers at once and identically
    third = cascade(trained_softmax, x, y, stages(), threat, seed=3, batch_size=10,
                    state_path=state)
    assert torch.equal(third.robust_correct, ref.robust_correct)
    # another evaluation must not silently reuse it
    with pytest.raises(ValueError, match="different evaluation"):
        cascade(trained_softmax, x, y, stages(), threat, seed=4, batch_size=10, state_path=state)


def test_presets_and_bad_specs():
    assert set(PRESETS) >= {"standard", "fast"}
    assert [n for n, _ in make_stages("standard")] == PRESETS["standard"]
    assert [n for n, _ in make_stages("fgsm, apgd-ce")] == ["fgsm", "apgd-ce"]
    with pytest.raises(ValueError, match="unknown cascade attack"):
        make_stages("fgsm,nope")
    with pytest.raises(ValueError):
        make_stages("")


def _worker(rank: int, world: int, path: str, x: torch.Tensor, y: torch.Tensor,
            state: dict[str, torch.Tensor]) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29000 + os.getppid() % 1000))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.load_state_dict(state)
    r = cascade(model.eval(), x, y, [("fgsm", FGSM()), ("bim", PGD(steps=5, random_init=False))],
                ThreatModel("linf", 0.05), batch_size=4)
    if rank == 0:
        torch.save({"robust_correct": r.robust_correct, "counts": [r.n_examples, r.clean_acc,
                    r.robust_acc] + [(s.attacked, s.broken) for s in r.stages]}, path)
    dist.destroy_process_group()


def test_sharded_counts_are_exact_with_two_gloo_processes(tmp_path: Path, data):  # type: ignore[no-untyped-def]
    import torch.multiprocessing as mp

    x, y = data
    x, y = x[:13], y[:13]  # 13 points on 2 ranks: shards of 7 and 6
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(out), x, y, model.state_dict()), nprocs=2, join=True)
    got = torch.load(out)
    single = cascade(model, x, y, [("fgsm", FGSM()), ("bim", PGD(steps=5, random_init=False))],
                     ThreatModel("linf", 0.05), batch_size=4)
    assert got["counts"][0] == 13
    assert got["counts"][1:] == [single.clean_acc, single.robust_acc] + [
        (s.attacked, s.broken) for s in single.stages]
    assert torch.equal(got["robust_correct"], single.robust_correct)


MODEL_PY = '''
import torch
from torch import nn


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
'''


def test_cli_eval_attacks_writes_json_and_resumes(tmp_path, cli_env):  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    (tmp_path / "m.py").write_text(MODEL_PY)
    out, state = tmp_path / "out.json", tmp_path / "eval.state"
    cmd = [sys.executable, "-m", "advlab", "eval", f"{tmp_path / 'm.py'}:model", "--dataset",
           "digits", "--limit", "30", "--attacks", "fgsm,apgd-ce", "--eps", "0.1",
           "--batch-size", "10", "--state", str(state), "--per-sample", "--out", str(out)]
    first = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    d1 = json.loads(out.read_text())
    assert [s["name"] for s in d1["stages"]] == ["fgsm", "apgd-ce"] and not d1["resumed"]
    assert d1["robust_acc"] <= d1["stages"][0]["robust_acc"] <= d1["clean_acc"]
    second = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    d2 = json.loads(out.read_text())
    assert d2["resumed"] and d2["robust_correct"] == d1["robust_correct"]
    bad = subprocess.run(cmd[:-2] + ["--attacks", "fgsm,nope"], env=cli_env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown cascade attack" in bad.stderr
