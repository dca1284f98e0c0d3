"""Memory over time from a pasted log: readings in the formats people paste, progress, growth, bounded work."""

from __future__ import annotations

from ask_oom.tools.memory_trend import MAX_READINGS, memory_trend
from ask_oom.tools.units import GiB


def test_callback_readings_that_climb_are_growth():
    log = "\n".join(f"[rank0] step {s}: memory allocated {a} GiB, max allocated {a + 9} GiB" for s, a in
                    ((10, 30.5), (100, 34.0), (300, 41.25), (600, 52.0)))
    t = memory_trend(log)
    assert [r.step for r in t.readings] == [10, 100, 300, 600]
    assert t.growing and t.growth_bytes == int(21.5 * GiB)
    assert "30.50 GiB (step 10)" in t.describe() and "52.00 GiB (step 600)" in t.describe()


def test_flat_readings_are_not_growth():
    log = "\n".join(f"[INFO] [utils.py:804:see_memory_usage] MA {a} GB         Max_MA 20.1 GB" for a in (18.2, 18.3, 18.2, 18.3))
    t = memory_trend(log)
    assert len(t.readings) == 4 and not t.growing


def test_nvidia_smi_snapshots_are_readings():
    rows = [f"|  0%   45C    P0   250W / 400W |  {mib}MiB / 81920MiB |     99%      Default |" for mib in (40000, 52000, 64000)]
    t = memory_trend("\n".join(rows))
    assert [r.source for r in t.readings] == ["nvidia-smi"] * 3 and t.growing


def test_progress_ignores_finished_preprocessing_bars():
    log = ("Running tokenizer on dataset: 100%|██████████| 182406/182406 [06:41<00:00, 454.17 examples/s]\n"
           "Loading checkpoint shards: 100%|██████████| 7/7 [00:41<00:00,  5.93s/it]\n"
           " 13%|█▎        | 612/4686 [2:51:40<19:03:12, 16.84s/it]\n")
    t = memory_trend(log)
    assert (t.steps_done, t.total_steps) == (612, 4686)


def test_work_is_bounded_on_adversarial_input():
    many = "\n".join(f"memory allocated {i % 50}.00 GiB" for i in range(MAX_READINGS * 3))
    assert len(memory_trend(many).readings) == MAX_READINGS
    long_line = "9" * 1_000_000 + "MiB / 81920MiB\n"
    assert memory_trend(long_line).readings == [] or memory_trend(long_line).readings[0].line == 1
    assert memory_trend("").readings == []
