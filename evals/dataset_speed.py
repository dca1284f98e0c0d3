"""Dataset profiling speed: `profile_dataset` on 1,000,000 alpaca JSONL samples (estimate path, no tokenizer) and on
100,000 sharegpt samples with images (image headers read from disk), generated with a fixed seed in a temp dir.

Target: the million-sample JSONL profiled in under 60 s on 2 cores. Prints the median over the runs and samples/s.
Run: .venv/bin/python evals/dataset_speed.py [--runs 3] [--samples 1000000] [--image-samples 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from ask_oom.tools.dataset import profile_dataset, worst_case
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import resolve_model
from ask_oom.tools.training_setup import TrainingSetup

TARGET_S = 60.0
SEED = 1234
WORDS = ("the model memory gradient batch token sequence layer attention optimizer checkpoint training data "
         "sample length budget peak GPU tensor activation").split()
CJK = "模型训练显存梯度批次序列长度注意力优化器检查点数据样本预算峰值张量激活"
IMAGE_SIZES = ((640, 480), (1280, 720), (1920, 1080), (4000, 3000), (512, 512), (336, 336))


def _text(rng: random.Random, words: int, cjk: bool) -> str:
    if cjk:
        return "".join(rng.choice(CJK) for _ in range(words * 2))
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _length(rng: random.Random) -> int:
    """Words per field: mostly short, a long tail, a few very long (the ones a worst case is about)."""
    r = rng.random()
    if r < 0.0005:
        return rng.randint(5_000, 20_000)
    if r < 0.05:
        return rng.randint(300, 2_000)
    return rng.randint(5, 120)


def write_alpaca(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            cjk = rng.random() < 0.1
            rec = {"id": f"s{i}", "instruction": _text(rng, rng.randint(3, 30), cjk),
                   "input": _text(rng, rng.randint(0, 20), cjk) if rng.random() < 0.3 else "",
                   "output": _text(rng, _length(rng), cjk)}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_sharegpt_images(root: Path, n: int, rng: random.Random) -> None:
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir()
    paths = []
    for k, (w, h) in enumerate(IMAGE_SIZES):
        for fmt in ("png", "jpg"):
            p = img_dir / f"img{k}.{fmt}"
            Image.new("RGB", (w, h), (k * 30, 90, 160)).save(p)
            paths.append(f"images/{p.name}")
    with (root / "mm.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            images = [rng.choice(paths) for _ in range(rng.choice((0, 1, 1, 1, 2, 3)))]
            conv = [{"from": "human", "value": "<image>" * len(images) + _text(rng, rng.randint(5, 60), False)},
                    {"from": "gpt", "value": _text(rng, _length(rng), rng.random() < 0.1)}]
            fh.write(json.dumps({"id": i, "conversations": conv, "images": images}, ensure_ascii=False) + "\n")
    (root / "dataset_info.json").write_text(json.dumps({"mm": {
        "file_name": "mm.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}}))


def _time(runs: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _profile_then_worst_case(runs: int, profile, samples: int, case: str, model: str,
                             target_s: float | None) -> list[dict]:
    """Two rows: profiling a dataset (against `target_s` when given), then the worst batch of that profile for a LoRA
    run of `model` on an RTX 4090 at micro-batch 2."""
    med, prof = _time(runs, profile)
    rows = [{"case": case, "median_s": med, "samples_per_s": samples / med, "target_s": target_s,
             "ok": med < target_s if target_s else True, "p99": prof.total.p99, "max": prof.total.max}]
    setup = TrainingSetup(framework="llamafactory", model=resolve_model(model), method="lora", micro_batch=2,
                          gradient_checkpointing=True, gpu=lookup_gpu("RTX 4090"))
    med, verdict = _time(runs, lambda: worst_case(prof, setup, margin=0.9))
    name = model.split("/")[-1].removesuffix("-Instruct")
    rows.append({"case": f"worst_case on it ({name} LoRA, RTX 4090): {verdict.over_budget} over", "median_s": med,
                 "samples_per_s": samples / med, "target_s": None, "ok": True, "p99": prof.total.p99,
                 "max": prof.total.max})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--image-samples", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(SEED)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_alpaca(root / "alpaca.jsonl", args.samples, rng)
        gen_s = time.perf_counter() - t0
        size_mb = (root / "alpaca.jsonl").stat().st_size / 1e6
        rows += _profile_then_worst_case(
            args.runs, lambda: profile_dataset(root / "alpaca.jsonl", cutoff_len=4096), args.samples,
            f"{args.samples} alpaca JSONL ({size_mb:.0f} MB), estimate", "meta-llama/Llama-3.1-8B", TARGET_S)
        rows[-2]["generate_s"] = gen_s
        mm = root / "mm"
        mm.mkdir()
        write_sharegpt_images(mm, args.image_samples, rng)
        rows += _profile_then_worst_case(
            args.runs, lambda: profile_dataset(mm, model_family="qwen2_vl", cutoff_len=4096), args.image_samples,
            f"{args.image_samples} sharegpt + images (dataset_info.json), estimate", "Qwen/Qwen2-VL-7B-Instruct", None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':62} {'median s':>9} {'samples/s':>11} {'p99':>6} {'max':>7}  target")
    for r in rows:
        target = f"< {r['target_s']:.0f} s {'OK' if r['ok'] else 'MISSED'}" if r["target_s"] else "-"
        print(f"{r['case']:62} {r['median_s']:9.2f} {r['samples_per_s']:11,.0f} {r['p99']:6} {r['max']:7}  {target}")
    print(f"(median of {args.runs} runs; data generated with seed {SEED})")


if __name__ == "__main__":
    main()
