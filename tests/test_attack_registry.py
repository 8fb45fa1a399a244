"""The attack registry: one name per attack, settings from the constructor, nothing dropped."""

from __future__ import annotations

import inspect
import json
import sys

import pytest

from advlab.attacks import APGD, APGDT, PGD, REGISTRY, Square, canonical_names, create_attack, get_entry
from advlab.cli._attacks import OPTION_FLAGS
from advlab.cli.app import main

CLI_VALUES = {"steps": "3", "step_size": "0.01", "rel_step_size": "0.1", "restarts": "2",
              "random_init": None, "early_stop": None, "loss": "cw"}


def _cli_flag(setting: str) -> list[str]:
    value = CLI_VALUES[setting]
    return [OPTION_FLAGS[setting]] + ([] if value is None else [value])


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["advlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().err


MATRIX = [(name, setting) for name in canonical_names() for setting in OPTION_FLAGS]
REJECTED = [(cmd, name, setting) for cmd in ("eval", "attack") for name, setting in MATRIX
            if not get_entry(name).takes(setting) and not (cmd == "attack" and setting == "early_stop")]


def test_matrix_covers_every_attack():
    assert {n for _, n, _ in REJECTED} | {n for n, s in MATRIX if get_entry(n).takes(s)} == \
        set(canonical_names())
    assert len(REJECTED) > 100  # every registered attack and option pair it does not take


@pytest.mark.parametrize("command,name,setting", REJECTED)
def test_cli_option_the_attack_does_not_take_is_an_error(name, setting, command, monkeypatch,
                                                         capsys, tmp_path):  # type: ignore[no-untyped-def]
    entry = get_entry(name)
    # the checkpoint does not exist: the settings must be rejected before anything is loaded
    code, err = run_main(monkeypatch, capsys, command, str(tmp_path / "missing"), "--attack", name,
                         *_cli_flag(setting))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert OPTION_FLAGS[setting] in lines[0] and repr(entry.name) in lines[0]
    for real in entry.settings():  # the message names the attack's real settings
        assert real in lines[0]


@pytest.mark.parametrize("name,setting", [(n, s) for n, s in MATRIX if get_entry(n).takes(s)])
def test_cli_option_the_attack_takes_reaches_it(name, setting):  # type: ignore[no-untyped-def]
    from advlab.cli._attacks import build_attack

    raw = CLI_VALUES[setting]
    value = {"steps": 3, "step_size": 0.01, "rel_step_size": 0.1, "restarts": 2, "random_init": False,
             "early_stop": False, "loss": "cw"}[setting]
    if raw is None and setting == "random_init":
        value = False
    if name.startswith("apgd") and setting == "loss":
        value = "dlr" if get_entry(name).fixed.get("loss") == "dlr" else "cw"
    atk = build_attack(name, {setting: value})
    assert atk.settings()[setting] == value


def test_set_reaches_any_setting_and_rejects_unknown(monkeypatch, capsys, tmp_path):  # type: ignore[no-untyped-def]
    from advlab.cli._attacks import build_attack

    atk = build_attack("square", {}, extra=["queries=100", "p_init=0.5"])
    assert isinstance(atk, Square) and atk.queries == 100 and atk.p_init == 0.5
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "square",
                         "--set", "nope=1")
    assert code == 2 and "--set nope" in err and "queries" in err
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "square",
                         "--set", "queries")
    assert code == 2 and "NAME=VALUE" in err
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "pgd",
                         "--steps", "3", "--set", "steps=4")
    assert code == 2 and "both given" in err
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "square",
                         "--set", "queries=0")
    assert code == 2 and "queries" in err  # the attack's own validation, before loading


def test_cascade_rejects_single_attack_options(monkeypatch, capsys, tmp_path):  # type: ignore[no-untyped-def]
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attacks", "standard",
                         "--steps", "5")
    assert code == 2 and "--steps" in err and "--attacks" in err


def test_unknown_attack_suggests(monkeypatch, capsys, tmp_path):  # type: ignore[no-untyped-def]
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "pdg")
    assert code == 2 and "did you mean pgd" in err


def test_aliases_and_variants():
    assert get_entry("apgd-ce") is get_entry("apgd") and get_entry("APGD").cls is APGD
    assert create_attack("apgd-dlr").settings()["loss"] == "dlr"
    assert create_attack("apgd-t3").settings()["n_target_classes"] == 3
    assert isinstance(create_attack("apgd-t"), APGDT)
    assert create_attack("square2k").settings()["queries"] == 2000
    assert get_entry("fgm") is get_entry("fgsm")
    with pytest.raises(ValueError, match="fixes loss='dlr'.*'apgd'"):
        create_attack("apgd-dlr", loss="ce")
    assert create_attack("apgd-dlr", loss="dlr").loss == "dlr"  # restating a fixed value is fine
    with pytest.raises(ValueError, match="does not take the setting 'steps'.*queries"):
        create_attack("square", steps=5)
    with pytest.raises(ValueError, match="unknown attack"):
        create_attack("nope")


@pytest.mark.parametrize("name", canonical_names())
def test_settings_are_the_constructor_signature(name):  # type: ignore[no-untyped-def]
    entry = REGISTRY[name]
    atk = entry.create()
    params = [p for p in inspect.signature(entry.cls.__init__).parameters if p != "self"]
    s = atk.settings()
    assert list(s) == ["attack", *params]
    assert s["attack"] == entry.cls.__name__
    # JSON-serialisable (EOT describes its transform as a dict)
    json.dumps(s, default=str)
    # settings round-trip: the same settings build an equal attack
    again = entry.cls(**{k: v for k, v in s.items() if k != "attack" and k != "transform"})
    assert {k: v for k, v in again.settings().items() if k != "transform"} == \
        {k: v for k, v in s.items() if k != "transform"}


def test_settings_record_what_ran_not_defaults():
    atk = create_attack("pgd", steps=7, rel_step_size=0.1)
    assert atk.settings() == {"attack": "PGD", "steps": 7, "step_size": None, "rel_step_size": 0.1,
                              "random_init": True, "restarts": 1, "loss": "ce", "early_stop": False}
    assert repr(atk).startswith("PGD(steps=7,")
    assert isinstance(atk, PGD)


def test_step_size_and_rel_step_size_together_is_an_error(monkeypatch, capsys, tmp_path):  # type: ignore[no-untyped-def]
    import torch

    from advlab.threat import ThreatModel

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="not both"):
        PGD(steps=3, step_size=0.1, rel_step_size=0.2)(model, torch.rand(2, 1, 2, 2),
                                                       torch.tensor([0, 1]),
                                                       threat=ThreatModel("linf", 0.1))
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "pgd",
                         "--step-size", "0.1", "--rel-step-size", "0.2")
    assert code == 2 and "not both" in err
    code, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "m"), "--attack", "pgd",
                         "--steps", "0")
    assert code == 2 and "steps must be" in err  # 0 is not the default


def test_threat_eps_bool_and_classes_parsing():
    from advlab.cli._common import UsageError, _parse_classes
    from advlab.threat import ThreatModel

    with pytest.raises(TypeError, match="bool"):
        ThreatModel("linf", True)
    assert _parse_classes("3,7") == [3, 7] and _parse_classes("3vs7") == [3, 7]
    assert _parse_classes("0-4") == [0, 1, 2, 3, 4]
    for bad in ("-1,3", "7-3", "3,3", "a", "3-"):
        with pytest.raises(UsageError):
            _parse_classes(bad)
