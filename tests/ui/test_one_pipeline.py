"""Every door gives the same answer: `diagnose --json`, `fix --json --log` and `estimate --json --log` run one
pipeline, so on the same log and config they agree on the setup, the estimate, the causes and the changes; `fix`
and `probe` never refuse an input that `diagnose` accepts. Over the five seed scenarios and every dev case with a
config (../shared/dev-cases, when present)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ask_oom.assistant.message_parts import config_name_for
from ask_oom.ui.cli import main

TESTS = Path(__file__).resolve().parents[1]
SEEDS = TESTS / "fixtures" / "seeds"
DEV_CASES = TESTS.parents[1] / "shared" / "dev-cases"


def _seed_cases() -> list[tuple[str, dict]]:
    out = []
    for d in sorted(SEEDS.iterdir()):
        exp = json.loads((d / "expected.json").read_text(encoding="utf-8"))
        files = [exp["config"], *exp.get("extra_configs", [])] if exp.get("config") else []
        req = exp.get("request") or {}
        out.append((f"seed:{d.name}", {"dir": d, "log": exp["log"], "configs": files,
                                        "gpu": req.get("gpu"), "gpus": req.get("num_gpus")}))
    return out


def _dev_cases() -> list[tuple[str, dict]]:
    if not DEV_CASES.is_dir():
        return []
    yaml = YAML(typ="safe")
    out = []
    for path in sorted(DEV_CASES.glob("*.yaml")):
        case = yaml.load(path.read_text(encoding="utf-8"))
        if not isinstance(case, dict) or not case.get("config"):
            continue
        env = case.get("environment") or {}
        mem = env.get("gpu_memory_gib")
        out.append((f"dev:{case['id']}", {"log_text": case["log"], "config_text": case["config"],
                                          "config_name": config_name_for(case["config"]),
                                          "gpu_memory": float(mem) if mem else None,
                                          "gpus": int(env["gpus"]) if env.get("gpus") else None}))
    return out


CASES = _seed_cases() + _dev_cases()


def _materialise(case: dict, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(the log and config arguments, the hardware arguments) for one case, its files copied under tmp_path."""
    if "dir" in case:
        for name in [case["log"], *case["configs"]]:
            shutil.copy(case["dir"] / name, tmp_path / name)
        log, configs = tmp_path / case["log"], [tmp_path / c for c in case["configs"]]
    else:
        log = tmp_path / "train.log"
        log.write_text(case["log_text"], encoding="utf-8")
        configs = [tmp_path / case["config_name"]]
        configs[0].write_text(case["config_text"], encoding="utf-8")
    cfg_args = [a for c in configs for a in ("--config", str(c))]
    hw = (["--gpu", case["gpu"]] if case.get("gpu") else []) + \
         (["--gpu-memory", str(case["gpu_memory"])] if case.get("gpu_memory") else []) + \
         (["--gpus", str(case["gpus"])] if case.get("gpus") else [])
    return [str(log), *cfg_args], hw


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _setup(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "model"}


@pytest.mark.parametrize("name, case", CASES, ids=[c[0] for c in CASES])
def test_diagnose_fix_and_estimate_agree(name, case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # files a config names are looked up beside it or here, never in the repo
    (log, *cfg), hw = _materialise(case, tmp_path)
    code, out, err = _run(capsys, "diagnose", log, *cfg, *hw, "--json")
    assert code in (0, 3), err
    d = json.loads(out)

    code, out, err = _run(capsys, "fix", *cfg, "--log", log, *hw, "--json")
    assert code in (0, 5), f"fix refused what diagnose accepted: {err}"
    f = json.loads(out)
    assert f["setup"] == _setup(d["setup"])
    assert f["estimate_before"] == d["estimate"]
    assert [(c["label"], c["score"]) for c in f["root_causes"]] == [(c["label"], c["score"]) for c in d["root_causes"]]
    assert f["changes"] == d["fixes"]
    assert f["estimate_after"] == d["estimate_after"]
    assert f["fixed_config"] == d["fixed_config"] and f["fits"] == d["fits_after"]

    code, out, err = _run(capsys, "estimate", *cfg, "--log", log, *hw, "--json")
    if d["setup"]["model"] is None:
        assert code == 2 and "no model" in err   # the calculator needs a model: a question, not a different answer
        return
    assert code in (0, 5), err
    e = json.loads(out)
    assert e["setup"] == _setup(d["setup"])
    if d["estimate"] is None:
        return
    same = [k for k in d["estimate"] if k != "breakdown"]   # estimate prints the breakdown as a name → bytes table
    assert {k: e[k] for k in same} == {k: d["estimate"][k] for k in same}
    assert e["breakdown"] == {c["name"]: c["bytes"] for c in d["estimate"]["breakdown"]["components"]}


@pytest.mark.parametrize("name, case", CASES, ids=[c[0] for c in CASES])
def test_probe_never_refuses_a_config_diagnose_accepts(name, case, tmp_path, capsys, monkeypatch):
    """Without a GPU the probe stops at 'no CUDA device' (exit 4), after reading the config as diagnose does; the only
    exit-2 answer it may give is asking for the model's config.json, which the registry does not have."""
    import ask_oom.tools.cuda_available as cuda

    monkeypatch.setattr(cuda, "cuda_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    (log, *cfg), _ = _materialise(case, tmp_path)
    code, _, err = _run(capsys, "probe", *cfg)
    assert code == 4 or (code == 2 and "config.json" in err), err
    assert "was not given" not in err
