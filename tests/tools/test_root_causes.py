"""Root-cause ranking: each signal of ../shared/oom-signals.md moves the right label to the top, on logs
written from the formats PyTorch, DeepSpeed and the launchers print (numbers chosen for these tests)."""

from __future__ import annotations

import math

import pytest

from ask_oom.tools.labels import ROOT_CAUSES
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.memory import resolve_model
from ask_oom.tools.memory_trend import memory_trend
from ask_oom.tools.root_causes import rank_root_causes, tensor_candidates
from ask_oom.tools.setup_assembly import assemble_setup
from ask_oom.tools.training_setup import Provenance, TrainingSetup

NEW_FMT = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {req}. GPU {gpu} has a total capacity of {total} "
           "of which {free} is free. {procs}Including non-PyTorch memory, this process has {used} memory in use. Of the "
           "allocated memory {alloc} is allocated by PyTorch, and {unalloc} is reserved by PyTorch but unallocated. If "
           "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to "
           "avoid fragmentation.")


def oom(req, total, free, used, alloc, unalloc, gpu=0, procs="", frames=""):
    return frames + NEW_FMT.format(req=req, gpu=gpu, total=total, free=free, used=used, alloc=alloc, unalloc=unalloc,
                                   procs=procs) + "\n"


def labels(causes):
    return [c.label for c in causes]


def observed(setup: TrainingSetup, **facts) -> TrainingSetup:
    for k, v in facts.items():
        setup = setup.with_fact(k, v, "config", k)
    return setup


# a small request on a full GPU: what fills the card is the model states, loaded or trained
STATES_FILL_THE_CARD = {"weights_exceed_gpu", "model_load_oom", "full_ft_model_states"}


def test_every_cause_is_a_known_label_with_evidence():
    report = parse_log(oom("3.00 GiB", "79.19 GiB", "1.20 GiB", "77.90 GiB", "70.10 GiB", "6.40 GiB"))
    causes = rank_root_causes(report)
    assert causes and all(c.label in ROOT_CAUSES and c.why and 0 <= c.score <= 1 for c in causes)
    assert [c.score for c in causes] == sorted((c.score for c in causes), reverse=True)


def test_reserved_but_unallocated_far_above_the_request_is_fragmentation():
    report = parse_log(oom("320.00 MiB", "79.19 GiB", "150.00 MiB", "78.95 GiB", "73.60 GiB", "4.90 GiB"))
    causes = rank_root_causes(report)
    assert causes[0].label == "fragmentation"
    assert any("4.90 GiB" in w for w in causes[0].why)


def test_memory_held_by_another_process_is_other_process():
    text = oom("96.00 MiB", "31.74 GiB", "20.00 MiB", "13.10 GiB", "12.80 GiB", "9.00 MiB",
               procs="Process 51230 has 18.55 GiB memory in use. ")
    causes = rank_root_causes(parse_log(text))
    assert causes[0].label == "other_process"
    assert any("18.5" in w or "18.6" in w for w in causes[0].why)


def test_request_equal_to_fp32_logits_names_the_large_vocabulary():
    gemma = resolve_model("google/gemma-7b")
    assert gemma is not None and gemma.vocab_size == 256000
    setup = observed(TrainingSetup(model=gemma, method="lora"), micro_batch=4, seq_len=1024)
    req = 4 * 1023 * 256000 * 4  # shifted logits upcast to fp32 by the loss
    report = parse_log(oom(f"{req / 2**30:.2f} GiB", "79.19 GiB", "2.10 GiB", "77.00 GiB", "74.50 GiB", "1.00 GiB"))
    causes = rank_root_causes(report, setup)
    # the request is the logits of a micro-batch of 4: the vocabulary and the batch lead together (which one first is
    # the fitted weights' call), each showing the arithmetic
    assert set(labels(causes)[:2]) == {"logits_large_vocab", "batch_too_large"}
    assert all(any("256,000 vocab" in w for w in c.why) for c in causes[:2])


def test_tensor_candidates_cover_logits_weights_and_scores():
    arch = resolve_model("meta-llama/Llama-2-7b-hf")
    setup = TrainingSetup(model=arch, micro_batch=2, seq_len=4096, method="full")
    names = {c.name for c in tensor_candidates(setup)}
    assert {"train logits fp32", "attention scores bf16", "one MLP weight fp32"} <= names
    mlp = next(c for c in tensor_candidates(setup) if c.name == "one MLP weight fp32")
    assert mlp.bytes == 4096 * 11008 * 4 and "full_ft_model_states" in mlp.labels


def test_host_memory_kill_under_offload_is_offload_host_ram():
    log = ("[INFO] [utils.py:789:see_memory_usage] CPU Virtual Memory:  used = 490.10 GB, percent = 97.9%\n"
           "[ERROR] [launch.py:325:sigkill_handler] ['/usr/bin/python3', '-u', 'train.py', '--local_rank=0'] exits with return code = -9\n")
    setup = observed(TrainingSetup(), zero_stage=3, offload_optimizer=True, offload_param=True, method="full")
    causes = rank_root_causes(parse_log(log), setup)
    assert causes[0].label == "offload_host_ram"


def test_a_paste_that_stops_while_the_optimizer_runs_in_host_ram_suspects_the_host():
    """No error shown, but DeepSpeed's CPU Adam was loaded: a host OOM kill prints nothing itself."""
    log = ("Loading extension module cpu_adam...\nTime to load cpu_adam op: 60.9 seconds\n"
           "Loading checkpoint shards: 100%|██████████| 8/8 [19:40<00:00, 147.57s/it]\n")
    report = parse_log(log)
    setup = assemble_setup(report)
    assert setup.offload_optimizer and setup.provenance["offload_optimizer"].origin == "log"
    causes = rank_root_causes(report, setup)
    host = next(c for c in causes if c.label == "offload_host_ram")
    assert any("offloaded to host RAM (log line 1" in w and "dmesg" in w for w in host.why)
    # the same paste with the optimizer on the GPU carries no such evidence
    plain = parse_log(log.replace("cpu_adam", "fused_adam"))
    assert not any("dmesg" in w for c in rank_root_causes(plain, assemble_setup(plain)) for w in c.why)


def test_sigfpe_is_not_oom():
    log = ("E0301 10:11:12.000000 1 torch/distributed/elastic/multiprocessing/api.py:833] failed (exitcode: -8) "
           "local_rank: 1 (pid: 4242) of binary: /usr/bin/python3\n")
    causes = rank_root_causes(parse_log(log))
    assert causes[0].label == "not_oom"


def test_bitsandbytes_error_beside_a_full_gpu_is_in_the_top_three():
    log = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 1; 15.77 GiB total capacity; "
           "15.12 GiB already allocated; 12.50 MiB free; 15.30 GiB reserved in total by PyTorch)\n"
           "ValueError: You can't pass `load_in_4bit`or `load_in_8bit` as a kwarg when passing `quantization_config` argument at the same time.\n")
    causes = rank_root_causes(parse_log(log))
    # the bitsandbytes misuse and a full GPU's states lead together (which states cause is the fitted weights' call)
    top = labels(causes)[:2]
    assert "quantization_setup" in top and set(top) - {"quantization_setup"} <= STATES_FILL_THE_CARD


def test_readings_climbing_over_steps_is_memory_growth():
    lines = [f"step {s}: memory allocated {a:.2f} GiB" for s, a in ((50, 30.0), (200, 36.5), (400, 44.0), (800, 51.5))]
    text = "\n".join(lines) + "\n" + oom("1.10 GiB", "79.19 GiB", "700.00 MiB", "78.40 GiB", "74.90 GiB", "2.80 GiB")
    report = parse_log(text)
    without = rank_root_causes(report)
    with_trend = rank_root_causes(report, trend=memory_trend(text))
    assert without[0].label == "fragmentation"  # the single message alone reads as fragmentation
    assert with_trend[0].label == "memory_growth"
    assert any("30.00 GiB" in w and "74.90 GiB" in w for w in with_trend[0].why)


def test_whole_model_on_one_of_several_idle_gpus_is_imbalance():
    smi = "".join(
        f"|   {i}  NVIDIA GeForce RTX 4090        Off | 00000000:{31 + i}:00.0 Off |                  Off |\n"
        f"| 30%   25C    P8              20W / 450W |     {used}MiB / 24564MiB |      0%      Default |\n"
        for i, used in ((0, 40), (1, 12), (2, 12), (3, 12)))
    text = smi + oom("224.00 MiB", "23.65 GiB", "40.00 MiB", "23.55 GiB", "22.95 GiB", "180.00 MiB")
    causes = rank_root_causes(parse_log(text))
    assert causes[0].label == "multi_gpu_imbalance"


@pytest.mark.parametrize("phase_frame, label", [
    ('  File "x/trainer.py", line 3100, in evaluation_loop\n', "eval_accumulation"),
    ('  File "x/peft/tuners/lora/model.py", line 400, in merge_and_unload\n', "model_load_oom"),
    ('  File "x/generation/utils.py", line 1500, in generate\n', "generation_kv_cache"),
])
def test_the_phase_narrows_the_causes(phase_frame, label):
    text = "Traceback (most recent call last):\n" + phase_frame + oom(
        "2.00 GiB", "44.35 GiB", "1.10 GiB", "43.20 GiB", "41.90 GiB", "0.90 GiB")
    causes = rank_root_causes(parse_log(text))
    assert causes[0].label == label


def test_similar_cases_are_weak_evidence_only():
    class Hit:  # the shape of kb.index.CaseHit that the ranking reads
        def __init__(self, labels):
            self.case = type("C", (), {"id": "x-case", "root_causes": labels})()

    report = parse_log(oom("320.00 MiB", "79.19 GiB", "150.00 MiB", "78.95 GiB", "73.60 GiB", "4.90 GiB"))
    causes = rank_root_causes(report, hits=[Hit(["eval_accumulation"])])
    assert causes[0].label == "fragmentation"
    assert "eval_accumulation" in labels(causes)


def test_provenance_default_attention_is_not_treated_as_eager():
    setup = TrainingSetup(attn_implementation="eager", provenance={"attn_implementation": Provenance(origin="default")})
    text = ('Traceback (most recent call last):\n  File "m.py", line 10, in forward\n    attn_weights = torch.matmul(q, k)\n'
            + oom("12.00 GiB", "79.19 GiB", "5.00 GiB", "74.10 GiB", "72.00 GiB", "1.50 GiB"))
    causes = rank_root_causes(parse_log(text), setup)
    assert "eager_attention" not in labels(causes)[:1]


from hypothesis import given, settings, strategies as st  # noqa: E402

from ask_oom.tools.memory.schema import MemoryBreakdown, MemoryComponent, MemoryEstimate  # noqa: E402
from ask_oom.tools.report import OOMReport, OtherProcess  # noqa: E402

_sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=2**42))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["cuda_oom", "host_oom", "cublas_alloc", "not_oom", "related_error", "xla_oom"]),
       req=_sizes, total=_sizes, free=_sizes, used=_sizes, alloc=_sizes, unalloc=_sizes,
       phase=st.sampled_from(["unknown", "forward", "backward", "optimizer_step", "evaluation", "model_loading"]),
       peak=st.integers(min_value=0, max_value=2**40), batch=st.integers(min_value=1, max_value=64),
       seq=st.integers(min_value=1, max_value=131072), others=st.lists(st.integers(min_value=0, max_value=2**38), max_size=3))
def test_ranking_never_raises_on_any_numbers(kind, req, total, free, used, alloc, unalloc, phase, peak, batch, seq, others):
    report = OOMReport(kind=kind, requested_bytes=req, gpu_total_bytes=total, gpu_free_bytes=free, process_used_bytes=used,
                       torch_allocated_bytes=alloc, torch_reserved_unallocated_bytes=unalloc, phase=phase,
                       other_processes=[OtherProcess(pid=i + 1, bytes=b) for i, b in enumerate(others)])
    setup = observed(TrainingSetup(model=resolve_model("qwen2.5-7b")), micro_batch=batch, seq_len=seq, num_gpus=2)
    estimate = MemoryEstimate(peak_bytes=peak, peak_phase="backward", n_params=7_000_000_000, n_trainable=7_000_000_000,
                              budget_bytes=total, breakdown=MemoryBreakdown(components=[
                                  MemoryComponent(name="weights", bytes=peak // 3), MemoryComponent(name="logits_and_loss", bytes=peak // 3)]))
    causes = rank_root_causes(report, setup, estimate)
    assert all(c.label in ROOT_CAUSES for c in causes)


def test_request_equal_to_vision_attention_over_one_image_is_vision_tokens():
    arch = resolve_model("Qwen/Qwen2-VL-7B-Instruct")
    assert arch is not None and arch.vision is not None
    pixels = 1280 * 28 * 28 * 4  # a large max_pixels, in the units Qwen2-VL counts
    setup = observed(TrainingSetup(model=arch, method="lora"), image_max_pixels=pixels, micro_batch=1, seq_len=4096)
    patches = pixels // arch.vision.patch_size ** 2
    req = patches * patches * arch.vision.num_heads * 4
    report = parse_log(oom(f"{req / 2**30:.2f} GiB", "79.19 GiB", "30.00 GiB", "49.00 GiB", "45.00 GiB", "2.00 GiB"))
    causes = rank_root_causes(report, setup)
    assert causes[0].label == "vision_tokens"
    assert any("patches^2" in w for w in causes[0].why)


# --- mechanisms that generalise beyond the numbers (log cues, provenance, phases) ---------------------------------

from ask_oom.tools.gpus import lookup_gpu  # noqa: E402
from ask_oom.tools.log_cues import log_cues  # noqa: E402


def test_an_assumed_micro_batch_does_not_blame_the_batch():
    """A stated micro-batch of 8 scales the blame on the batch; the same 8 assumed from a framework default adds
    none: the answer neither cites it nor gives the batch more weight than the phase and the request already do."""
    text = "  File \"t.py\", line 1, in backward\n" + oom("2.70 GiB", "23.65 GiB", "1.10 GiB", "22.40 GiB", "21.90 GiB", "300.00 MiB")
    assumed = TrainingSetup(micro_batch=8).with_fact("micro_batch", 8, "default", "framework default")
    stated = observed(TrainingSetup(), micro_batch=8)
    by_stated = {c.label: c for c in rank_root_causes(parse_log(text), stated)}
    by_assumed = {c.label: c for c in rank_root_causes(parse_log(text), assumed)}
    # activations in backward grow with the micro-batch and the length alike: a stated batch of 8 puts the batch
    # among the two leading causes (which of the two leads is the fitted weights' call)
    assert "batch_too_large" in labels(rank_root_causes(parse_log(text), stated))[:2]
    assert any("micro-batch 8" in w for w in by_stated["batch_too_large"].why)
    # with the batch only assumed, the batch may drop out of the ranking altogether (probability 0): never cited
    batch = by_assumed.get("batch_too_large")
    assumed_why, assumed_p = (batch.why, batch.probability) if batch is not None else ([], 0.0)
    assert not any("micro-batch 8" in w for w in assumed_why)
    assert assumed_p < by_stated["batch_too_large"].probability
    from ask_oom.assistant.deciding_facts import CONFIDENT

    assert assumed_p < CONFIDENT   # unsure: it asks rather than blames


def test_fp32_logits_of_a_large_vocabulary_without_a_model_in_backward():
    # 4,096 tokens x 151,936 vocab x 4 B = 2.32 GiB, requested in backward; the model is not named.
    text = "    torch.autograd.backward(\n" + oom("2.32 GiB", "79.19 GiB", "1.50 GiB", "77.60 GiB", "76.90 GiB", "200.00 MiB")
    causes = rank_root_causes(parse_log(text), TrainingSetup())
    # the fitted weights rank the logits and the tokens that make them close together; the arithmetic names the tensor
    logits = next(c for c in causes[:2] if c.label == "logits_large_vocab")
    assert any("4,096 tokens x 151,936 vocab" in w for w in logits.why)
    assert {c.label for c in causes[:2]} == {"logits_large_vocab", "seq_len_too_long"}


def test_large_allocation_in_the_optimizer_step_is_a_state_partition_not_an_activation():
    text = oom("9.50 GiB", "39.39 GiB", "6.20 GiB", "33.10 GiB", "32.90 GiB", "100.00 MiB") + \
        "It happens at optimizer state initialization\n"
    report = parse_log(text)
    report = report.model_copy(update={"phase": log_cues(text).phase})
    setup = TrainingSetup(num_gpus=2).with_fact("num_gpus", 2, "user", "2 GPUs")
    got = labels(rank_root_causes(report, setup))
    assert got[0] in ("zero_stage_insufficient", "full_ft_model_states") and "zero_stage_insufficient" in got[:2]
    assert "seq_len_too_long" not in got[:2]


def test_ddp_replicas_fill_most_of_each_gpu():
    """Each of 4 data-parallel GPUs keeping a full replica is named as evidence for sharding; how much it weighs is the
    fitted table's (on public reports it is rarely the settled cause), but the answer is never empty: when no label
    gains enough points to rank, the per-step activations are named as the usual suspects."""
    from ask_oom.tools.root_causes.ranking import collect_signals
    from ask_oom.tools.root_causes.weights import DEFAULT_WEIGHTS

    text = oom("1.00 GiB", "15.77 GiB", "1.00 GiB", "14.30 GiB", "13.20 GiB", "400.00 MiB")
    setup = TrainingSetup(num_gpus=4).with_fact("num_gpus", 4, "user", "4 GPUs")
    signals = collect_signals(parse_log(text), setup)
    replicas = [s for s in signals if s.name == "replicas_fill_gpu"]
    assert replicas and replicas[0].label == "zero_stage_insufficient" and "full replica" in replicas[0].reason
    whisper = DEFAULT_WEIGHTS.replace(points={"replicas_fill_gpu": 0.1})
    causes = rank_root_causes(parse_log(text), setup, weights=whisper)
    assert causes and {"batch_too_large", "seq_len_too_long"} <= set(labels(causes))
    loud = DEFAULT_WEIGHTS.replace(points={"replicas_fill_gpu": 3.0})
    assert labels(rank_root_causes(parse_log(text), setup, weights=loud))[0] == "zero_stage_insufficient"


def test_quantization_in_a_report_without_numbers():
    text = "I load the checkpoint with load_in_4bit but it still runs out of memory (OOM) during training"
    report = parse_log(text).model_copy(update={"kind": "cuda_oom"})
    assert labels(rank_root_causes(report, TrainingSetup(), cues=log_cues(text)))[0] == "quantization_setup"


def test_bf16_on_a_pre_ampere_gpu_is_a_dtype_problem():
    setup = observed(TrainingSetup(gpu=lookup_gpu("V100")), precision="bf16_mixed", gpu=lookup_gpu("V100"))
    report = parse_log("RuntimeError: CUDA error: an illegal memory access was encountered")
    assert "dtype_unsupported" in labels(rank_root_causes(report, setup, cues=log_cues("")))[:2]
    text = "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0."
    assert labels(rank_root_causes(parse_log(text), TrainingSetup(), cues=log_cues(text)))[0] == "dtype_unsupported"


def test_device_map_auto_with_gpu0_out_of_memory_is_imbalance():
    text = oom("500.00 MiB", "23.65 GiB", "200.00 MiB", "23.40 GiB", "22.80 GiB", "300.00 MiB")
    setup = TrainingSetup(num_gpus=2).with_fact("num_gpus", 2, "user", "2 GPUs")
    cues = log_cues(text, 'model = AutoModelForCausalLM.from_pretrained(name, device_map="auto")')
    assert labels(rank_root_causes(parse_log(text), setup, cues=cues))[0] == "multi_gpu_imbalance"
    assert "multi_gpu_imbalance" not in labels(rank_root_causes(parse_log(text), setup, cues=log_cues(text)))[:1]


def test_same_sized_candidates_count_once():
    mixtral = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    setup = observed(TrainingSetup(model=mixtral), method="lora")
    text = oom("112.00 MiB", "79.19 GiB", "20.00 MiB", "79.10 GiB", "78.50 GiB", "100.00 MiB")
    causes = {c.label: c for c in rank_root_causes(parse_log(text), setup)}
    assert sum("request equals" in w for w in causes["model_load_oom"].why) == 1


def test_a_vision_language_model_by_name_makes_a_huge_request_visual_tokens():
    text = oom("30.00 GiB", "79.19 GiB", "20.00 GiB", "58.00 GiB", "57.00 GiB", "500.00 MiB")
    setup = TrainingSetup(model_name="someorg/Foo-VL-7B-Chat").with_fact("model_name", "someorg/Foo-VL-7B-Chat", "config", "model")
    assert labels(rank_root_causes(parse_log(text), setup))[0] == "vision_tokens"
    assert "vision_tokens" not in labels(rank_root_causes(parse_log(text), TrainingSetup()))[:1]


def test_image_inputs_in_the_traceback_make_the_run_multimodal():
    text = "    image_embeds = self.visual(pixel_values, grid_thw=image_grid_thw)\n" + \
        oom("40.00 GiB", "79.19 GiB", "30.00 GiB", "48.00 GiB", "47.00 GiB", "500.00 MiB")
    causes = rank_root_causes(parse_log(text), TrainingSetup(), cues=log_cues(text))
    assert causes[0].label == "vision_tokens"


def test_vllm_out_of_memory_while_loading_is_the_weights_not_the_kv_cache():
    text = ("INFO 05-01 10:00:00 model_runner.py:100] Starting to load model /models/big\n"
            "  File \"/usr/lib/python3.10/site-packages/vllm/worker/model_runner.py\", line 250, in load_model\n"
            "    self.model = get_model(model_config=self.model_config)\n"
            + oom("448.00 MiB", "23.65 GiB", "300.00 MiB", "23.30 GiB", "23.00 GiB", "50.00 MiB"))
    report = parse_log(text)
    if report.framework != "vllm" or report.phase != "model_loading":
        pytest.skip("the parser does not see vLLM's loading frames in this log")
    got = labels(rank_root_causes(report, TrainingSetup()))
    assert got[0] in ("model_load_oom", "weights_exceed_gpu") and "generation_kv_cache" not in got[:2]


def test_stated_gradient_checkpointing_off_counts_without_a_model():
    text = "  File \"t.py\", line 1, in backward\n" + oom("1.20 GiB", "23.65 GiB", "900.00 MiB", "22.50 GiB", "22.00 GiB", "200.00 MiB")
    setup = observed(TrainingSetup(), gradient_checkpointing=False)
    assert "no_gradient_checkpointing" in labels(rank_root_causes(parse_log(text), setup))[:2]
    assert "no_gradient_checkpointing" not in labels(rank_root_causes(parse_log(text), TrainingSetup()))


def test_an_moe_model_by_name_on_a_full_gpu_names_the_resident_experts():
    text = oom("64.00 MiB", "79.19 GiB", "30.00 MiB", "79.10 GiB", "78.60 GiB", "100.00 MiB")
    setup = TrainingSetup(model_name="acme/Foo-30B-A3B").with_fact("model_name", "acme/Foo-30B-A3B", "config", "model")
    assert "moe_memory" in labels(rank_root_causes(parse_log(text), setup))[:3]
    assert "moe_memory" not in labels(rank_root_causes(parse_log(text), TrainingSetup()))


def test_cuda_context_sized_processes_of_other_ranks():
    text = oom("1.00 GiB", "23.65 GiB", "700.00 MiB", "21.00 GiB", "20.50 GiB", "200.00 MiB",
               procs="Process 4101 has 21.00 GiB memory in use. Process 4102 has 480.00 MiB memory in use. "
                     "Process 4103 has 480.00 MiB memory in use. ")
    causes = {c.label: c for c in rank_root_causes(parse_log(text))}
    assert "multi_gpu_imbalance" in causes and any("PID 4102" in w for w in causes["multi_gpu_imbalance"].why)
    assert not any("PID 4101" in w for w in causes["multi_gpu_imbalance"].why)  # this process is not foreign


def test_qwen2_vl_without_max_pixels_is_sized_at_the_processors_default():
    qwen2vl = resolve_model("Qwen/Qwen2-VL-7B-Instruct")
    vision = [c for c in tensor_candidates(TrainingSetup(model=qwen2vl)) if c.name.startswith("vision attention")]
    # 28 x 28 x 16384 pixels / 14^2 = 65,536 patches; 65,536^2 x 16 heads x 2 B = 128 GiB.
    assert vision and vision[0].bytes == 65536 * 65536 * 16 * 2 and "default max_pixels" in vision[0].formula
    text = oom("128.00 GiB", "79.19 GiB", "60.00 GiB", "18.00 GiB", "17.50 GiB", "100.00 MiB")
    assert labels(rank_root_causes(parse_log(text), TrainingSetup(model=qwen2vl)))[0] == "vision_tokens"


def test_plain_python_launch_on_several_gpus_is_data_parallel_imbalance():
    text = "$ python train.py --model_name_or_path m\n" + oom("1.00 GiB", "23.65 GiB", "500.00 MiB", "23.00 GiB", "22.60 GiB", "100.00 MiB")
    report = parse_log(text)
    assert report.launcher == "python"
    setup = TrainingSetup(num_gpus=4).with_fact("num_gpus", 4, "user", "4 GPUs")
    assert "multi_gpu_imbalance" in labels(rank_root_causes(report, setup))[:2]
    assert "multi_gpu_imbalance" not in labels(rank_root_causes(report, TrainingSetup()))


def test_a_16_bit_weight_sized_request_under_4bit_quantization_is_a_quantization_problem():
    llama = resolve_model("meta-llama/Llama-2-7b-hf")
    from ask_oom.tools.memory import estimate_memory

    setup = observed(TrainingSetup(model=llama, gpu=lookup_gpu("T4")), method="lora", quantization_bit=4, gpu=lookup_gpu("T4"))
    text = oom("86.00 MiB", "14.75 GiB", "40.00 MiB", "14.60 GiB", "14.30 GiB", "100.00 MiB")  # 4096 x 11008 x 2 B
    assert "quantization_setup" in labels(rank_root_causes(parse_log(text), setup, estimate_memory(setup)))[:2]


RAW_AT_LOAD = ("Traceback (most recent call last):\n"
               '  File "train_gpt2.py", line 359, in <module>\n    model.to(device)\n'
               '  File "torch/nn/modules/module.py", line 1150, in convert\n'
               "    return t.to(device, dtype if t.is_floating_point() or t.is_complex() else None, non_blocking)\n"
               "RuntimeError: CUDA error: out of memory\n")


def test_the_runtimes_own_error_at_the_first_transfer_of_small_weights_is_another_process():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    report = parse_log(RAW_AT_LOAD)
    assert report.phase == "model_loading" and report.requested_bytes is None
    unknown = rank_root_causes(report)
    assert "other_process" in labels(unknown)[:3]   # a model we cannot size: a candidate, not the verdict
    setup = observed(TrainingSetup(model=resolve_model("Qwen/Qwen2.5-0.5B"), gpu=lookup_gpu("4090")), method="lora")
    small = rank_root_causes(report, setup, estimate_memory(setup))
    assert labels(small)[0] == "other_process"
    assert any("0.5B" in w or "GiB" in w for w in small[0].why)


def test_mixed_gpu_models_in_one_run_bound_the_even_split_but_machines_tried_in_turn_do_not():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report

    def described(text: str):   # a report in words: the agent's refinement turns it into the memory error it states
        return refine_report(parse_log(text), text, cues=log_cues(text)).report

    text = ("I have 8 GPUs: seven 3090s and a 3080. 3090s have 24gb, 3080s only 12. Loading llama3 70b splits ~16gb "
            "per GPU and I get an OOM error.")
    causes = rank_root_causes(described(text), TrainingSetup(num_gpus=8), cues=log_cues(text))
    assert labels(causes)[0] == "multi_gpu_imbalance" and "3090 and 3080" in causes[0].why[0]
    tried = "fails at trainer.train() with CUDA out of memory on H100 and V100 80GB"
    one = rank_root_causes(described(tried), TrainingSetup(num_gpus=1), cues=log_cues(tried))
    assert "multi_gpu_imbalance" not in labels(one)


def test_memory_said_to_climb_in_an_uncapped_vision_run_is_the_largest_image_not_a_leak():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.memory_trend import failure_trend
    from ask_oom.tools.report_refinement import refine_report

    text = "one GPU's memory keeps increasing until out of memory while fine-tuning Qwen2-VL-7B with LoRA"
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    trend = failure_trend(text)
    vlm = observed(TrainingSetup(model=resolve_model("Qwen/Qwen2-VL-7B-Instruct")), method="lora")
    assert labels(rank_root_causes(report, vlm, trend=trend, cues=log_cues(text)))[0] == "vision_tokens"
    capped = observed(vlm, image_max_pixels=512 * 512)
    assert labels(rank_root_causes(report, capped, trend=trend, cues=log_cues(text)))[0] == "memory_growth"
    plain = "one GPU's memory keeps increasing until out of memory while fine-tuning Qwen2.5-7B with LoRA"
    text_model = observed(TrainingSetup(model=resolve_model("Qwen/Qwen2.5-7B")), method="lora")
    ranked = rank_root_causes(refine_report(parse_log(plain), plain, cues=log_cues(plain)).report, text_model,
                              trend=failure_trend(plain), cues=log_cues(plain))
    assert labels(ranked)[0] == "memory_growth" and "vision_tokens" not in labels(ranked)


def test_growth_said_of_a_run_without_a_length_cap_is_the_longest_sample_and_of_an_over_budget_run_is_not_a_leak():
    from ask_oom.tools.configs import load_config
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.memory import estimate_memory
    from ask_oom.tools.memory_trend import failure_trend
    from ask_oom.tools.report_refinement import refine_report
    from ask_oom.tools.setup_assembly import AssemblyRequest, assemble_setup

    text = "GPU memory keeps increasing and at about 10% of training it runs out of memory"
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    trend = failure_trend(text)

    def ranked(cfg: str) -> list[str]:
        setup = assemble_setup(report, load_config(cfg, "train.yaml"), AssemblyRequest(gpu="A100 40GB"))
        return labels(rank_root_causes(report, setup, estimate_memory(setup), trend=trend))

    uncapped = ranked("model_name_or_path: Qwen/Qwen3-4B\nuse_peft: true\nper_device_train_batch_size: 1\n")
    # the climb is the longest sample's activations, kept for backward without checkpointing: those two lead (their
    # order is the fitted table's), not a leak
    assert set(uncapped[:2]) == {"seq_len_too_long", "no_gradient_checkpointing"}
    capped_fits = ranked("model_name_or_path: Qwen/Qwen3-4B\nuse_peft: true\nper_device_train_batch_size: 1\n"
                         "max_seq_length: 1024\ngradient_checkpointing: true\n")
    assert capped_fits[0] == "memory_growth"   # the worst case fits: something really grows
    over = ranked("model_name_or_path: Qwen/Qwen3-4B\nuse_peft: true\nper_device_train_batch_size: 16\n"
                  "max_seq_length: 8192\ngradient_checkpointing: true\n")
    assert over[0] != "memory_growth"         # the configured worst case does not fit: that is the climb


def test_an_oom_in_vllms_cumem_allocator_is_the_colocated_rollout_engine():
    report = parse_log("Runtime Error: Cuda error: out of memory at /workspace/csrc/cumem_allocator.cpp: 62\n")
    ranked = labels(rank_root_causes(report))
    assert ranked[0] == "other_process" and "generation_kv_cache" in ranked[:3]


def test_a_full_gpu_in_an_adapter_run_is_activations_not_weights():
    from ask_oom.tools.log_cues import log_cues

    error = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 144.00 MiB (GPU 0; 31.75 GiB total "
             "capacity; 30.26 GiB already allocated; 68.69 MiB free; 30.33 GiB reserved in total by PyTorch)\n")
    plain = labels(rank_root_causes(parse_log(error), cues=log_cues(error)))
    assert plain[0] in STATES_FILL_THE_CARD      # unknown model, unknown method: the states are the first suspect
    lora = error + "finetuning_freeze.py runs on this V100, but finetuning_lora.py runs out of GPU memory\n"
    causes = rank_root_causes(parse_log(lora), cues=log_cues(lora))
    ranked = labels(causes)
    # the adapter run's states are small: the step's activations join the top three, the weights no longer lead
    assert "seq_len_too_long" in ranked[:3] and ranked[0] != "weights_exceed_gpu"
    length = next(c for c in causes if c.label == "seq_len_too_long")
    assert any("in an adapter run" in w and "leave the activations" in w for w in length.why)


def test_past_loading_a_log_holding_less_than_the_assumed_weights_overrules_the_calculator():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    frames = 'Traceback (most recent call last):\n  File "train.py", line 88, in <module>\n    loss.backward()\n'
    report = parse_log(oom("1.20 GiB", "23.64 GiB", "1.01 GiB", "21.54 GiB", "18.24 GiB", "3.30 GiB", frames=frames))
    assert report.phase == "backward"
    # nothing stated: a 13B in fp32 (the Trainer's default dtype) would be 52 GB of weights, yet only 18 GiB are held
    assumed = TrainingSetup(model=resolve_model("baichuan-inc/Baichuan2-13B-Chat"), precision="fp32", gpu=lookup_gpu("4090"))
    est = estimate_memory(assumed)
    assert est.breakdown.get("weights") > 2 * report.torch_allocated_bytes
    assert "weights_exceed_gpu" not in labels(rank_root_causes(report, assumed, est))[:1]


def test_states_that_nearly_fill_the_card_stay_among_the_top_causes_beside_activations():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    setup = TrainingSetup(model=resolve_model("Qwen/Qwen2.5-72B"), method="qlora", quantization_bit=4, zero_stage=3,
                          num_gpus=8, micro_batch=1, seq_len=2048, stage="dpo", reference_model=True,
                          quant_storage_sharded=False, gpu=lookup_gpu("A800 80GB"))
    setup = observed(setup, method="qlora")
    est = estimate_memory(setup)
    assert est.breakdown.all_weights() > 0.9 * est.budget_bytes   # the policy's and the reference's copies
    report = parse_log(oom("462.00 MiB", "79.32 GiB", "380.44 MiB", "78.93 GiB", "73.18 GiB", "1.61 GiB"))
    ranked = rank_root_causes(report, setup, est)
    assert ranked[0].label == "weights_exceed_gpu"          # states at 97% of the budget weigh fully
    assert any("model states already take" in w and "(98%)" in w for w in ranked[0].why)


def test_qlora_named_as_the_method_is_not_by_itself_a_quantization_fault():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report

    def top(text: str):
        report = refine_report(parse_log(text), text, cues=log_cues(text)).report
        return rank_root_causes(report, cues=log_cues(text))[0]

    method = top("QLoRA 4-bit fine-tuning on 8 T4 still runs out of memory at bs=1")
    fault = top("loading the 8-bit checkpoint as 4-bit with bitsandbytes runs out of memory")
    assert fault.label == "quantization_setup" and any("quantized weights are in play" in w for w in fault.why)
    # the method alone is its own rule, fitted on its own: the answer says the method is quantized, not that a fault
    # in the quantization was seen
    assert not any("quantized weights are in play" in w for w in method.why)
    assert any("the method is quantized" in w for w in method.why)


def test_a_full_gpu_in_a_lora_run_the_config_states_puts_the_stated_micro_batch_first():
    frames = 'Traceback (most recent call last):\n  File "train.py", line 88, in <module>\n    loss.backward()\n'
    report = parse_log(oom("134.00 MiB", "39.39 GiB", "107.94 MiB", "39.28 GiB", "37.86 GiB", "93.47 MiB", frames=frames))
    assert report.phase == "backward"
    unknown = labels(rank_root_causes(report, TrainingSetup()))
    # nothing known: a full card is the model's memory (its weights, or with them its training states: the fitted
    # weights decide which leads); in backward, loading was over
    assert unknown[0] in ("weights_exceed_gpu", "full_ft_model_states") and "model_load_oom" not in unknown
    lora = observed(TrainingSetup(method="lora", micro_batch=4), method="lora", micro_batch=4)
    ranked = labels(rank_root_causes(report, lora))
    assert ranked[0] == "batch_too_large" and "seq_len_too_long" in ranked[:2] and "model_load_oom" not in ranked


def test_the_same_run_working_with_comparable_models_turns_blame_from_states_to_the_step():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.memory import estimate_memory

    text = ("I get CUDA out of memory doing SFT of Qwen2.5-Coder-7B-Instruct on one A100 40GB.\n"
            "I have had no issues doing a similar experiment with other 7B models.\n")
    setup = TrainingSetup(model=resolve_model("Qwen/Qwen2.5-7B"), gpu=lookup_gpu("A100-40GB"), seq_len=1024)
    est = estimate_memory(setup)
    report = parse_log("CUDA out of memory\n").model_copy(update={"kind": "cuda_oom"})
    cues = log_cues(text)
    assert cues.comparable_worked is not None and cues.comparable_worked.line == 2
    before = labels(rank_root_causes(report, setup, est, cues=log_cues(text.splitlines()[0])))
    assert before[0] == "full_ft_model_states"            # assumed full fine-tuning of a 7B on 40 GB
    after = rank_root_causes(report, setup, est, cues=cues)
    assert labels(after)[0] == "logits_large_vocab" and "batch_too_large" in labels(after)[:3]
    assert any("152,064" in w for w in after[0].why)
    demoted = next(c for c in after if c.label == "full_ft_model_states")
    assert any(w.startswith("but the same run worked") for w in demoted.why)


@pytest.mark.parametrize("sentence, found", [
    ("I have had no issues doing a similar experiment with other 7B models", True),
    ("Other 7B models work fine with this config", True),
    ("其他7B模型都没问题", True),
    ("no issues until step 300, then OOM", False),
    ("other models did not fit either", False),
])
def test_the_comparison_cue_reads_only_a_comparable_run_that_worked(sentence, found):
    from ask_oom.tools.log_cues import log_cues

    assert (log_cues(sentence).comparable_worked is not None) is found


def test_a_predicted_fit_that_ran_out_with_eager_attention_names_the_attention():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    base = TrainingSetup(model=resolve_model("THUDM/glm-4-9b-chat"), gpu=lookup_gpu("A100-80GB"), num_gpus=8, zero_stage=3,
                         seq_len=2048, micro_batch=1, gradient_checkpointing=True, stage="dpo", reference_model=True)
    report = parse_log("CUDA out of memory\n").model_copy(update={"kind": "cuda_oom"})
    sdpa = base.with_fact("attn_implementation", "sdpa", "config", "attn_implementation")
    assert estimate_memory(sdpa).fits
    assert "eager_attention" not in labels(rank_root_causes(report, sdpa, estimate_memory(sdpa)))
    eager = base.with_fact("attn_implementation", "eager", "default", "OpenRLHF eager unless --flash_attn")
    ranked = rank_root_causes(report, eager, estimate_memory(eager))
    assert ranked[0].label == "eager_attention"
    assert "1.50 GiB per layer" in ranked[0].why[0]    # 2 (chosen + rejected) x 32 heads x 2048^2 x 6 B


def test_one_huge_allocation_while_generating_is_the_prefill_not_the_kv_cache():
    from ask_oom.tools.log_cues import log_cues

    frames = ('Traceback (most recent call last):\n  File "utils.py", line 745, in _model_generate\n    res = model.generate(**kw)\n'
              '  File "transformers/generation/utils.py", line 3009, in _sample\n    outputs = self(**model_inputs)\n')
    def gen(req):
        return parse_log(frames + f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {req}.\n")
    assert gen("39.25 GiB").phase == "generation"
    small = labels(rank_root_causes(gen("64.00 MiB")))
    assert small[0] == "generation_kv_cache"                          # a cache step's size: the cache grows
    big = rank_root_causes(gen("39.25 GiB"))
    assert labels(big)[0] == "seq_len_too_long" and "generation_kv_cache" in labels(big)
    video = "Input a video path or URL <<< /data/test.mp4\n"
    ranked = labels(rank_root_causes(gen("39.25 GiB"), cues=log_cues(video)))
    assert ranked[:2] == ["vision_tokens", "seq_len_too_long"]
    # with the model known, the bound is its own cache: 2 GiB is 1M tokens of one layer's keys for a GQA 7B
    qwen = TrainingSetup(model=resolve_model("Qwen/Qwen2-VL-7B-Instruct"))
    assert labels(rank_root_causes(gen("2.00 GiB"), qwen))[0] != "generation_kv_cache"
    llama2 = TrainingSetup(model=resolve_model("meta-llama/Llama-2-7b-hf"))    # MHA: 8 KiB per token and layer
    assert labels(rank_root_causes(gen("2.00 GiB"), llama2))[0] == "generation_kv_cache"


def test_a_size_match_on_a_stand_in_model_is_weak_and_its_full_gpu_reads_as_an_adapter_run():
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    frames = 'Traceback (most recent call last):\n  File "train.py", line 88, in <module>\n    loss.backward()\n'
    report = parse_log(oom("134.00 MiB", "39.39 GiB", "107.94 MiB", "39.28 GiB", "37.86 GiB", "93.47 MiB", frames=frames))
    base = TrainingSetup(model=resolve_model("meta-llama/Llama-2-13b-hf"), gpu=lookup_gpu("A100-40GB"), method="lora",
                         micro_batch=4, seq_len=2048)
    base = observed(base, method="lora", micro_batch=4)
    named = base.with_fact("model", base.model, "registry", "built-in registry entry")
    stand_in = base.with_fact("model", base.model, "derived", "assumed Llama-2-13b-hf (the registry does not list 13B)")
    real = rank_root_causes(report, named, estimate_memory(named))
    # 134 MiB is one of this model's MLP weights (5120 x 13824 x 2 B): a hypothesis beside the activations (how high
    # it ranks is the fitted weights' call: activation chunks often share a weight's size)
    assert "weights_exceed_gpu" in labels(real)[:3]
    ranked = rank_root_causes(report, stand_in, estimate_memory(stand_in))
    assert labels(ranked)[0] == "batch_too_large"          # the stated micro-batch of 4 leads once the match is weak
    weights = next(c for c in ranked if c.label == "weights_exceed_gpu")
    assert any("(of the stand-in model)" in w for w in weights.why)
    named_weights = next(c for c in real if c.label == "weights_exceed_gpu")
    # the same match counts for less on a stand-in: a lower probability, never a higher place
    assert named_weights.probability > weights.probability
    assert labels(real).index("weights_exceed_gpu") <= labels(ranked).index("weights_exceed_gpu")


def test_a_log_without_any_failure_is_weak_evidence_of_no_oom():
    """A paste with no OOM message but another error says the run died of that error; a paste with no failure at all
    (progress bars, a fragment) may only have lost the error: its own rule, and a question instead of a verdict."""
    from ask_oom.tools.log_cues import log_cues

    other = "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\nKeyError: 'labels'\n"
    fragment = "Loading checkpoint shards:  87%|████████▋ | 13/15 [03:00<00:27, 13.71s/it]\n"
    died = rank_root_causes(parse_log(other), cues=log_cues(other))
    lost = rank_root_causes(parse_log(fragment), cues=log_cues(fragment))
    assert labels(died) == ["not_oom"] and labels(lost) == ["not_oom"]
    assert "KeyError" in died[0].why[0] and "may be missing" in lost[0].why[0]
    assert lost[0].probability < died[0].probability


def test_one_gpu_said_to_hold_more_is_evidence_of_an_uneven_split():
    from ask_oom.tools.log_cues import log_cues

    text = ("Qwen2-VL-72B with device_map auto on 4 GPUs: GPU 0 uses far more memory than the rest\n"
            + oom("1.20 GiB", "79.11 GiB", "900.00 MiB", "76.10 GiB", "75.20 GiB", "0.50 GiB"))
    causes = rank_root_causes(parse_log(text), cues=log_cues(text))
    imbalance = next(c for c in causes if c.label == "multi_gpu_imbalance")
    assert any("holds more than the others" in w for w in imbalance.why)
    plain = oom("1.20 GiB", "79.11 GiB", "900.00 MiB", "76.10 GiB", "75.20 GiB", "0.50 GiB")
    assert "multi_gpu_imbalance" not in labels(rank_root_causes(parse_log(plain), cues=log_cues(plain)))


def test_a_paste_that_lost_its_error_keeps_the_calculators_prediction_and_the_users_words():
    """No failure shown (a description, a traceback cut before its exception): the setup's predicted peak and the
    words still speak, beside a weak "not an OOM". A log that fails with another error stays "not an OOM" alone."""
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.memory import estimate_memory

    setup = observed(TrainingSetup(model=resolve_model("meta-llama/Llama-2-13b-hf"), gpu=lookup_gpu("A100-40GB"),
                                   method="full", micro_batch=1, seq_len=2048), method="full", micro_batch=1)
    cut = ("  0%|          | 0/30 [00:00<?, ?it/s]Traceback (most recent call last):\n"
           "  File \"train.py\", line 9, in <module>\n    trainer.train()\n[...]\n")
    lost = rank_root_causes(parse_log(cut), setup, estimate_memory(setup), cues=log_cues(cut))
    assert "not_oom" in labels(lost) and "full_ft_model_states" in labels(lost)
    states = next(c for c in lost if c.label == "full_ft_model_states")
    assert any("GiB" in w for w in states.why)                  # the calculator's number, not a bare label
    other = cut + "KeyError: 'labels'\n"
    died = rank_root_causes(parse_log(other), setup, estimate_memory(setup), cues=log_cues(other))
    assert labels(died) == ["not_oom"]


def test_a_device_map_splits_the_weights_over_its_gpus_and_keeps_no_replicas():
    """One process with device_map over 4 GPUs holds a quarter of the weights on each (if even): 70B in 16 bits is
    ~131 GiB, over 4 x 80 GB it fits, so an OOM is the split's (uneven) and no GPU keeps a replica to shard."""
    from ask_oom.tools.memory import estimate_memory

    setup = observed(TrainingSetup(model=resolve_model("meta-llama/Llama-2-70b-hf"), gpu=lookup_gpu("A100-80GB"),
                                   method="lora", num_gpus=4, precision="pure_bf16"),
                     method="lora", num_gpus=4, precision="pure_bf16")
    text = ("model = AutoModelForCausalLM.from_pretrained(name, device_map='auto')\n"
            + oom("1.20 GiB", "79.11 GiB", "900.00 MiB", "76.10 GiB", "75.20 GiB", "0.50 GiB"))
    split = rank_root_causes(parse_log(text), setup, estimate_memory(setup), cues=log_cues(text))
    plain = rank_root_causes(parse_log(text), setup, estimate_memory(setup), cues=log_cues(text.split("\n", 1)[1]))
    reasons = lambda causes: [w for c in causes for w in c.why]   # noqa: E731
    assert any("the weights alone take" in w for w in reasons(plain))          # 131 GiB on one 80 GB card
    assert not any("the weights alone take" in w for w in reasons(split))      # a quarter on each
    assert not any("full copy of the weights" in w for w in reasons(split))
    assert "multi_gpu_imbalance" in labels(split)[:3]


def test_a_logits_sized_request_of_a_server_is_no_evaluation_step():
    """More logits tokens than the training step holds means evaluation only when there is a training step: a vLLM
    server's profile run has none."""
    from ask_oom.tools.memory import estimate_memory

    setup = TrainingSetup(model=resolve_model("Qwen/Qwen2-7B"), micro_batch=1, seq_len=1024)
    report = parse_log("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 9.25 GiB.\n")
    train = rank_root_causes(report, setup, estimate_memory(setup, mode="train"))
    serve = rank_root_causes(report, setup, estimate_memory(setup, mode="serve"))
    assert "logits_large_vocab" in labels(train) and "eval_accumulation" in labels(train)
    assert "logits_large_vocab" in labels(serve) and "eval_accumulation" not in labels(serve)


def test_an_unnamed_gpu_that_ran_out_still_points_at_what_dominates_the_predicted_step():
    """Without the GPU there is no budget, but a training step ran out: when activations are most of the predicted
    peak, their knobs (checkpointing off, the micro-batch) are the suspects, with the shares as the arithmetic."""
    from ask_oom.tools.memory import estimate_memory

    setup = observed(TrainingSetup(model=resolve_model("meta-llama/Llama-2-7b-hf"), method="lora", micro_batch=8,
                                   seq_len=1024, gradient_checkpointing=False),
                     method="lora", micro_batch=8, gradient_checkpointing=False)
    est = estimate_memory(setup)
    assert est.budget_bytes is None or est.budget_bytes == 0
    report = parse_log("  File \"train.py\", line 9, in <module>\n    loss.backward()\n"
                       "torch.cuda.OutOfMemoryError: CUDA out of memory.\n")
    ranked = rank_root_causes(report, setup, est)
    gc = next(c for c in ranked if c.label == "no_gradient_checkpointing")
    assert any("gradient checkpointing is off" in w and "% of the peak" in w for w in gc.why)
    assert "batch_too_large" in labels(ranked)[:3]


def test_the_old_message_without_a_process_total_still_shows_memory_held_by_others():
    """PyTorch < 2.0 prints total, allocated, free and reserved but not the process's own total: what is neither free
    nor this process's reserved cache and CUDA context is held elsewhere (28 GiB of a 32 GB V100 here), weighed by
    its share: a few GiB may be this process's own memory outside PyTorch (a display, cuBLAS, another kernel library)."""
    log = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 22.00 MiB (GPU 7; 31.74 GiB total "
           "capacity; 3.22 GiB already allocated; 15.38 MiB free; 3.27 GiB reserved in total by PyTorch)\n")
    ranked = rank_root_causes(parse_log(log))
    assert ranked[0].label == "other_process"
    assert any("27.97 GiB of the GPU is neither free nor in PyTorch's cache" in w and "3.27 GiB reserved" in w
               for w in ranked[0].why)
    some = log.replace("3.22 GiB already allocated; 15.38 MiB free; 3.27 GiB", "27.22 GiB already allocated; 15.38 MiB "
                       "free; 27.27 GiB")   # 4 GiB elsewhere: a smaller share, less evidence
    share = lambda text: next(c.score for c in rank_root_causes(parse_log(text)) if c.label == "other_process")  # noqa: E731
    assert share(log) > share(some)
    own = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 31.74 GiB total "
           "capacity; 29.10 GiB already allocated; 15.38 MiB free; 30.90 GiB reserved in total by PyTorch)\n")
    assert "other_process" not in labels(rank_root_causes(parse_log(own)))[:1]


def test_weights_of_an_assumed_width_are_shown_at_16_bits_beside_the_calculators_size():
    """Nobody said full fine-tuning or fp32: the weights are shown as loaded in 16-bit (Llama-3-70B: 131 GiB), with the
    assumed width's size beside them, never the fp32 size alone."""
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory

    setup = TrainingSetup(model=resolve_model("meta-llama/Meta-Llama-3-70B"), gpu=lookup_gpu("A100-80GB"))
    report = parse_log("torch.cuda.OutOfMemoryError: CUDA out of memory.\n")
    weights = next(c for c in rank_root_causes(report, setup, estimate_memory(setup)) if c.label == "weights_exceed_gpu")
    said = next(w for w in weights.why if "the weights alone take" in w)
    assert "per GPU in 16-bit" in said and "at the assumed width" in said


def test_a_neighbours_vote_for_the_cause_the_phase_already_names_is_its_own_rule():
    """The neighbours are found by the same phase words: their vote for the phase's own cause is one reading, not a
    second piece of evidence; a vote for another cause stays an ordinary vote."""
    from ask_oom.tools.root_causes.ranking import votes_beside_the_phase
    from ask_oom.tools.root_causes.signals import support

    signals = [support("generation_kv_cache", "phase_generation", "it failed while generating"),
               support("generation_kv_cache", "similar_case_primary", "similar documented case a had it", 1.0),
               support("weights_exceed_gpu", "similar_case_primary", "similar documented case b had it", 0.5)]
    names = [(str(s.label), s.name) for s in votes_beside_the_phase(signals)]
    assert ("generation_kv_cache", "similar_case_phase_agrees") in names
    assert ("weights_exceed_gpu", "similar_case_primary") in names
    assert votes_beside_the_phase(signals[1:]) == signals[1:]          # no phase prior: votes unchanged


def test_an_evaluation_harness_is_a_batch_of_inference_not_the_trainers_accumulation():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.root_causes.phase import phase_and_operation

    log = ("lm_eval --model hf --model_args pretrained=Qwen/Qwen1.5-7B-Chat --tasks mmlu --batch_size 32\n"
           "Running loglikelihood requests\n"
           "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    report = parse_log(log).model_copy(update={"phase": "evaluation"})
    names = {(s.label.value, s.name, s.kind.value) for s in phase_and_operation(report, None, cues=log_cues(log))}
    assert ("batch_too_large", "phase_evaluation_harness", "support") in names
    assert ("eval_accumulation", "harness_keeps_no_logits", "discount") in names
    assert not any(n == "phase_evaluation" for _, n, _ in names)
    # the Trainer's own evaluation keeps its prior
    plain = {s.name for s in phase_and_operation(report, None, cues=log_cues("trainer.evaluate()\n"))}
    assert "phase_evaluation" in plain and "phase_evaluation_harness" not in plain


def test_labelled_report_votes_are_weighed_on_every_path():
    from ask_oom.kb.reports import Neighbour
    from ask_oom.tools.root_causes.ranking import collect_signals

    near = [Neighbour(id="a", source="https://github.com/o/r/issues/1", project="r", label="not_oom", similarity=0.6),
            Neighbour(id="b", source="https://github.com/o/r/issues/2", project="r", label="batch_too_large",
                      similarity=0.2)]
    for log in ("Traceback (most recent call last):\nKeyError: 'labels'\n",            # another error shown
                "Epoch 1: 10%|#         | 10/100 [00:10<01:30]\n",                      # no failure shown
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"):
        votes = {s.label.value: round(s.value, 2) for s in collect_signals(parse_log(log), neighbours=near)
                 if s.name == "labelled_report_votes"}
        assert votes == {"not_oom": 0.75, "batch_too_large": 0.25}, log


@pytest.mark.parametrize("engine, knob", [("lmdeploy", "cache_max_entry_count"), ("sglang", "mem_fraction_static")])
def test_an_engine_that_reserves_its_kv_cache_fills_the_card_by_design(engine, knob):
    """A tiny request on a full card under an engine that reserves a share of it for the KV cache: the pool filled
    the card, not the weights."""
    words = f"Serving Qwen2-7B with {engine} on one card, it runs out of memory after a few long requests\n"
    text = words + oom("20.00 MiB", "23.65 GiB", "10.00 MiB", "23.60 GiB", "22.90 GiB", "100.00 MiB")
    report, cues = parse_log(text), log_cues(text)
    causes = rank_root_causes(report.model_copy(update={"phase": "generation"}), TrainingSetup(), cues=cues)
    assert causes[0].label == "generation_kv_cache"
    assert any(knob in w for w in causes[0].why)
    assert not any(c.label == "weights_exceed_gpu" and any("weights first" in w for w in c.why) for c in causes)


def test_a_plain_python_launch_on_two_gpus_is_dataparallel_only_for_training_steps():
    """HF Trainer wraps the model in DataParallel for its steps; a script that generates on two GPUs splits the model by
    device_map, so the DataParallel gather on GPU 0 is no reason there."""
    text = "python test.py\n" + oom("20.00 MiB", "79.15 GiB", "10.00 MiB", "79.10 GiB", "78.20 GiB", "100.00 MiB")
    setup = TrainingSetup(num_gpus=2).with_fact("num_gpus", 2, "user", "two A100 80G")
    report = parse_log(text).model_copy(update={"launcher": "python"})
    said = lambda phase: any("DataParallel" in w for c in rank_root_causes(report.model_copy(update={"phase": phase}),  # noqa: E731
                                                                          setup) for w in c.why)
    assert said("backward") and not said("generation")


def test_a_paste_with_only_a_dead_ranks_aftermath_has_lost_its_error():
    """ChildFailedError says a rank died, not why: the paste lost the failing rank's error, which says much less
    against a memory cause than another exception would."""
    from ask_oom.tools.root_causes.related_errors import not_a_memory_error

    text = ("torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
            "train.py FAILED\n")
    lost = not_a_memory_error(parse_log(text), log_cues(text).failure)
    assert [s.name for s in lost] == ["no_failure_shown"] and "aftermath" in lost[0].reason
    other = "KeyError: 'labels'\n"
    assert [s.name for s in not_a_memory_error(parse_log(other), log_cues(other).failure)] == ["no_oom_message"]


def test_another_error_beside_words_that_say_memory_ran_out_is_a_rule_of_its_own():
    """The words' statement of an OOM beside another exception (from an earlier attempt, or what followed the OOM)
    weakens the other error's case: its own rule, fitted apart from a log that only shows another error."""
    from ask_oom.tools.root_causes.related_errors import not_a_memory_error

    text = ("I get an OOM error trying to train qwen-2.5-3B on 2 H100s.\n"
            "If I halve the batch sizes: ZeroDivisionError: integer division or modulo by zero\n")
    cues = log_cues(text)
    assert cues.oom_said is not None and cues.oom_said.line == 1
    sig = not_a_memory_error(parse_log(text), cues.failure, cues.oom_said)
    assert [s.name for s in sig] == ["other_error_oom_said"]
    assert "ZeroDivisionError" in sig[0].reason and "OOM error" in sig[0].reason
    plain = "ZeroDivisionError: integer division or modulo by zero\n"
    assert log_cues(plain).oom_said is None


def test_with_no_model_to_size_a_stated_extreme_knob_is_the_suspect():
    """The calculator cannot size a step whose model is unknown, but a cutoff or micro-batch the run states at an
    extreme value still drives its activations: each gets its own rule; a default (unstated) value does not."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    oom = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
           "79.19 GiB of which 1.02 GiB is free. Of the allocated memory 75.10 GiB is allocated by PyTorch, and 1.20 GiB "
           "is reserved by PyTorch but unallocated.\n")

    def reasons(flags: str) -> list[str]:
        log = f"llamafactory-cli train --stage sft --model_name_or_path /data/models/mine {flags}\n{oom}"
        d = diagnose(DiagnoseRequest(log_text=log, retrieve=False))
        assert d.setup.model is None and d.estimate is None
        return [w for c in d.root_causes for w in c.why]

    stated = reasons("--cutoff_len 16384 --per_device_train_batch_size 32")
    assert any("stated cutoff of 16384 tokens" in w for w in stated)
    assert any("stated micro-batch of 32" in w for w in stated)
    plain = reasons("--cutoff_len 1024 --per_device_train_batch_size 2")
    assert not any("the model is not known" in w for w in plain)


def test_with_no_architecture_the_size_a_name_states_sizes_the_weights():
    """A model the registry cannot build (a vision-language or MoE name) still states its parameter count: at the
    checkpoint's bytes a weight the weights alone are checked against the card, with the arithmetic. Over several GPUs
    whose split is not stated, only weights over all of them together are evidence."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    def weights_why(model: str, gpu: str, num_gpus: int | None = None) -> list[str]:
        log = (f"lmdeploy serve api_server /models/{model}\n"
               "RuntimeError: [TM][ERROR] CUDA runtime error: out of memory /lmdeploy/src/turbomind/utils/memory_utils.cu:32\n")
        d = diagnose(DiagnoseRequest(log_text=log, gpu=gpu, num_gpus=num_gpus, retrieve=False))
        assert d.setup.model is None and d.estimate is None
        return [w for c in d.root_causes if c.label == "weights_exceed_gpu" for w in c.why]

    why = weights_why("InternVL2-Llama3-76B", "A100-40GB")
    assert any("76B parameters x 2 B = 141.56 GiB per GPU, above the" in w for w in why)
    # the checkpoint's name says 4-bit: half a byte a weight (38B x 0.5 B = 17.7 GiB, 83% of a 24 GB card)
    assert any("38B parameters x 0.5 B = 17.70 GiB per GPU, 83% of" in w for w in weights_why("InternVL2_5-38B-AWQ", "RTX 4090"))
    # a small model on a large card: no weights evidence
    assert not any("parameters x" in w for w in weights_why("InternVL2-2B", "A100-80GB"))
    # 76B in 16-bit over eight 40 GB cards may be split: a copy over one card is its own, weaker rule
    eight = weights_why("InternVL2-Llama3-76B", "A100-40GB", 8)
    assert not any("parameters x" in w for w in eight) and any("split over the 8 GPUs it would fit" in w for w in eight)
    assert any("and 70.78 GiB per GPU even split over all 2 GPUs" in w
               for w in weights_why("InternVL2-Llama3-76B", "A100-40GB", 2))


def test_a_request_larger_than_the_gpu_is_the_eager_score_matrix_unless_flash_is_stated():
    """No tensor of a sane step outgrows a whole GPU except the attention score matrix (batch x heads x s x s) that
    eager attention materialises: a request above the card names eager attention, not when flash attention is stated."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    oom = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 64.00 GiB. GPU 0 has a total capacity of "
           "14.75 GiB of which 5.00 GiB is free. Of the allocated memory 8.79 GiB is allocated by PyTorch, and 0.20 GiB "
           "is reserved by PyTorch but unallocated.\n")

    def eager_why(flags: str) -> list[str]:
        d = diagnose(DiagnoseRequest(log_text=f"python train.py {flags}\n{oom}", retrieve=False))
        return [w for c in d.root_causes if c.label == "eager_attention" for w in c.why]

    assert any("attention score matrix" in w for w in eager_why("--lr 1e-4"))
    assert not any("attention score matrix" in w for w in eager_why("--attn_implementation flash_attention_2"))


def test_inference_on_several_gpus_with_no_split_stated_weighs_a_copy_against_all_of_them():
    """Each process may load its own copy or the engine may split one: a 16-bit copy over one card that would fit
    split over the run's GPUs is its own, weaker rule; one over all of them is the weights' plain excess."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    log = ("python generate.py --model meta-llama/Llama-2-70b-hf\n"
           "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 448.00 MiB\n")

    def weights_rules(gpus: int) -> set[str]:
        d = diagnose(DiagnoseRequest(log_text=log, gpu="A100-40GB", num_gpus=gpus, retrieve=False))
        return {s.name for s in d.signals if s.label == "weights_exceed_gpu"}

    assert "weights_over_one_gpu_split_unknown" in weights_rules(4) and "weights_over_budget" not in weights_rules(4)
    assert "weights_over_budget" in weights_rules(2) and "weights_over_one_gpu_split_unknown" not in weights_rules(2)
    # the copy is shown whole, then as each GPU's share were it split: over both cards it is still too large
    d = diagnose(DiagnoseRequest(log_text=log, gpu="A100-40GB", num_gpus=2, retrieve=False))
    assert any("128.48 GiB for a whole copy, 64.24 GiB per GPU even split over all 2 GPUs, above the" in s.reason
               for s in d.signals if s.name == "weights_over_budget")


def test_an_engine_pool_is_not_blamed_when_the_weights_cannot_even_load():
    """vLLM reserves its KV cache only after the weights are in: a tiny request on a full card is the pool's doing
    when the weights fit, and the weights' when they alone exceed the card."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest

    def top(model: str, total: float, allocated: float) -> tuple[str, list[str]]:
        log = (f"python -m vllm.entrypoints.openai.api_server --model /data/{model} --dtype half\n"
               f"torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; {total:.2f} GiB "
               f"total capacity; {allocated:.2f} GiB already allocated; 10.38 MiB free; {allocated + 0.01:.2f} GiB "
               "reserved in total by PyTorch)\n")
        d = diagnose(DiagnoseRequest(log_text=log, retrieve=False))
        return d.root_causes[0].label, [w for c in d.root_causes for w in c.why]

    label, why = top("vicuna13b", 22.06, 21.64)     # ~26 GB of 16-bit weights on a 22 GiB card
    assert label == "weights_exceed_gpu"
    assert not any("fills the card with its KV cache by design" in w for w in why)
    label, why = top("qwen7b", 79.15, 78.60)        # ~15 GB of weights on an 80 GB card: the pool filled it
    assert label == "generation_kv_cache"
    assert any("fills the card with its KV cache by design" in w for w in why)


def test_the_causes_a_neighbours_thread_also_accepts_vote_under_their_own_rule():
    """A thread that settled "the weights, or the load itself" speaks for both: the causes it accepts after its first
    vote under their own, separately fitted rule, as shares of the same summed similarity, each citing its threads."""
    from ask_oom.kb.reports import Neighbour
    from ask_oom.tools.root_causes.ranking import collect_signals

    near = [Neighbour(id="a", source="https://github.com/o/r/issues/1", project="r", label="weights_exceed_gpu",
                      similarity=0.6, also=["model_load_oom", "quantization_setup"]),
            Neighbour(id="b", source="https://github.com/o/r/issues/2", project="r", label="model_load_oom",
                      similarity=0.2, also=["offload_host_ram"])]
    signals = collect_signals(parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"),
                              neighbours=near)
    first = {s.label.value: round(s.value, 2) for s in signals if s.name == "labelled_report_votes"}
    also = {s.label.value: round(s.value, 2) for s in signals if s.name == "labelled_report_votes_also"}
    assert first == {"weights_exceed_gpu": 0.75, "model_load_oom": 0.25}
    assert also == {"model_load_oom": 0.75, "quantization_setup": 0.75, "offload_host_ram": 0.25}
    cited = next(s.reason for s in signals if s.name == "labelled_report_votes_also" and s.label.value == "offload_host_ram")
    assert "also accepted" in cited and "o/r#2" in cited and "o/r#1" not in cited


def test_a_run_that_trains_nothing_discounts_full_fine_tuning_states():
    """Inference keeps no gradients or optimizer states: a paste with no sign of training discounts that cause,
    unless the method itself was stated."""
    report = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n")
    inference = TrainingSetup().with_fact("workload", "eval", "default", "nothing in the paste speaks of training")
    training = TrainingSetup().with_fact("workload", "train", "config", "do_train: true")
    stated = inference.with_fact("method", "full", "config", "finetuning_type: full")

    from ask_oom.tools.root_causes.phase import phase_and_operation

    def discounted(setup):
        return any(s.name == "inference_keeps_no_states" and s.label.value == "full_ft_model_states"
                   for s in phase_and_operation(report, setup))

    assert discounted(inference)
    assert not discounted(training) and not discounted(stated)


def test_weights_over_the_card_in_inference_are_no_full_fine_tuning_states():
    """Sized as inference, weights larger than the card are the weights' own cause: the default method (full) adds no
    full fine-tuning evidence, which it does for a training run."""
    from ask_oom.tools.memory import estimate_memory
    from ask_oom.tools.root_causes.ranking import collect_signals

    text = oom("20.00 MiB", "14.75 GiB", "10.00 MiB", "14.60 GiB", "14.50 GiB", "100.00 MiB")
    for workload, full_ft in (("eval", False), ("train", True)):
        setup = TrainingSetup(model=resolve_model("meta-llama/Llama-2-13b-hf"), gpu=lookup_gpu("T4")).with_fact(
            "workload", workload, "default", "as read from the paste")
        names = {s.name for s in collect_signals(parse_log(text), setup, estimate_memory(setup))
                 if s.label.value == "full_ft_model_states"}
        assert bool(names & {"full_ft_weights_over_budget", "full_ft_states_over_budget"}) is full_ft, workload


def test_the_word_models_reading_speaks_for_each_cause_above_its_floor():
    """The labelled reports' word model (kb/report_words.py): each cause above the threshold table's floor at its
    log-ratio to the floor, with the number of reports it was fitted on; no reading, no signal."""
    import math

    from ask_oom.kb.report_words import WordReading
    from ask_oom.tools.root_causes.ranking import collect_signals
    from ask_oom.tools.root_causes.weights import THRESHOLDS

    floor = THRESHOLDS["report_words_floor"]
    reading = WordReading(probabilities={"generation_kv_cache": 0.7, "batch_too_large": 2 * floor,
                                         "not_oom": floor}, reports=1277,
                          words={"generation_kv_cache": ["vllm", "generate"]})
    for log in ("Traceback (most recent call last):\nKeyError: 'labels'\n",
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"):
        signals = [s for s in collect_signals(parse_log(log), words=reading) if s.name == "labelled_report_words"]
        values = {s.label.value: s.value for s in signals}
        assert values.keys() == {"generation_kv_cache", "batch_too_large"}   # at the floor: silent
        assert math.isclose(values["generation_kv_cache"], math.log(0.7 / floor))
        assert math.isclose(values["batch_too_large"], math.log(2))   # twice the floor: ln 2, whatever the floor
        assert "1277 labelled public reports" in signals[0].reason and "p = 0.70" in signals[0].reason
        assert '"vllm", "generate"' in signals[0].reason and "its words" not in signals[1].reason
        assert not any(s.name == "labelled_report_words" for s in collect_signals(parse_log(log)))


@pytest.mark.parametrize("text", [
    # the pre-2.1 message of a process that holds nothing yet: "0 bytes reserved" is a number, not a missing one
    "RuntimeError: CUDA out of memory. Tried to allocate 90.00 MiB (GPU 0; 14.76 GiB total capacity; 0 bytes already "
    "allocated; 43.44 MiB free; 0 bytes reserved in total by PyTorch)\n",
    # the memory-fraction message: "Currently allocated" is what the allocator took from cudaMalloc, its reserve
    "torch.cuda.OutOfMemoryError: Allocation on device 0 would exceed allowed memory. (out of memory)\n"
    "Currently allocated     : 6.89 GiB\nRequested               : 320.00 MiB\nDevice limit            : 23.69 GiB\n"
    "Free (according to CUDA): 2.94 MiB\n",
])
def test_a_card_held_outside_this_processs_allocator_is_another_process(text):
    """Total - free - what this process's allocator reserved - one CUDA context is held elsewhere: 14 GiB of a 14.76
    GiB card with nothing reserved here, 16 GiB of a 23.69 GiB card with 6.89 GiB reserved here."""
    causes = rank_root_causes(parse_log(text))
    top = next(c for c in causes if c.label == "other_process")
    assert labels(causes)[0] == "other_process"
    assert any("neither free nor in PyTorch's cache" in w for w in top.why)


def test_processes_listed_without_this_ones_total_leave_the_foreign_share_to_another_process():
    """Some builds list every process on the card ("Process 248104 has 37.55 GiB memory in use") but print no "this
    process has" total: what this process's allocator holds (allocated + reserved-but-unallocated) tells which is ours."""
    text = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.88 GiB. GPU 0 has a total capacity of 44.42 "
            "GiB of which 920.81 MiB is free. Process 247326 has 5.95 GiB memory in use. Process 248104 has 37.55 GiB "
            "memory in use. Of the allocated memory 5.44 GiB is allocated by PyTorch, and 6.72 MiB is reserved by "
            "PyTorch but unallocated.\n")
    causes = rank_root_causes(parse_log(text))
    assert labels(causes)[0] == "other_process"


@pytest.mark.parametrize("line", [
    "RuntimeError: Tensor on device meta is not on the expected device cuda:0!",
    "ValueError: Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit the "
    "quantized model.",
])
def test_weights_the_device_map_offloaded_did_not_fit_the_gpu(line):
    # no out-of-memory message at all: accelerate placed what did not fit on the CPU or the disk, and said so
    causes = rank_root_causes(parse_log("Loading checkpoint shards: 100%|██████████| 2/2\n" + line))
    assert causes[0].label == "weights_exceed_gpu"
    assert any("offloaded part of the weights off the GPU" in w for w in causes[0].why)


def test_an_out_of_memory_error_the_log_prints_speaks_against_no_memory_error():
    from ask_oom.tools.root_causes.ranking import collect_signals

    def against_not_oom(text):
        return [s.name for s in collect_signals(parse_log(text)) if s.label == "not_oom" and s.kind.value == "discount"]

    shown = "RuntimeError: CUDA error: out of memory\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1."
    assert against_not_oom(shown) == ["memory_error_shown"]
    # beside a device-side assert the CUDA context broke: the OOM message may be its aftermath, so no discount
    assert against_not_oom("Indexing.cu:1289: Assertion `srcIndex < srcSelectDimSize` failed.\n"
                           "RuntimeError: CUDA error: device-side assert triggered\n" + shown) == []
    # no memory error printed at all
    assert against_not_oom("KeyError: 'labels'") == []


def test_an_oom_inside_peft_kbit_preparation_speaks_for_the_quantization_setup():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.root_causes.ranking import collect_signals

    text = ('Traceback (most recent call last):\n  File "/train.py", line 85, in <module>\n'
            "    model = prepare_model_for_kbit_training( model )\n"
            '  File "/site-packages/peft/utils/other.py", line 98, in prepare_model_for_kbit_training\n'
            "    param.data = param.data.to(torch.float32)\n"
            + oom("64.00 MiB", "23.65 GiB", "10.06 MiB", "23.63 GiB", "23.10 GiB", "20.00 MiB"))
    signals = collect_signals(parse_log(text), cues=log_cues(text))
    assert any(s.name == "kbit_preparation_frame" and s.label == "quantization_setup" for s in signals)


@pytest.mark.parametrize("text", [
    "Error: CUDA out of memory. Tried to allocate more than 1EB memory",
    "Out of memory error on GPU 0. Cannot allocate 937.335938PB memory on GPU 0, 3.078247GB memory has been allocated "
    "and available memory is only 12.5GB.",
])
def test_a_request_past_any_memory_that_exists_is_a_size_computed_wrong(text):
    causes = rank_root_causes(parse_log(text))
    assert causes[0].label == "not_oom"
    assert any("a size computed wrong" in w for w in causes[0].why)


def test_a_terabyte_request_is_still_a_budget():
    # eager attention over a long video really asks for ~1.2 TiB: under a pebibyte it is read as a request
    text = oom("1.23 TiB", "79.15 GiB", "60.00 GiB", "19.15 GiB", "18.50 GiB", "10.00 MiB")
    assert "not_oom" not in labels(rank_root_causes(parse_log(text)))[:1]


def test_weights_that_fit_with_room_to_spare_are_discounted_at_their_widest():
    """the weights alone do not fit one GPU (weights_exceed_gpu): a 0.5B model even in fp32 takes ~2 GiB of a 24 GB
    card, so that cause is discounted; a 7B model whose dtype is not stated may load in fp32 (28 GiB), so it is not."""
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import estimate_memory
    from ask_oom.tools.root_causes.ranking import collect_signals

    report = parse_log(oom("20.00 MiB", "23.65 GiB", "10.06 MiB", "23.63 GiB", "23.10 GiB", "20.00 MiB"))

    def against_weights(name):
        setup = observed(TrainingSetup(model=resolve_model(name)), gpu=lookup_gpu("RTX 4090"), micro_batch=4)
        return [s.name for s in collect_signals(report, setup, estimate_memory(setup))
                if s.label == "weights_exceed_gpu" and s.kind.value == "discount"]

    assert against_weights("Qwen/Qwen2.5-0.5B") == ["weights_fit_with_room"]
    assert against_weights("qwen2.5-7b") == []


def test_a_speech_model_named_by_its_size_word_is_sized_and_its_weights_fit():
    """"the openai/whisper-medium model" states 769M parameters by its family's table: even in fp32 (3 GiB) its weights
    fill little of a 24 GB card, so weights_exceed_gpu is discounted, with the arithmetic."""
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report
    from ask_oom.tools.setup_assembly import assemble_setup

    text = ("While trying to finetune the openai/whisper-medium model I very soon run out of VRAM.\n"
            + oom("20.00 MiB", "23.65 GiB", "10.06 MiB", "23.63 GiB", "23.10 GiB", "20.00 MiB"))
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    setup = assemble_setup(report)
    assert setup.stated_params == 769_000_000
    weights = next(c for c in rank_root_causes(report, setup) if c.label == "weights_exceed_gpu")
    assert any("the weights take at most 2.86 GiB per GPU" in w for w in weights.why)


def test_a_full_fine_tune_of_a_model_known_by_its_size_sizes_its_states():
    """What a trained parameter keeps (weight, gradient, Adam's two moments; 16 B under autocast) does not depend on
    the architecture: a full fine-tune of whisper-large (1.55B, stated by its family's table) is checked against the
    card by its states, with the arithmetic; sharded by ZeRO-3 over 8 GPUs they fit, and a whisper-small does not
    fill the card."""
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report

    def states_why(model: str, extra: dict | None = None) -> list[str]:
        text = (f"Full fine-tuning of openai/{model} with the Seq2SeqTrainer runs out of memory at the first step\n"
                + oom("20.00 MiB", "23.65 GiB", "10.06 MiB", "23.63 GiB", "23.10 GiB", "20.00 MiB"))
        report = refine_report(parse_log(text), text, cues=log_cues(text)).report
        setup = assemble_setup(report).with_fact("workload", "train", "log", "fine-tuning").with_fact(
            "method", "full", "log", "full fine-tuning")
        for name, value in (extra or {}).items():
            setup = setup.with_fact(name, value, "user", name)
        assert setup.model is None and setup.stated_params
        return [w for c in rank_root_causes(report, setup) if c.label == "full_ft_model_states" for w in c.why]

    why = states_why("whisper-large")
    assert any("1.55B parameters x 16 B (weight 4 + gradient 4 + optimizer 8) = 23.10 GiB per GPU, above the" in w
               for w in why)
    sharded = states_why("whisper-large", {"num_gpus": 8, "zero_stage": 3})
    assert not any("above the" in w for w in sharded)
    assert not any("parameters x" in w for w in states_why("whisper-small"))


@pytest.mark.parametrize("log", [
    # ggml's CPU buffer for a negative size read as unsigned (2^64 - 2048 bytes)
    "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 18446744073709549568\n"
    "alloc_tensor_range: failed to allocate CPU buffer of size 18446744073709549568\n"
    "libc++abi: terminating due to uncaught exception of type std::bad_alloc: std::bad_alloc\nAborted\n",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8388608.00 TiB. GPU 0 has a total capacity of "
    "79.19 GiB of which 70.00 GiB is free.\n"])
def test_a_request_larger_than_any_machine_is_a_size_bug_on_the_host_or_the_gpu(log):
    """No memory holds 2^50 bytes: such a request is a size computed wrong (an overflow, a negative size read as
    unsigned), whichever device was asked; the memory budget is not the cause."""
    report = parse_log(log)
    assert report.requested_bytes and report.requested_bytes >= 2 ** 50
    causes = rank_root_causes(report, TrainingSetup())
    assert causes[0].label == "not_oom" and any("more than any machine holds" in w for w in causes[0].why)


def test_a_vision_tower_request_back_solves_the_patches_of_one_image():
    """With the image size unknown, a vision-tower request is read as one image's attention scores: the patches,
    pixels and merged tokens it implies are shown with their arithmetic (oom-signals.md), once."""
    arch = resolve_model("Qwen/Qwen2-VL-7B-Instruct")
    setup = observed(TrainingSetup(model=arch, method="lora"), micro_batch=1)
    text = ("    image_embeds = self.visual(pixel_values, grid_thw=image_grid_thw)\n"
            + oom("30.00 GiB", "79.19 GiB", "20.00 GiB", "58.00 GiB", "57.00 GiB", "500.00 MiB"))
    top = rank_root_causes(parse_log(text), setup, cues=log_cues(text))[0]
    patches = math.isqrt(30 * 2**30 // (arch.vision.num_heads * 2))
    assert top.label == "vision_tokens"
    said = [w for w in top.why if "patches of 14x14 px" in w]
    assert len(said) == 1 and f"= {patches:,} patches" in said[0]
    assert f"{patches // 4:,} tokens after its 2x2 merge" in said[0]
