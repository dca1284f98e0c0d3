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
