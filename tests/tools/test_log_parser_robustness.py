"""The parser never raises and stays linear: fuzzed text and bytes, mutated real logs, adversarial inputs.
(No timed assertions: the adversarial cases must simply finish and give sane output; speed is in evals/.)"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ask_oom.tools.log_parser import parse_log, parse_log_stream
from ask_oom.tools.report import OOMReport

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"
REAL_LOGS = [p.read_bytes() for p in sorted(CORPUS.glob("*.log"))]
FRAGMENTS = ["Tried to allocate ", "2.00 MiB", " GiB", "(GPU 2; ", "total capacity; ", "already allocated; ", " free; ",
             "reserved in total by PyTorch)", "GPU 0 has a total capacity of ", " of which ", " is free. ",
             "Process 12 has ", "this process has ", "Of the allocated memory ", "is reserved by PyTorch but unallocated",
             "CUDA out of memory. ", "[rank1]: ", "[default0]:", "\r", "\x1b[31m", "```", "> ", "&gt;", "Killed",
             "exitcode: -9", "Signal 7 (SIGBUS)", "Traceback (most recent call last):\n", '  File "x.py", line 1, in forward',
             "\n", "per_device_train_batch_size=", "--bf16 \\", "ZeRO stage 3", "nvidia", "|   0  NVIDIA A100  On  |",
             "MiB / 40960MiB", "9" * 40, "ü", "\ufffd", "\u2028", "\x00"]


def _valid(report: OOMReport) -> None:
    assert isinstance(report, OOMReport)
    OOMReport.model_validate(report.model_dump())  # still a valid contract object
    for name in ("requested_bytes", "gpu_total_bytes", "gpu_free_bytes", "torch_allocated_bytes"):
        value = getattr(report, name)
        assert value is None or value >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000))
def test_random_text_never_raises(text):
    _valid(parse_log(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data):
    _valid(parse_log(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=60))
def test_oom_like_fragment_soup_never_raises(parts):
    _valid(parse_log("".join(parts)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(REAL_LOGS) - 1), st.integers(min_value=0, max_value=2**32 - 1),
       st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=64))
def test_mutated_real_logs_never_raise(index, seed, n_mutations, chunk):
    rng = random.Random(seed)
    data = bytearray(REAL_LOGS[index])
    for _ in range(n_mutations):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # delete a span
            del data[pos:pos + rng.randrange(1, 200)]
        elif op == 2:  # duplicate a span
            data[pos:pos] = data[pos:pos + rng.randrange(1, 400)]
        else:  # insert an OOM fragment
            data[pos:pos] = rng.choice(FRAGMENTS).encode()
    _valid(parse_log(bytes(data)))
    _valid(parse_log_stream(bytes(data[i:i + chunk]) for i in range(0, len(data), chunk)))


def test_one_megabyte_line_of_digits():
    report = parse_log("Tried to allocate " + "9" * 1_000_000 + " GiB\n" + "1" * 1_000_000)
    _valid(report)
    assert report.lines == 2 and report.requested_bytes is None  # a 1M-digit number is not a size


def test_hundred_thousand_tried_to_allocate_lines():
    text = "".join(f"[rank{i % 8}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {i % 97}.00 MiB. "
                   f"GPU {i % 8} has a total capacity of 79.10 GiB of which 1.00 MiB is free.\n" for i in range(100_000))
    report = parse_log(text)
    assert report.kind == "cuda_oom" and report.requested_bytes == 0  # the first message wins
    assert report.ranks and set(report.ranks) <= set(range(8))  # every rank that printed that same message
    assert len(report.evidence) <= 300 and report.lines == 100_000


def test_one_huge_line_with_many_messages_and_tqdm_redraws():
    msg = "CUDA out of memory. Tried to allocate 2.00 MiB (GPU 0; 23.64 GiB total capacity; 1 GiB already allocated; "
    report = parse_log(msg * 50_000)
    _valid(report)
    assert report.kind == "cuda_oom" and report.requested_bytes == 2 << 20
    bar = "\r".join(f"{i}%|##| {i}/100" for i in range(200_000))
    report = parse_log(bar + "\rRuntimeError: CUDA error: out of memory\n")
    assert report.kind == "cuda_oom"


def test_pathological_nesting_and_separators():
    for text in ("(" * 200_000, "[rank" * 100_000, "-" * 500_000 + "--bf16", "\x1b[" * 100_000, "> " * 100_000,
                 ":" * 300_000, "=" * 300_000, "\n" * 300_000, "\r\n" * 100_000, "\u2028".join(["x"] * 10_000)):
        _valid(parse_log(text))


def test_stream_memory_is_bounded_by_line_cap():
    """A 20 MB single line never gets materialised: the stream keeps only a capped head and tail."""
    import tracemalloc

    def chunks():
        for _ in range(20):
            yield b"x" * (1 << 20)
        yield b"\nKilled\n"

    tracemalloc.start()
    report = parse_log_stream(chunks())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.kind == "host_oom" and report.lines == 2
    assert peak < 12 * (1 << 20)  # two chunks in flight at most, never the whole 20 MB line
