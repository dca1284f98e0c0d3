"""vLLM serving sized by the calculator (tools/memory/serve.py): weights / TP, the profiling run, CUDA graphs, non-torch
memory and the KV-cache pool left of gpu_memory_utilization x total, with vLLM's own start-up checks. Every expected value
is computed here from the formula, with the arithmetic written out."""

from __future__ import annotations

import json

from ask_oom.tools.configs import load_config
from ask_oom.tools.memory import count_params, estimate_memory
from ask_oom.tools.memory.activations import ActPolicy, layer_activation_bytes
from ask_oom.tools.report import OOMReport
from ask_oom.tools.setup_assembly import AssemblyRequest, assemble_setup
from ask_oom.tools.units import GiB, MiB

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SERVE = "vllm serve " + MODEL + " --gpu-memory-utilization 0.9 --max-model-len {len} --max-num-seqs 256{extra}\n"


def _setup(text: str, gpu: str, name: str = "serve.sh"):
    return assemble_setup(OOMReport(), load_config(text, name), AssemblyRequest(gpu=gpu))


def _expected_pool(setup, *, tp: int, tokens: int, seqs: int, graphs: bool = True) -> tuple[int, int]:
    """(weights per GPU, pool) from vLLM's arithmetic, written out for a Llama layout."""
    arch = setup.model
    weights = count_params(arch).total * 2 // tp                      # bf16, split over the TP ranks
    one_layer = tokens * layer_activation_bytes(arch, ActPolicy(False, False, {}, 2, False, training=False), moe=False) // tp
    hidden = 2 * tokens * arch.hidden_size * 2                        # hidden states + residual, bf16
    sampler = min(seqs, tokens) * arch.vocab_size * (2 + 4 + 4 + 8)   # bf16 + fp32 logits + sort values + int64 indices
    cuda_graphs = 1 * GiB if graphs else 0                            # vLLM: "CUDA graphs can take additional 1~3 GiB"
    non_torch = 512 * MiB if tp > 1 else 0                            # NCCL buffers with tensor parallelism
    requested = int(setup.gpu.memory_bytes * 0.9)
    return weights, requested - (weights + hidden + one_layer + sampler + cuda_graphs + non_torch)


def test_llama_8b_on_an_h100_fits_131072_tokens_and_the_pool_adds_up():
    s = _setup(SERVE.format(len=131072, extra=""), "H100")
    assert s.framework == "vllm" and s.max_model_len == 131072 and s.provenance["max_model_len"].origin == "config"
    est = estimate_memory(s)
    assert est.workload == "serve" and est.notes[0].startswith("sized: vLLM serving")
    z = est.serving
    # weights: 8.03e9 parameters x 2 B = 14.96 GiB
    assert abs(est.breakdown.get("weights") / GiB - 8.03e9 * 2 / GiB) < 0.01 and abs(z.weights_per_gpu / GiB - 14.96) < 0.01
    # KV per token: 2 (K, V) x 32 layers x 8 kv heads x 128 head dim x 2 B = 131072 B
    assert z.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    # vLLM's default on an H100 API server: max_num_batched_tokens 8192 (arg_utils _set_default_args)
    assert z.max_num_batched_tokens == 8192 and z.max_num_seqs == 256
    weights, pool = _expected_pool(s, tp=1, tokens=8192, seqs=256)
    assert z.kv_available == pool == est.breakdown.get("kv_cache_pool")
    # one 131072-token sequence: 131072 x 131072 B = 16 GiB, well inside a ~54 GiB pool
    assert z.kv_needed == 131072 * 131072 == 16 * GiB and est.verdict == "fits" and est.fits
    assert abs(z.concurrency - (pool // (131072 * 16)) * 16 / 131072) < 1e-9
    assert est.peak_bytes == int(s.gpu.memory_bytes * 0.9) == sum(c.bytes for c in est.breakdown.components)


def test_a_24gb_card_cannot_hold_one_131072_token_sequence_and_names_the_length_that_fits():
    s = _setup(SERVE.format(len=131072, extra=""), "RTX 4090")
    est = estimate_memory(s)
    z = est.serving
    # a 24 GB card: max_num_batched_tokens 2048 (a GPU under 70 GiB)
    weights, pool = _expected_pool(s, tp=1, tokens=2048, seqs=256)
    assert z.kv_available == pool and 0 < pool < 16 * GiB
    largest = pool // (131072 * 16) * 16             # whole 16-token blocks of 131072 B per token
    assert est.verdict == "does_not_fit" and est.fits is False and est.max_seq_len == largest == z.max_len_that_fits
    assert any(f"estimated maximum model length is {largest}" in n for n in est.notes)


def test_tensor_parallel_halves_the_weights_and_the_kv_per_gpu_and_fp8_halves_the_kv():
    one = estimate_memory(_setup(SERVE.format(len=32768, extra=""), "H100")).serving
    two = estimate_memory(_setup(SERVE.format(len=32768, extra=" --tensor-parallel-size 2"), "H100")).serving
    assert two.weights_per_gpu == one.weights_per_gpu // 2 and two.kv_bytes_per_token == one.kv_bytes_per_token // 2
    assert two.non_torch == 512 * MiB and one.non_torch == 0
    fp8 = estimate_memory(_setup(SERVE.format(len=32768, extra=" --kv-cache-dtype fp8"), "H100")).serving
    assert fp8.kv_bytes_per_token == 2 * 32 * 8 * 128 * 1 == one.kv_bytes_per_token // 2


def test_enforce_eager_drops_the_cuda_graphs():
    graphs = estimate_memory(_setup(SERVE.format(len=32768, extra=""), "H100"))
    eager = estimate_memory(_setup(SERVE.format(len=32768, extra=" --enforce-eager"), "H100"))
    assert graphs.breakdown.get("cuda_graphs") == 1 * GiB and eager.breakdown.get("cuda_graphs") == 0
    assert eager.serving.kv_available - graphs.serving.kv_available == 1 * GiB


def test_an_llm_call_in_python_is_read_like_the_command():
    cli = _setup(SERVE.format(len=32768, extra=" --tensor-parallel-size 2 --max-num-batched-tokens 8192"), "H100")
    code = (f'from vllm import LLM\nllm = LLM(model="{MODEL}", gpu_memory_utilization=0.9, max_model_len=32768, '
            'max_num_seqs=256, tensor_parallel_size=2, max_num_batched_tokens=8192)\n')
    py = _setup(code, "H100", "config.py")
    fields = ("framework", "gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
              "tensor_parallel_size", "kv_cache_dtype", "enforce_eager", "precision")
    assert [getattr(py, f) for f in fields] == [getattr(cli, f) for f in fields]
    assert (py.serve_entry, cli.serve_entry) == ("llm", "server")
    assert estimate_memory(py).serving == estimate_memory(cli).serving
    # left to vLLM, the LLM class profiles 16384 batched tokens on an H100 (the API server 8192)
    bare = _setup(f'from vllm import LLM\nllm = LLM(model="{MODEL}")\n', "H100", "config.py")
    assert estimate_memory(bare).serving.max_num_batched_tokens == 16384


def test_awq_weights_and_the_startup_check():
    awq = estimate_memory(_setup(SERVE.format(len=8192, extra=" --quantization awq"), "H100"))
    pc = count_params(_setup(SERVE.format(len=8192, extra=""), "H100").model)
    # 4-bit Linear weights with an fp16 scale + 4-bit zero per 128: 0.5 + 2.5/128 B; the rest bf16
    assert awq.serving.weights_per_gpu == int(pc.linear_weights * (0.5 + 2.5 / 128)) + (pc.total - pc.linear_weights) * 2
    greedy = estimate_memory(_setup(SERVE.format(len=8192, extra="").replace("0.9", "0.995"), "RTX 4090"))
    assert any("Free memory on device" in n and "idle GPU" in n for n in greedy.notes)


def test_estimate_cli_shows_the_serve_workload(tmp_path, capsys):
    from ask_oom.ui.cli import main

    cfg = tmp_path / "serve.sh"
    cfg.write_text(SERVE.format(len=32768, extra=" --tensor-parallel-size 2"))
    assert main(["estimate", "--config", str(cfg), "--gpu", "H100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workload"] == "serve" and {"weights", "activations", "sampler_logits", "cuda_graphs", "non_torch",
                                            "kv_cache_pool"} <= set(data["breakdown"])
    assert main(["estimate", "--config", str(cfg), "--gpu", "H100"]) == 0
    out = capsys.readouterr().out
    assert "sized: vLLM serving" in out and "kv_cache_pool" in out


def test_fix_of_a_serve_command_blames_the_kv_pool_and_states_its_arithmetic(tmp_path):
    """Without a log, the causes of a vLLM server come from its own arithmetic (weights, then the KV-cache pool), not
    from training states it does not have; the fix's memory line is vLLM's pool against one sequence."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.assistant.diagnosis import DiagnoseRequest
    from ask_oom.tools.configs.report import render_plan

    cmd = "vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 131072 --gpu-memory-utilization 0.9\n"
    d = diagnose(DiagnoseRequest(config_text=cmd, config_name="serve.sh", gpu="RTX 4090", retrieve=False))
    assert d.sized == "serve" and d.estimate.serving is not None and not d.estimate.serving.fits
    assert d.root_causes[0].label == "generation_kv_cache"
    assert "full_ft_model_states" not in [c.label for c in d.root_causes]
    z = d.estimate.serving
    assert z.kv_needed == 131072 * z.kv_bytes_per_token
    text = render_plan(d)
    assert "vLLM serving" in text and "KV-cache pool" in text and "--max-model-len" in text
