"""Parser speed and memory on a generated realistic training log (default 100 MB): MB/s (median of several
runs) and peak traced memory while streaming it, printed as tables.

    .venv/bin/python evals/parser_speed.py [--mb 100] [--runs 5]

The log mixes what long runs print: multi-rank HF/DeepSpeed INFO lines, loss dicts, tqdm redraws, ANSI
colours, argument dumps, an nvidia-smi table, warnings, and an OOM traceback on four ranks at the end.
Target (issue 3): 100 MB in under 10 s on one core, memory bounded (independent of the log size), in every case:
the worst-case table adds logs where no line shape repeats (the shape cache cannot help) and random printable text.

The paste table (issue 18) times the shapes that used to be quadratic or lose the error, through the parser alone and
through every reader of the log text in the pipeline (`agent.diagnose` without retrieval or planning): tqdm's `\r`
redraws on one line, a 2 MB single line with the OOM in its middle, CR-only line ends. Each must stay linear: the
"per MB" column is the cost of one MB of that shape, and the 2x column the same input doubled (about twice the time).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

_OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB. GPU {r} has a total capacity of 79.10 GiB "
        "of which 601.19 MiB is free. Including non-PyTorch memory, this process has 78.50 GiB memory in use. Of the "
        "allocated memory 75.33 GiB is allocated by PyTorch, and 1.21 GiB is reserved by PyTorch but unallocated. If "
        "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
        "fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


def _line(rng: random.Random, step: int) -> str:
    r = rng.randrange(8)
    kind = rng.randrange(100)
    if kind < 35:
        return (f"[rank{r}]:{{'loss': {rng.uniform(0.5, 2.5):.4f}, 'grad_norm': {rng.uniform(0.1, 3):.3f}, "
                f"'learning_rate': {rng.uniform(1e-6, 2e-5):.3e}, 'epoch': {step / 1e5:.2f}}}")
    if kind < 55:
        bars = "\r".join(f"{p:3d}%|{'#' * (p // 10):10s}| {p * 40}/4000 [00:{p:02d}<11:11,  1.{p:02d}it/s]"
                         for p in range(step % 90, step % 90 + 6))
        return bars
    if kind < 70:
        return (f"[2025-03-0{r + 1} 12:{step % 60:02d}:{rng.randrange(60):02d},{rng.randrange(1000):03d}] [INFO] "
                f"[logging.py:128:log_dist] [Rank {r}] step={step}, skipped=0, lr=[{rng.uniform(1e-6, 2e-5):.6e}], "
                f"mom=[(0.9, 0.95)]")
    if kind < 80:
        return (f"\x1b[32m[INFO|trainer.py:2{rng.randrange(1000):03d}] 2025-03-01 12:00:00,000\x1b[0m >> "
                f"Saving model checkpoint to /out/run/checkpoint-{step}")
    if kind < 88:
        return (f"[rank{r}]:[W301 12:00:{rng.randrange(60):02d}.{rng.randrange(10**6):06d} ProcessGroupNCCL.cpp:4115] "
                f"[PG ID 0 PG GUID 0 Rank {r}] using GPU {r} to perform barrier as devices used by this process are "
                f"currently unknown.")
    if kind < 94:
        return (f"[2025-03-01 12:00:00,000] [INFO] [config.py:1000:print]   "
                f"{rng.choice(['train_micro_batch_size_per_gpu', 'gradient_accumulation_steps', 'zero_optimization_stage'])}"
                f"  {rng.randrange(1, 9)}")
    if kind < 97:
        return f"|   {r}  NVIDIA H100 80GB HBM3          On  | 00000000:1B:00.0 Off |                    0 |"
    return (f"/usr/lib/python3.11/site-packages/torch/utils/checkpoint.py:{rng.randrange(2000)}: UserWarning: "
            f"torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly.")


def generate_log(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write a realistic multi-rank training log of about size_mb MB ending in an OOM; returns its size."""
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    written = 0
    step = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        header = ("llamafactory-cli train examples/train_full/qwen2_full_sft_ds3.yaml\n"
                  "- `transformers` version: 4.46.1\n- PyTorch version: 2.5.1+cu124 (GPU)\n"
                  "[2025-03-01 11:59:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] DeepSpeed info: version=0.15.4\n")
        fh.write(header)
        written += len(header)
        batch = []
        while written < target:
            step += 1
            line = _line(rng, step) + "\n"
            batch.append(line)
            written += len(line)
            if len(batch) >= 4096:
                fh.write("".join(batch))
                batch.clear()
        fh.write("".join(batch))
        tail = "".join(f"[rank{r}]: Traceback (most recent call last):\n"
                       f"[rank{r}]:   File \"/w/train.py\", line 10, in <module>\n"
                       f"[rank{r}]:     loss.backward()\n[rank{r}]: {_OOM.format(r=r)}\n" for r in range(4))
        fh.write(tail)
    return path.stat().st_size


def generate_diverse_log(path: Path, size_mb: float, seed: int = 1) -> int:
    """Worst case for the parser's shape cache: every line a different mix of path-like words (no repetition)."""
    import string

    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + "_/.=:-"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 14))) for _ in range(20000)]
    target = int(size_mb * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        while written < target:
            block = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) + "\n" for _ in range(2000))
            fh.write(block)
            written += len(block)
        fh.write("RuntimeError: CUDA error: out of memory\n")
    return path.stat().st_size


def generate_random_text(path: Path, size_mb: float, seed: int = 2) -> int:
    """Random printable ASCII (what `ask-oom < garbage` sees): short lines, stray \\r, brackets, digits."""
    import string

    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        while written < target:
            block = "".join(rng.choices(string.printable, k=1 << 16))
            fh.write(block)
            written += len(block)
    return path.stat().st_size


def tqdm_redraws(size_mb: float) -> str:
    """One physical line of tqdm `\r` redraws (a progress bar left running without a newline), then the OOM."""
    bars, n, p = [], 0, 0
    while n < size_mb * 1_000_000:
        bar = f"{p % 100:3d}%|{'#' * (p % 100 // 10):10s}| {p}/400000 [00:10<11:11,  1.50it/s]"
        bars.append(bar)
        n += len(bar) + 1
        p += 1
    return "Training...\n" + "\r".join(bars) + "\n" + _OOM.format(r=0) + "\n"


def long_single_line(size_mb: float) -> str:
    """One line of `size_mb` MB (a log whose newlines were lost) with the OOM message in its middle."""
    half = "step done loss 1.25 lr 2e-05 " * int(size_mb * 1_000_000 / 2 / 29)
    return half + _OOM.format(r=0) + " " + half


def cr_only(size_mb: float) -> str:
    """The realistic log with old-Mac CR line ends (no "\n" at all), the OOM traceback at its end."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cr.log"
        generate_log(path, size_mb)
        return path.read_text(encoding="utf-8").replace("\n", "\r")


PASTES = (("tqdm \\r redraws on one line", tqdm_redraws, 4.7), ("one line with the OOM in its middle", long_single_line, 2.0),
          ("CR-only line ends", cr_only, 5.0))


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return statistics.median(times)


def paste_table(runs: int, scale: float = 1.0) -> None:
    """The shapes that used to be quadratic or hide the OOM: parser alone and every log reader of the pipeline, each
    timed at its size and at twice its size (linear: about twice the time)."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest
    from ask_oom.tools.log_parser import parse_log

    print(f"\n## Pasted shapes (median CPU time of {runs} runs)\n")
    print("| input | size | parse_log | all log readers (diagnose) | per MB (readers) | 2x size (readers) | OOM found |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, gen, size_mb in PASTES:
        size_mb *= scale
        text, double = gen(size_mb), gen(2 * size_mb)
        request = DiagnoseRequest(log_text=text, retrieve=False, plan=False)
        parse_s = _median_time(lambda: parse_log(text), runs)
        readers_s = _median_time(lambda: diagnose(request), runs)
        double_s = _median_time(lambda: diagnose(DiagnoseRequest(log_text=double, retrieve=False, plan=False)), runs)
        found = diagnose(request).report
        mb = len(text) / 1e6
        print(f"| {name} | {mb:.1f} MB | {parse_s:.2f} s | {readers_s:.2f} s | {readers_s / mb:.2f} s | "
              f"{double_s:.2f} s | {found.kind} ({found.requested_bytes} B requested) |")


def _chunks(path: Path, size: int = 1 << 20):
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(size)
            if not chunk:
                return
            yield chunk


def main(argv: list[str] | None = None) -> int:
    from ask_oom.tools.log_parser import parse_log_stream

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated log in MB (default 100)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    ap.add_argument("--diverse-mb", type=float, default=20.0,
                    help="size of the no-repetition worst-case log (default 20 MB; 0 to skip)")
    ap.add_argument("--random-mb", type=float, default=20.0,
                    help="size of the random printable text case (default 20 MB; 0 to skip)")
    ap.add_argument("--pastes", type=float, default=1.0,
                    help="scale of the pasted-shape table (1: the issue's sizes, 4.7 / 2 / 5 MB; 0 to skip)")
    ap.add_argument("--only-pastes", action="store_true", help="print only the pasted-shape table")
    args = ap.parse_args(argv)
    if args.only_pastes:
        paste_table(args.runs, args.pastes)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.log"
        size = generate_log(path, args.mb)
        mb = size / 1e6
        times, walls = [], []
        report = None
        for _ in range(args.runs):
            c0, t0 = time.process_time(), time.perf_counter()
            report = parse_log_stream(_chunks(path))
            times.append(time.process_time() - c0)  # CPU time of this process: the machine is shared
            walls.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"## Parser speed ({mb:.1f} MB generated log, {report.lines:,} lines, {args.runs} runs)\n")
        print("| metric | value |")
        print("|---|---:|")
        print(f"| median CPU time (one core) | {med:.2f} s |")
        print(f"| min / max CPU time | {min(times):.2f} / {max(times):.2f} s |")
        print(f"| median wall time | {statistics.median(walls):.2f} s |")
        print(f"| throughput (median) | {mb / med:.1f} MB/s |")
        print(f"| lines/s (median) | {report.lines / med:,.0f} |")
        print(f"| result | {report.kind}, requested {report.requested_bytes}, ranks {report.ranks}, phase {report.phase} |")

        worst = [(name, gen, size_mb) for name, gen, size_mb in (
            ("no repeated line shapes", generate_diverse_log, args.diverse_mb),
            ("random printable text", generate_random_text, args.random_mb)) if size_mb > 0]
        if worst:
            print(f"\n## Worst cases (no line shape repeats; median of {max(1, args.runs // 2)} runs)\n")
            print("| input | size | lines | median CPU time | throughput | 100 MB would take | result |")
            print("|---|---:|---:|---:|---:|---:|---|")
        for name, gen, size_mb in worst:
            wpath = Path(tmp) / "worst.log"
            wsize = gen(wpath, size_mb)
            wtimes = []
            for _ in range(max(1, args.runs // 2)):
                c0 = time.process_time()
                wreport = parse_log_stream(_chunks(wpath))
                wtimes.append(time.process_time() - c0)
            wmed = statistics.median(wtimes)
            print(f"| {name} | {wsize / 1e6:.1f} MB | {wreport.lines:,} | {wmed:.2f} s | {wsize / 1e6 / wmed:.1f} MB/s "
                  f"| {100 * wmed / (wsize / 1e6):.1f} s | {wreport.kind} |")
        print("\n## Peak traced memory while streaming (tracemalloc, one run each)\n")
        print("| log size | peak traced memory |")
        print("|---:|---:|")
        for frac in (0.1, 1.0):
            part = Path(tmp) / f"part{frac}.log"
            if frac < 1.0:
                with path.open("rb") as src, part.open("wb") as dst:
                    dst.write(src.read(int(size * frac)))
            else:
                part = path
            tracemalloc.start()
            parse_log_stream(_chunks(part))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"| {part.stat().st_size / 1e6:.1f} MB | {peak / 2**20:.1f} MiB |")
    if args.pastes > 0:
        paste_table(args.runs, args.pastes)
    ok = med < 10.0 and report is not None and report.kind == "cuda_oom"
    print(f"\ntarget < 10 s for 100 MB: {'met' if ok and args.mb >= 100 else 'see numbers'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
