"""Pasted shapes the parser used to misread (issue 18): an OOM in the middle of a megabyte line, CR-only line ends,
tqdm redraws on one physical line, comma decimals, and the DeepSpeed launcher's argument list in Python list form.
(No timed assertions: the speed of these shapes is measured in evals/parser_speed.py, the pasted-shape table.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.log_parser import parse_log, parse_log_stream
from ask_oom.tools.log_parser.lines import (MAX_LINE, Piece, clean_line, content_lines, iter_byte_lines, iter_text_lines,
                                            numbered_lines, scan_window)
from ask_oom.tools.memory_trend import memory_trend

GiB, MiB = 1 << 30, 1 << 20
CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"
EXAMPLES = Path(__file__).resolve().parents[2] / "ui" / "examples"
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB. GPU 0 has a total capacity of 79.10 GiB "
       "of which 601.19 MiB is free. Including non-PyTorch memory, this process has 78.50 GiB memory in use. Of the "
       "allocated memory 75.33 GiB is allocated by PyTorch, and 1.21 GiB is reserved by PyTorch but unallocated.")
TRACEBACK = ['Traceback (most recent call last):', '  File "/w/train.py", line 10, in <module>', "    loss.backward()", OOM]


def _chunks(data: bytes, size: int):
    return (data[i:i + size] for i in range(0, len(data), size))


def _both(text: str):
    """The report of a str and of the same text streamed as bytes in odd-sized chunks: they must agree."""
    report = parse_log(text)
    assert parse_log_stream(_chunks(text.encode(), 65_537)).model_dump() == report.model_dump()
    return report


# -- an OOM anywhere in a line --------------------------------------------------------------------------------
def test_oom_in_the_middle_of_a_two_megabyte_line():
    half = "step done loss 1.25 lr 2e-05 " * 36_000   # ~1 MB each side, no newline anywhere
    r = _both(half + OOM + " " + half)
    assert r.kind == "cuda_oom" and r.requested_bytes == round(1.02 * GiB)
    assert r.gpu_total_bytes == round(79.10 * GiB) and r.torch_allocated_bytes == round(75.33 * GiB)
    assert r.lines == 1   # one physical line, whatever the pieces


@pytest.mark.parametrize("offset", [0, 1, 77, MAX_LINE - 100, MAX_LINE - 1, MAX_LINE, 3 * MAX_LINE + 5])
def test_oom_at_any_offset_of_a_long_line_is_read_whole(offset):
    r = _both("x" * offset + " " + OOM + " " + "y " * 5000)
    assert r.requested_bytes == round(1.02 * GiB) and r.gpu_free_bytes == round(601.19 * MiB)


def test_long_line_pieces_are_bounded_and_cover_the_line():
    line = ("word " * 3000) + OOM + ("z" * 20_000)
    pieces = list(iter_text_lines(line))
    assert all(len(p) <= MAX_LINE for p in pieces) and "".join(pieces) == line
    assert type(pieces[0]) is str and all(type(p) is Piece for p in pieces[1:])
    assert list(iter_byte_lines(_chunks(line.encode(), 1000))) == pieces


# -- carriage returns -----------------------------------------------------------------------------------------
def test_cr_only_line_ends_with_progress_bars_show_the_oom():
    body = [f"[INFO|trainer.py:2000] step {i} loss 1.{i % 10}" for i in range(400)]
    bars = [f" {p}%|##        | {p}/100 [00:{p:02d}<00:10,  2.00it/s]" for p in range(0, 100, 5)]
    text = "\r".join([*body[:200], *bars, *body[200:], *TRACEBACK, "[INFO] done"]) + "\r"
    r = _both(text)
    assert r.kind == "cuda_oom" and r.requested_bytes == round(1.02 * GiB)
    assert r.phase == "backward"   # the traceback's frames are read as lines


def test_short_cr_only_paste_with_a_bar_is_not_one_redraw():
    text = "\r".join(["Epoch 1", " 50%|#####     | 1/2 [00:01<00:01,  1.00it/s]", *TRACEBACK, "exiting"])
    assert _both(text).requested_bytes == round(1.02 * GiB)


def test_tqdm_redraws_on_one_physical_line_collapse_to_the_last():
    bars = "\r".join(f"{p % 100:3d}%|{'#' * (p % 100 // 10):10s}| {p}/400000 [00:10<11:11,  1.50it/s]" for p in range(50_000))
    text = "Training...\n" + bars + "\n" + "\n".join(TRACEBACK) + "\n"
    r = _both(text)
    assert r.kind == "cuda_oom" and r.lines == 6
    lines = [line for _, line in numbered_lines(text)]
    assert len(lines) == 6 and lines[1].startswith(" 99%|") and "49999/400000" in lines[1]


def test_memory_trend_reads_each_redraw_as_its_own_segment():
    """The progress reader looked at the whole physical line around every bar (quadratic on redraws, and a finished
    dataset-map bar at the head of the line hid the training bar after it)."""
    line = ("Map (num_proc=8): 100%|##########| 1000/1000 [00:01<00:00, 900.00 examples/s]\r"
            + "\r".join(f" {p}%|#         | {p}/500 [00:{p % 60:02d}<11:11,  1.50it/s]" for p in range(1, 400)))
    trend = memory_trend("start\n" + line + "\n" + OOM + "\n")
    assert (trend.steps_done, trend.total_steps) == (399, 500)


def test_a_traceback_printed_over_redraws_keeps_the_physical_line_numbers():
    text = (CORPUS / "tqdm_carriage_returns_unsloth_lm_head.log").read_text(encoding="utf-8")
    report = parse_log(text)
    assert report.lines == text.count("\n") + (0 if text.endswith("\n") else 1)
    assert any(e.fact == "kind" for e in report.evidence)


# -- numbers --------------------------------------------------------------------------------------------------
def test_markdown_bold_around_a_size_is_read_as_the_size():
    """Issue writers bold the number that matters: the parser reads the message as PyTorch printed it."""
    log = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate **10.36 GiB** (GPU 0; 14.76 GiB total "
           "capacity; 4.54 GiB already allocated; 9.01 GiB free; 4.93 GiB reserved in total by PyTorch)\n")
    report = parse_log(log)
    assert report.requested_bytes == parse_log(log.replace("**", "")).requested_bytes
    assert report.requested_bytes is not None and abs(report.requested_bytes / 2**30 - 10.36) < 0.01
    assert clean_line("    y = x ** 2 + z**3")[0] == "    y = x ** 2 + z**3"   # code keeps its operators


def test_comma_decimals_are_read_as_decimals():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1,50 GiB. GPU 0 has a total capacity "
                  "of 39,39 GiB of which 601,19 MiB is free. Of the allocated memory 35,33 GiB is allocated by PyTorch, "
                  "and 1,21 GiB is reserved by PyTorch but unallocated.")
    assert r.requested_bytes == round(1.5 * GiB) and r.gpu_total_bytes == round(39.39 * GiB)
    assert r.gpu_free_bytes == round(601.19 * MiB) and r.torch_allocated_bytes == round(35.33 * GiB)


def test_thousands_separators_are_not_decimals():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1,024 MiB. GPU 0 has a total capacity "
                  "of 79.10 GiB of which 1.00 MiB is free.")
    assert r.requested_bytes == 1024 * MiB


# -- the DeepSpeed launcher's argument list -------------------------------------------------------------------
LAUNCHER_LIST = ("[2024-05-01 10:00:00,000] [ERROR] [launch.py:321:sigkill_handler] ['/usr/bin/python3', '-u', "
                 "'llava/train/train_mem.py', '--local_rank=0', '--deepspeed', './scripts/zero3.json', "
                 "'--model_name_or_path', 'lmsys/vicuna-7b-v1.5', '--per_device_train_batch_size', '8', "
                 "'--gradient_accumulation_steps', '2', '--model_max_length', '2048', '--bf16', 'True', "
                 "'--gradient_checkpointing', '--tf32', 'True', '--lora_r=128'] exits with return code = -9")


def test_python_list_arguments_are_read():
    args = {k: v.value for k, v in parse_log(LAUNCHER_LIST).training_args.items()}
    assert args["per_device_train_batch_size"] == "8" and args["gradient_accumulation_steps"] == "2"
    assert args["model_max_length"] == "2048" and args["deepspeed"] == "./scripts/zero3.json"
    assert args["gradient_checkpointing"] == "true" and args["lora_r"] == "128" and args["bf16"] == "True"


def test_python_list_arguments_reach_the_setup_instead_of_an_assumed_batch():
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    long_list = LAUNCHER_LIST.replace("'--tf32', 'True',", "'--tf32', 'True', " + "'--x', 'y', " * 400)  # > MAX_LINE
    d = diagnose(DiagnoseRequest(log_text="\n".join([*TRACEBACK, long_list]), retrieve=False, plan=False))
    assert d.setup.micro_batch == 8 and d.setup.provenance["micro_batch"].origin == "log"
    assert d.setup.seq_len == 2048 and d.setup.grad_accum == 2
    assert not any(a.startswith("micro_batch") for a in d.assumptions)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["", " ", "10%|#| 1/10 [00:01<00:09, 1.0it/s]", "Traceback (most recent call last):",
                                 "hello", '  File "x.py", line 1', "99%|##| 9/10"]), min_size=1, max_size=8))
def test_the_short_line_path_reads_carriage_returns_as_the_splitter_does(segments):
    from ask_oom.tools.log_parser.lines import LineSplitter, split_physical_line

    line = "\r".join(segments)
    splitter = LineSplitter()
    slow = [*splitter.feed(line), *splitter.finish()]
    assert [(type(x) is Piece, x) for x in split_physical_line(line)] == [(type(x) is Piece, x) for x in slow]


RICH_RECORD = (
    "ERROR    2024-11-28 13:24:44,248 infinity_emb ERROR: CUDA   batch_handler.py:574\n"
    "         out of memory. Tried to allocate 3.88 GiB. GPU 0\n"
    "         has a total capacity of 44.42 GiB of which 920.81\n"
    "         MiB is free. Process 247326 has 5.95 GiB memory in\n"
    "         use. Process 248104 has 37.55 GiB memory in use.\n"
    "         Of the allocated memory 5.44 GiB is allocated by\n"
    "         PyTorch, and 6.72 MiB is reserved by PyTorch but\n"
    "         unallocated.\n"
    "         Traceback (most recent call last):\n"
    '           File "/app/infinity_emb/inference/batch_handler.py", line 574, in _core_batch\n'
    "[14:50:16.302] ERROR    khoj.utils.config: Error while loading the model   config.py:80\n")


def test_a_wrapped_rich_log_record_is_read_as_the_one_message_it_prints():
    """Rich's logging handler wraps a record's message inside its column, the source location right-aligned on the
    first line: joined, "CUDA" + "out of memory. Tried to allocate ..." is one message with all its numbers. The
    traceback after it is not part of it, and the lines after the record keep their numbers."""
    r = parse_log(RICH_RECORD)
    assert (r.kind, r.requested_bytes, r.gpu_total_bytes) == ("cuda_oom", 4166118277, 47695611822)
    assert [p.pid for p in r.other_processes] == [247326, 248104]
    lines = list(numbered_lines(RICH_RECORD))
    assert lines[0][1].startswith("ERROR    2024-11-28") and lines[0][1].endswith("unallocated.   batch_handler.py:574")
    assert [n for n, line in lines if line.startswith("         Traceback")] == [9]
    assert lines[-1] == (11, "[14:50:16.302] ERROR    khoj.utils.config: Error while loading the model   config.py:80")
    # a line that only looks like a record's head (no level near its start) is left as it is
    text = "see the failing call   trainer.py:12\n         indented continuation\n"
    assert [line for _, line in numbered_lines(text)] == text.splitlines()


def test_ggml_cpu_buffer_failure_is_host_ram_with_its_size():
    """ggml's CPU backend allocates its buffers in host RAM: its "failed to allocate buffer of size N" is a host
    memory error of N bytes."""
    r = parse_log("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 17179869216\n"
                  "llama_kv_cache_init: failed to allocate buffer for kv cache\n")
    assert (r.kind, r.requested_bytes) == ("host_oom", 17179869216)


_WINDOW_PIECES = ["abc", "\n", "\n", "\r", "100%|###| 5/10 [00:01<00:02, 1.2it/s]", "{'loss': 1.0}", "x" * 50,
                  "  INFO     hello   foo.py:12"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WINDOW_PIECES), max_size=80), st.integers(1, 300), st.integers(1, 300))
def test_the_scan_window_keeps_the_number_of_every_line_it_keeps(pieces, head, tail):
    """The lines of a long log's start and end are numbered in its scan window as in the whole log (redraws,
    Rich records and blank lines included), and only the lines between are left out."""
    text = "".join(pieces)
    window = scan_window(text, head, tail)
    assert window == text or len(window) < len(text)
    assert scan_window(window, head, tail) == window   # a window is its own window: readers may window again
    start, end = text.rfind("\n", 0, head) + 1, text.find("\n", len(text) - tail) + 1
    if not start or not end:
        return   # a cut inside a line: its part keeps its number, its text is partial
    whole, seen = list(numbered_lines(text)), list(numbered_lines(window))
    kept_head, kept_tail = len(list(numbered_lines(text[:start]))), len(list(numbered_lines(text[end:])))
    assert seen[:kept_head] == whole[:kept_head]
    assert seen[len(seen) - kept_tail:] == whole[len(whole) - kept_tail:]


def test_the_cues_of_a_long_log_come_from_its_end_with_their_line_numbers():
    """Megabytes of training progress, then the failure: the error's cues are read where they are (the log's last
    lines) and keep their numbers in the whole log, as short as the log is."""
    from ask_oom.tools.log_cues import log_cues

    tail = (EXAMPLES / "eval-oom.log").read_text()
    progress = "".join(f"{{'loss': {i % 7 / 3:.4f}, 'learning_rate': 1e-05, 'epoch': {i / 1000:.2f}}}\n"
                       for i in range(60_000))
    assert len(progress) > 2 * 1024 * 1024
    short, long = log_cues(tail), log_cues(progress + tail)
    assert short.failure is not None and short.phase is not None
    assert long.failure.line == short.failure.line + 60_000 and long.failure.text == short.failure.text
    assert long.phase == short.phase and long.phase_cue.line == short.phase_cue.line + 60_000


_CONTENT_PIECES = [*_WINDOW_PIECES, "\n\n\n", "\r\n", " ", "x" * 3000, "[12/01 10:00:00] INFO     hello world   foo.py:12",
                   "                                  continued", '  File "a.py", line 3']


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CONTENT_PIECES), max_size=60))
def test_content_lines_are_the_non_empty_numbered_lines(pieces):
    """Read in the pieces between blank lines, the text gives the same non-empty lines with the same numbers as
    read whole: no line state (a redraw, a long line's pieces, a Rich record) crosses a blank line."""
    text = "".join(pieces)
    assert list(content_lines(text)) == [(n, line) for n, line in numbered_lines(text) if line]
