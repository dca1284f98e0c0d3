"""vLLM serving: the memory one GPU of a `vllm serve` / `LLM(...)` engine takes, as vLLM's own start-up arithmetic does it.

vLLM (V1 engine, vllm/v1/worker/gpu_worker.py determine_available_memory) loads the weights, runs one profiling forward
of max_num_batched_tokens tokens with a sampler pass over max_num_seqs requests, measures the peak, and hands the rest of
`gpu_memory_utilization x total memory` to the KV-cache pool:

    pool = utilization x total - (weights + profiling peak + non-torch memory + CUDA graphs)

(vllm/utils/mem_utils.py memory_profiling: non_kv_cache_memory = weights + torch peak increase + non-torch increase; the
CUDA-graph estimate is subtracted too since v0.21, VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1). It then refuses to start
unless the pool holds one max_model_len sequence (vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory: "To serve
at least one request with the model's max seq len (...) ... the estimated maximum model length is N"), and before any of
it, unless the GPU's free memory covers the utilization asked for (gpu_worker.init_device: "Free memory on device ... on
startup is less than desired GPU memory utilization").
"""

from __future__ import annotations

from ..gpus import CUDA_CONTEXT_BYTES
from ..training_setup import TrainingSetup
from ..units import GiB, MiB
from .activations import ActPolicy, layer_activation_bytes
from .params import count_params, moe_layer_indices
from .schema import ServingSize

# vllm/config/cache.py CacheConfig.gpu_memory_utilization default.
DEFAULT_UTILIZATION = 0.9
# vllm/config/model.py _get_and_verify_max_len: a config naming no context length gets 2048.
DEFAULT_MAX_MODEL_LEN = 2048
# vllm/config/cache.py CacheConfig.block_size default on CUDA: the pool is handed out in blocks of 16 tokens.
BLOCK_TOKENS = 16
# vllm/engine/arg_utils.py EngineArgs._set_default_args (V1, chunked prefill on for generative models): GPUs with at least
# 70 GiB that are not A100s get max_num_batched_tokens 16384 (LLM class) / 8192 (API server) and max_num_seqs 1024; the
# others 8192 / 2048 and 256. max_num_seqs is capped at max_num_batched_tokens.
LARGE_GPU_BYTES = 70 * GiB
DEFAULT_BATCHED_TOKENS = {("llm", True): 16384, ("server", True): 8192, ("llm", False): 8192, ("server", False): 2048}
DEFAULT_MAX_NUM_SEQS = {True: 1024, False: 256}
# CUDA graphs: vLLM's capture message, "CUDA graphs can take additional 1~3 GiB memory per GPU" (vllm/worker/model_runner.py
# capture_model); the lower end is taken (what V1 logs for 7B-70B models with the default capture sizes is below it).
CUDA_GRAPHS_BYTES = 1 * GiB
# Non-torch memory created after vLLM's start-up snapshot: with tensor parallelism the NCCL communicator's buffers,
# vLLM's own worked example in memory_profiling's docstring ("category 3: 0.5 GiB (memory used by NCCL)"); one GPU runs
# no communicator.
NCCL_BYTES = 512 * MiB
# Sampler of the profiling run (vllm/v1/sample/sampler.py, ops/topk_topp_sampler.py): per logit of num_reqs x vocab, the
# bf16 lm_head output (2) + its fp32 copy (logits.to(float32): 4) + the top-k/top-p sort's values (4) and int64 indices (8).
SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4 + 8
# --quantization: AWQ/GPTQ pack 4-bit weights with an fp16 scale and a 4-bit zero point per group of 128 (AutoAWQ
# q_group_size 128, GPTQ group_size 128): 0.5 + 2.5/128 B per weight; fp8 (W8A8) stores 1 B per weight and a per-tensor
# scale. Embeddings, lm_head and norms stay 16-bit.
AWQ_BYTES_PER_WEIGHT = 0.5 + (2 + 0.5) / 128
FP8_BYTES_PER_WEIGHT = 1.0
QUANTIZATION_BITS = {"awq": 4, "awq_marlin": 4, "gptq": 4, "gptq_marlin": 4, "marlin": 4, "bitsandbytes": 4,
                     "compressed-tensors": 4, "fp8": 8, "fbgemm_fp8": 8, "modelopt": 8, "experts_int8": 8}


def serves(setup: TrainingSetup) -> bool:
    """Whether the setup is a vLLM engine (a serve command or an LLM(...) call): sized as serving, not as a step."""
    return setup.framework == "vllm"


def weight_bytes(setup: TrainingSetup) -> int:
    """Bytes per parameter of vLLM's dtype: --dtype float32 keeps 4, auto/bfloat16/float16 2 (the reader records it as
    the setup's precision)."""
    return 4 if setup.precision == "fp32" else 2


def kv_bytes_per_token_per_gpu(setup: TrainingSetup, tp: int) -> int:
    """KV-cache bytes one token takes on one GPU: K and V for every layer and the KV heads of this rank (KV heads are split
    over the tensor-parallel ranks, replicated when there are fewer heads than ranks), in the cache dtype (fp8: 1 B).
    MLA models (DeepSeek-V2/V3) cache the compressed latent (kv_lora_rank + rope dim) per layer, on every rank."""
    from .estimator import kv_bytes_per_token

    arch = setup.model
    assert arch is not None
    cache_b = 1 if setup.kv_cache_dtype.lower().startswith("fp8") else weight_bytes(setup)
    if arch.is_mla:
        return arch.num_layers * ((arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)) * cache_b
    heads = max(1, arch.num_kv_heads // tp)
    return kv_bytes_per_token(arch, cache_b) * heads // max(1, arch.num_kv_heads)


def _large_gpu(setup: TrainingSetup) -> bool:
    gpu = setup.gpu
    return gpu is not None and gpu.memory_bytes >= LARGE_GPU_BYTES and "a100" not in gpu.name.lower()


def resolved(setup: TrainingSetup) -> tuple[float, int, int, int]:
    """gpu_memory_utilization, max_model_len, max_num_batched_tokens, max_num_seqs: what the setup states, else vLLM's
    defaults for this GPU and entry point."""
    util = setup.gpu_memory_utilization or DEFAULT_UTILIZATION
    max_len = setup.max_model_len or (setup.model.max_position_embeddings if setup.model else None) or DEFAULT_MAX_MODEL_LEN
    large = _large_gpu(setup)
    tokens = setup.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS[(setup.serve_entry, large)]
    seqs = setup.max_num_seqs or min(DEFAULT_MAX_NUM_SEQS[large], tokens)
    return util, int(max_len), int(tokens), int(seqs)


def serving_size(setup: TrainingSetup, *, tensor_parallel: int | None = None, utilization: float | None = None,
                 max_model_len: int | None = None, dtype_bytes: int | None = None) -> ServingSize:
    """One GPU of the engine: weights / TP, the profiling peak, CUDA graphs, non-torch memory and the KV-cache pool left
    of utilization x total. The keyword arguments override the setup's own (the planner tries other ones)."""
    arch = setup.model
    assert arch is not None and setup.gpu is not None
    tp = tensor_parallel or setup.tensor_parallel_size
    util, max_len, tokens, seqs = resolved(setup)
    util = utilization or util
    max_len = max_model_len or max_len
    b = dtype_bytes or weight_bytes(setup)
    pc = count_params(arch)
    bits = setup.quantization_bit if setup.quantization_bit in (4, 8) else None
    if bits:
        per = AWQ_BYTES_PER_WEIGHT if bits == 4 else FP8_BYTES_PER_WEIGHT
        weights = int(pc.linear_weights * per) + (pc.total - pc.linear_weights) * b
    else:
        weights = pc.total * b
    # every parameter once, split evenly over the tensor-parallel ranks (Megatron-style column/row and vocab sharding)
    weights //= tp
    # the profiling forward of `tokens` tokens (no_grad, flash attention: no score matrix): the hidden states and the
    # residual (replicated on every rank) plus one layer's working set, whose heads and MLP width are split over the ranks
    frozen = ActPolicy(False, False, {}, b, False, training=False)
    layer = tokens * layer_activation_bytes(arch, frozen, moe=bool(moe_layer_indices(arch))) // tp
    activations = 2 * tokens * arch.hidden_size * b + layer + sampler_bytes(setup, seqs, tokens)
    graphs = 0 if setup.enforce_eager else CUDA_GRAPHS_BYTES
    non_torch = NCCL_BYTES if tp > 1 else 0
    total = setup.gpu.memory_bytes
    requested = int(total * util)
    pool = requested - (weights + activations + graphs + non_torch)
    kv_tok = kv_bytes_per_token_per_gpu(setup, tp)
    blocks = max(pool, 0) // (kv_tok * BLOCK_TOKENS) if kv_tok else 0
    # the largest max_model_len: what the pool holds, within the model's context (vLLM refuses a longer max_model_len
    # than the model's config allows, and its own estimate searches up to the configured one)
    context = max(max_len, arch.max_position_embeddings or 0)
    return ServingSize(
        tensor_parallel=tp, utilization=util, max_model_len=max_len, max_num_seqs=seqs, max_num_batched_tokens=tokens,
        weights_per_gpu=weights, activations=activations, cuda_graphs=graphs, non_torch=non_torch, requested=requested,
        kv_bytes_per_token=kv_tok, kv_available=pool, kv_needed=kv_tok * max_len, max_len_that_fits=min(blocks * BLOCK_TOKENS, context),
        concurrency=blocks * BLOCK_TOKENS / max_len if max_len else 0.0,
        startup_headroom=total - CUDA_CONTEXT_BYTES - requested)


def sampler_bytes(setup: TrainingSetup, max_num_seqs: int, max_num_batched_tokens: int) -> int:
    """The sampler's share of the profiling peak: one logit row per dummy request (min(max_num_seqs, batched tokens)),
    gathered to the full vocabulary on every rank, x SAMPLER_BYTES_PER_LOGIT."""
    return min(max_num_seqs, max_num_batched_tokens) * setup.model.vocab_size * SAMPLER_BYTES_PER_LOGIT


_FORMULAS = {
    "weights": "parameters x bytes per parameter of vLLM's dtype (4-bit AWQ/GPTQ: 0.5 + 2.5/128 B, fp8: 1 B per Linear "
               "weight) / tensor-parallel size",
    "activations": "profiling forward of max_num_batched_tokens tokens: hidden states + residual (2 x T x h x 2 B) + one "
                   "layer's working set / TP",
    "sampler_logits": "profiling sampler pass: min(max_num_seqs, max_num_batched_tokens) x vocab x (2 bf16 + 4 fp32 + "
                      "4 sorted + 8 int64 indices) B",
    "cuda_graphs": "CUDA graphs captured for decoding: vLLM's '1~3 GiB per GPU', lower end (0 with --enforce-eager)",
    "non_torch": "memory outside PyTorch created after start-up: NCCL buffers with tensor parallelism (vLLM's 0.5 GiB example)",
    "kv_cache_pool": "gpu_memory_utilization x total - (weights + activations + sampler logits + CUDA graphs + non-torch); "
                     "one token = 2 (K, V) x layers x kv heads per rank x head dim x cache dtype bytes",
}


def serve_estimate(setup: TrainingSetup):
    """The MemoryEstimate of a vLLM engine: its components on one GPU, the pool, and vLLM's own start-up checks. The budget
    is what vLLM lets itself use (gpu_memory_utilization x total), not the calculator's margin."""
    from ..units import format_bytes
    from .band import error_band
    from .band import verdict as band_verdict
    from .schema import MemoryBreakdown, MemoryComponent, MemoryEstimate

    arch = setup.model
    pc = count_params(arch)
    name = setup.model_name or arch.name or arch.model_type
    notes: list[str] = []
    if setup.gpu is None or setup.gpu.memory_bytes <= 0:
        # without a GPU there is no pool to size: weights and the profiling peak only
        _, _, tokens, seqs = resolved(setup)
        tp = setup.tensor_parallel_size
        fake = setup.with_fact("gpu", _nominal_gpu(), "derived", "no GPU: pool not sized")
        size = serving_size(fake)
        parts = {"weights": size.weights_per_gpu, "activations": size.activations - sampler_bytes(setup, seqs, tokens),
                 "sampler_logits": sampler_bytes(setup, seqs, tokens), "cuda_graphs": size.cuda_graphs,
                 "non_torch": size.non_torch}
        comps = [MemoryComponent(name=k, bytes=int(v), formula=_FORMULAS[k]) for k, v in parts.items() if v]
        peak = sum(parts.values())
        return MemoryEstimate(peak_bytes=peak, peak_phase="kv_cache_allocation", workload="serve",
                              breakdown=MemoryBreakdown(components=comps), n_params=pc.total, n_trainable=0,
                              cuda_context_bytes=CUDA_CONTEXT_BYTES, notes=[
                                  f"sized: vLLM serving {name} on tensor parallel {tp}: weights and the profiling run; "
                                  "give the GPU (--gpu) to size the KV-cache pool and vLLM's start-up checks"])
    size = serving_size(setup)
    sampler = sampler_bytes(setup, size.max_num_seqs, size.max_num_batched_tokens)
    parts = {"weights": size.weights_per_gpu, "activations": size.activations - sampler, "sampler_logits": sampler,
             "cuda_graphs": size.cuda_graphs, "non_torch": size.non_torch, "kv_cache_pool": max(size.kv_available, 0)}
    comps = [MemoryComponent(name=k, bytes=int(v), formula=_FORMULAS[k]) for k, v in parts.items() if v]
    non_kv = size.requested - size.kv_available
    # the band widens what vLLM holds besides the cache (profiling peak, graphs, non-torch are not measured here); the
    # cache for one sequence is exact arithmetic
    band = error_band(setup, non_kv, workload_measured=False)
    lower, upper = band.lower + size.kv_needed, band.upper + size.kv_needed
    band.lower, band.upper = lower, upper
    tp = size.tensor_parallel
    notes.append(f"sized: vLLM serving {name} on tensor parallel {tp} ({setup.serve_entry} defaults): weights, the profiling "
                 f"run of {size.max_num_batched_tokens} batched tokens with the sampler over {min(size.max_num_seqs, size.max_num_batched_tokens)} "
                 f"requests, {'no CUDA graphs (--enforce-eager)' if setup.enforce_eager else 'CUDA graphs'}, and the KV-cache "
                 f"pool left of gpu_memory_utilization {size.utilization:g} x {format_bytes(setup.gpu.memory_bytes)}")
    notes.append(f"KV cache: {size.kv_bytes_per_token} B per token per GPU; one {size.max_model_len}-token sequence needs "
                 f"{format_bytes(size.kv_needed)}, the pool is {format_bytes(max(size.kv_available, 0))}")
    if size.kv_available <= 0:
        notes.append("vLLM refuses to start: \"ValueError: No available memory for the cache blocks. Try increasing "
                     "`gpu_memory_utilization` when initializing the engine.\" (weights, profiling peak and graphs take "
                     f"{format_bytes(non_kv)} of the {format_bytes(size.requested)} it may use)")
    elif not size.fits:
        notes.append(f"vLLM refuses to start: \"ValueError: To serve at least one request with the model's max seq len "
                     f"({size.max_model_len}), ({size.kv_needed / GiB:.2f} GiB KV cache is needed, which is larger than the "
                     f"available KV cache memory ({size.kv_available / GiB:.2f} GiB). Based on the available memory, the "
                     f"estimated maximum model length is {size.max_len_that_fits}.\" Set --max-model-len "
                     f"{size.max_len_that_fits} or less, raise --gpu-memory-utilization, add GPUs (--tensor-parallel-size) "
                     "or use --kv-cache-dtype fp8")
    else:
        notes.append(f"concurrency: the pool holds {size.concurrency:.2f} sequences of {size.max_model_len} tokens at once "
                     f"(vLLM's \"Maximum concurrency for {size.max_model_len} tokens per request: {size.concurrency:.2f}x\"); "
                     f"the largest max_model_len it holds one of is {size.max_len_that_fits}")
    if size.startup_headroom < 0:
        notes.append(f"vLLM refuses to start even on an idle GPU: \"Free memory on device ... on startup is less than desired "
                     f"GPU memory utilization ({size.utilization:g}, {size.requested / GiB:.2f} GiB)\": the CUDA context "
                     "alone leaves less free; lower --gpu-memory-utilization")
    else:
        notes.append(f"start-up check: other processes may hold at most {format_bytes(size.startup_headroom)} of each GPU, "
                     "else vLLM stops with \"Free memory on device ... is less than desired GPU memory utilization\"")
    if size.weights_per_gpu > size.requested:
        notes.append("the weights alone exceed what vLLM may use: it runs out of memory while loading (more GPUs with "
                     "--tensor-parallel-size, a quantized checkpoint, or a larger GPU)")
    if arch.num_heads % tp:
        notes.append(f"vLLM needs the {arch.num_heads} attention heads divisible by the tensor-parallel size {tp}")
    est = MemoryEstimate(
        peak_bytes=sum(int(v) for v in parts.values()), peak_phase="kv_cache_allocation", workload="serve",
        breakdown=MemoryBreakdown(components=comps), n_params=pc.total, n_trainable=0, cuda_context_bytes=CUDA_CONTEXT_BYTES,
        gpu_name=setup.gpu.name, gpu_bytes=setup.gpu.memory_bytes, budget_bytes=size.requested,
        allocator_reserve_bytes=setup.gpu.memory_bytes - size.requested, notes=notes, serving=size,
        band_lower_bytes=lower, band_upper_bytes=upper, band_notes=band.reasons + [
            "the band widens what vLLM holds besides the KV cache; one sequence's cache is added exactly"],
        headroom_bytes=size.kv_available - size.kv_needed, max_seq_len=size.max_len_that_fits)
    est.verdict = band_verdict(band, size.requested)
    est.fits = est.verdict == "fits"
    return est


def _nominal_gpu():
    from ..gpus import GPUSpec

    return GPUSpec(name="no GPU given", memory_bytes=0)
