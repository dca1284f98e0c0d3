"""The CLI contract: documented exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ask_oom.ui.cli import main


def run_cli(args: list[str], stdin: bytes | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", *args], input=stdin, capture_output=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("payload, needle", [
    (b"", "empty input"),
    (b"   \n\n  ", "empty input"),
    (bytes(range(256)) * 64, "binary"),
])
def test_unusable_input_is_one_line_exit_2(payload, needle):
    proc = run_cli([], payload)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_option_is_usage_error(capsys):
    assert main(["diagnose", "--no-such-flag"]) == 2
    assert "see --help" in capsys.readouterr().err


def test_missing_log_file_is_usage_error(capsys, tmp_path):
    assert main(["diagnose", str(tmp_path / "nope.log")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_help_lists_examples_and_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out and "ask-oom < train.log" in out


def test_fifty_megabytes_of_random_text_is_handled(tmp_path):
    """50 MB of random printable text: no crash, no hang — 'no memory error' (exit 3) with a readable answer."""
    import random

    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?()[]{}<>-_=+/\\'\"\t"
    line_chunks = []
    size = 0
    while size < 50 * 1024 * 1024:
        line = "".join(rng.choices(alphabet, k=rng.randint(20, 200)))
        line_chunks.append(line)
        size += len(line) + 1
    path = tmp_path / "random.txt"
    path.write_text("\n".join(line_chunks))
    proc = subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "diagnose", str(path)], capture_output=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 3, proc.stderr.decode()[-500:]
    assert "Traceback" not in proc.stderr.decode()
    assert proc.stdout.strip()


def test_fifty_megabytes_of_random_bytes_is_refused_as_binary(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(50 * 1024 * 1024))
    proc = run_cli(["diagnose", str(path)], None)
    assert proc.returncode == 2 and "binary" in proc.stderr.decode()


# -- issue 18: safe writing, refused inputs, pastes, well-known DeepSpeed files ---------------------------------------
import json  # noqa: E402
import stat  # noqa: E402
from pathlib import Path  # noqa: E402

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def _deepke(tmp_path: Path, mode: int = 0o750) -> tuple[Path, Path]:
    """The DeepKE seed's script (an executable) and log, copied where the test may write."""
    cfg, log = tmp_path / "run.sh", tmp_path / "train.log"
    cfg.write_text((SEEDS / "deepke-llama2-13b" / "run.sh").read_text(encoding="utf-8"), encoding="utf-8")
    cfg.chmod(mode)
    log.write_text((SEEDS / "deepke-llama2-13b" / "train.log").read_text(encoding="utf-8"), encoding="utf-8")
    return cfg, log


def _one_line(err: str, needle: str) -> None:
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_write_fixed_never_overwrites_the_input_without_force(tmp_path, capsys):
    cfg, log = _deepke(tmp_path)
    before = cfg.read_text()
    assert main(["diagnose", str(log), "--config", str(cfg), "--write-fixed", str(cfg)]) == 2
    out, err = capsys.readouterr()
    _one_line(err, "would overwrite the input")
    assert cfg.read_text() == before and "## Fixed config" in out   # nothing written; the diagnosis still printed
    assert main(["diagnose", str(log), "--config", str(cfg), "--write-fixed", str(cfg), "--force"]) == 0
    capsys.readouterr()
    assert "--bits 4" in cfg.read_text() and stat.S_IMODE(cfg.stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.sh", "train.log"]   # no temp file left behind


def test_fix_write_refuses_a_hard_link_of_the_input_and_any_existing_file(tmp_path, capsys):
    cfg, log = _deepke(tmp_path)
    link, other = tmp_path / "hardlink.sh", tmp_path / "other.sh"
    os.link(cfg, link)
    other.write_text("keep me\n")
    args = ["fix", "--config", str(cfg), "--log", str(log)]
    assert main([*args, "--write", str(link)]) == 2
    _one_line(capsys.readouterr().err, "would overwrite the input")
    assert main([*args, "--write", str(other)]) == 2
    out, err = capsys.readouterr()
    _one_line(err, "exists")
    assert other.read_text() == "keep me\n" and "## Diff" in out   # the plan is still printed
    assert main([*args, "--write", str(other), "--force"]) == 0
    assert "--bits 4" in other.read_text() and stat.S_IMODE(other.stat().st_mode) == 0o750   # the source's mode


def test_a_new_fixed_file_gets_the_source_mode_and_an_atomic_write(tmp_path, capsys):
    cfg, log = _deepke(tmp_path, mode=0o600)
    target = tmp_path / "out" / "run.fixed.sh"
    target.parent.mkdir()
    assert main(["fix", "--config", str(cfg), "--log", str(log), "--write", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == [str(target)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and [p.name for p in target.parent.iterdir()] == ["run.fixed.sh"]


def test_a_failed_write_is_exit_2_in_one_line_and_the_diagnosis_is_still_printed(tmp_path, capsys):
    cfg, log = _deepke(tmp_path)
    for target in (tmp_path / "no-such-dir" / "run.fixed.sh", tmp_path):   # an unwritable place, a directory
        assert main(["diagnose", str(log), "--config", str(cfg), "--write-fixed", str(target)]) == 2
        out, err = capsys.readouterr()
        _one_line(err, "cannot write" if target != tmp_path else "is a directory")
        assert "## Fixed config" in out and "internal error" not in err
        assert main(["diagnose", str(log), "--config", str(cfg), "--write-fixed", str(target), "--json"]) == 2
        assert json.loads(capsys.readouterr().out)["fixed_config"]


def test_symbolic_links_and_special_files_are_refused_as_inputs(tmp_path, capsys):
    cfg, log = _deepke(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$never-printed:19000:0:99999:7:::\n")
    (tmp_path / "cfg.sh").symlink_to(cfg)
    (tmp_path / "shadow.yaml").symlink_to(secret)
    (tmp_path / "log.link").symlink_to(log)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for args, needle in ((["diagnose", str(log), "--config", str(tmp_path / "shadow.yaml")], "symbolic link"),
                         (["diagnose", str(log), "--config", str(tmp_path / "cfg.sh")], "symbolic link"),
                         (["diagnose", str(tmp_path / "log.link")], "symbolic link"),
                         (["parse", str(tmp_path / "log.link")], "symbolic link"),
                         (["fix", "--config", str(fifo)], "not a regular file"),    # never blocks on the pipe
                         (["diagnose", str(log), "--config", str(tmp_path)], "not a regular file"),
                         (["parse", "/dev/null"], "not a regular file")):
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        _one_line(err, needle)
        assert "never-printed" not in out + err
    assert main(["diagnose", str(tmp_path / "log.link"), "--config", str(tmp_path / "cfg.sh"), "--allow-symlinks"]) == 0
    assert "## Fixed config" in capsys.readouterr().out


def test_force_and_allow_symlinks_are_documented(capsys):
    for command in ("diagnose", "fix"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--force" in text and "--allow-symlinks" in text


def test_a_paste_of_log_and_config_diagnoses_like_the_two_files(tmp_path, capsys):
    """`ask-oom < paste` with the config fenced below the log gives the diagnosis the two files give."""
    cfg, log = _deepke(tmp_path)
    assert main(["diagnose", str(log), "--config", str(cfg), "--json"]) == 0
    from_files = json.loads(capsys.readouterr().out)
    paste = tmp_path / "paste.txt"
    paste.write_text(f"{log.read_text()}\n```bash\n{cfg.read_text()}```\n", encoding="utf-8")
    assert main(["diagnose", str(paste), "--json"]) == 0
    from_paste = json.loads(capsys.readouterr().out)
    for key in ("primary_cause", "fixes", "fixed_config", "fits_after"):
        assert from_paste[key] == from_files[key], key
    assert from_paste["report"]["requested_bytes"] == from_files["report"]["requested_bytes"]


LF_Z2 = ("### model\nmodel_name_or_path: Qwen/Qwen2.5-7B-Instruct\n\n### method\nstage: sft\ndo_train: true\n"
         "finetuning_type: full\ndeepspeed: examples/deepspeed/ds_z2_config.json\n\n### dataset\ndataset: alpaca_en_demo\n"
         "template: qwen\ncutoff_len: 2048\n\n### train\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 8\n"
         "bf16: true\n")
OOM_4090 = ('Traceback (most recent call last):\n  File "/w/src/llamafactory/train/sft/workflow.py", line 90, in run_sft\n'
            "    trainer.train()\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB. GPU 0 has a total "
            "capacity of 23.64 GiB of which 601.19 MiB is free. Including non-PyTorch memory, this process has 23.04 GiB "
            "memory in use. Of the allocated memory 21.33 GiB is allocated by PyTorch, and 1.21 GiB is reserved by PyTorch "
            "but unallocated.\n")


def test_a_switched_well_known_deepspeed_file_is_printed_and_written_beside_the_fixed_config(tmp_path, capsys):
    """The config names LLaMA-Factory's ds_z2_config.json without giving it: its published content is assumed (said);
    the fix switches to ds_z3_config.json and the answer holds that file, as published, printed and written."""
    from ask_oom.tools.configs.known_files import known_file

    cfg, log = tmp_path / "train.yaml", tmp_path / "train.log"
    cfg.write_text(LF_Z2)
    log.write_text(OOM_4090)
    target = tmp_path / "out" / "train.fixed.yaml"
    target.parent.mkdir()
    args = ["diagnose", str(log), "--config", str(cfg), "--gpu", "4090", "--gpus", "8", "--keep", "full",
            "--host-ram", "64"]
    assert main([*args, "--write-fixed", str(target)]) == 0
    out = capsys.readouterr().out
    published = known_file("ds_z3_config.json").text()
    assert "deepspeed: examples/deepspeed/ds_z3_config.json" in target.read_text()
    assert (target.parent / "ds_z3_config.json").read_text() == published
    assert "## Fixed DeepSpeed config (`ds_z3_config.json`)" in out and published.strip() in out
    assert "assumed LLaMA-Factory's published examples/deepspeed/ds_z2_config.json" in out
    assert "zero_stage = 2" in out.split("## Assumptions")[1]   # the assumed file's stage is an assumption
    assert "__file__" not in out


@pytest.mark.parametrize("bad, needle", [("cutoff_len: -2048", "train.yaml line 5: cutoff_len = -2048 is impossible"),
                                         ("gradient_accumulation_steps: 0", "gradient_accumulation_steps = 0 is impossible"),
                                         ("per_device_train_batch_size: -4", "per_device_train_batch_size = -4")])
def test_an_impossible_config_value_is_exit_2_naming_key_and_line(tmp_path, capsys, bad, needle):
    """It used to read as 'not set', take the framework's default, and `fix` said "fits"."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\nfinetuning_type: lora\n# the data\n{bad}\n")
    for args in (["fix", "--config", str(cfg), "--gpu", "A100-80GB"], ["estimate", "--config", str(cfg), "--gpu", "A100-80GB"]):
        assert main(args) == 2
        out, err = capsys.readouterr()
        _one_line(err, needle)
        assert "fits" not in out
