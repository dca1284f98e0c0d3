"""The memory calculator's output contract: a per-GPU breakdown of one step's peak."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PeakPhase = Literal["model_loading", "forward_end", "backward", "optimizer_step", "evaluation", "generation",
                    "kv_cache_allocation"]

# Component names the breakdown uses (stable: renderers colour by these; renderers keep unknown ones too).
COMPONENTS = (
    "weights", "gradients", "optimizer_states", "master_weights", "activations", "attention_scores",
    "logits_and_loss", "vision_activations", "optimizer_temporaries", "eval_accumulated", "allocator_reserve",
    "autocast_weight_copies", "zero3_gathered_params", "ddp_gradient_buckets", "cuda_workspace", "kv_cache",
    # preference stages: the frozen reference copy and the logits of its no_grad forward
    "reference_weights", "reference_logits",
    # vLLM serving: the sampler's logits of the profiling run, CUDA graphs, memory outside PyTorch, the KV-cache pool
    "sampler_logits", "cuda_graphs", "non_torch", "kv_cache_pool",
)


MODEL_STATE_COMPONENTS = ("weights", "reference_weights", "gradients", "optimizer_states", "master_weights")
# What a step's tokens make (grows with batch and length): the generation KV cache is one of them.
ACTIVATION_COMPONENTS = ("activations", "attention_scores", "logits_and_loss", "vision_activations", "kv_cache",
                         "eval_accumulated", "reference_logits", "sampler_logits")


class MemoryComponent(BaseModel):
    name: str
    bytes: int
    formula: str = Field(default="", description="how it was computed, with the numbers, e.g. '7.62e9 params x 2 B (bf16)'")


class MemoryBreakdown(BaseModel):
    """Components at the peak moment (what is live at `peak_phase`), on the busiest GPU."""

    components: list[MemoryComponent] = Field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {c.name: c.bytes for c in self.components}

    def get(self, name: str) -> int:
        return sum(c.bytes for c in self.components if c.name == name)

    def all_weights(self) -> int:
        """Every weight copy on the GPU: the model's and a frozen reference copy's (DPO/KTO/PPO)."""
        return self.get("weights") + self.get("reference_weights")

    def model_states(self) -> int:
        """Weights (a reference copy's too), gradients, optimizer states and fp32 master weights: what sharding
        (ZeRO/FSDP) divides."""
        return sum(self.get(n) for n in MODEL_STATE_COMPONENTS)

    def step_activations(self) -> int:
        """What a step's tokens make: layer activations, attention scores, logits and loss, vision activations, the
        generation KV cache and the kept predictions."""
        return sum(self.get(n) for n in ACTIVATION_COMPONENTS)


class ServingSize(BaseModel):
    """Per-GPU memory of one vLLM configuration, as vLLM's start-up arithmetic makes it (tools/memory/serve.py)."""

    tensor_parallel: int
    utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    weights_per_gpu: int
    activations: int = Field(description="the profiling run's peak: a forward of max_num_batched_tokens, sampler logits included")
    cuda_graphs: int
    non_torch: int
    requested: int = Field(description="gpu_memory_utilization x the GPU's total memory")
    kv_bytes_per_token: int = Field(description="per GPU: 2 (K, V) x layers x kv heads per rank x head dim x cache dtype bytes")
    kv_available: int = Field(description="the KV-cache pool: requested - (weights + activations + CUDA graphs + non-torch)")
    kv_needed: int = Field(description="one max_model_len sequence: what vLLM's start-up check asks the pool to hold")
    max_len_that_fits: int = Field(description="the largest max_model_len the pool holds one sequence of (vLLM's estimate)")
    concurrency: float = Field(description="max_model_len sequences the pool holds at once (vLLM's 'Maximum concurrency')")
    startup_headroom: int = Field(description="memory other processes may hold before vLLM's free-memory start-up check fails")

    @property
    def fits(self) -> bool:
        return self.kv_available >= self.kv_needed


class MemoryEstimate(BaseModel):
    """Predicted peak allocated by PyTorch on the busiest GPU (CUDA context excluded), and verdicts."""

    peak_bytes: int
    peak_phase: PeakPhase
    workload: Literal["train", "eval", "predict", "generate", "serve"] = Field(
        default="train", description="the step sized: a training step, evaluation, prediction, generation, or a vLLM "
        "server (weights, profiling peak, CUDA graphs and the KV-cache pool it reserves)")
    breakdown: MemoryBreakdown
    n_params: int
    n_trainable: int
    host_bytes: int = Field(default=0, description="host RAM needed (offloaded states, pinned buffers, loading)")
    cuda_context_bytes: int = 0
    gpu_name: str | None = None
    gpu_bytes: int | None = None
    budget_bytes: int | None = Field(default=None, description="usable: capacity x margin - CUDA context")
    fits: bool | None = Field(default=None, description="the band's upper edge fits the budget (None: no GPU given)")
    verdict: Literal["fits", "borderline", "does_not_fit"] | None = Field(
        default=None, description="fits: the upper edge fits; borderline: the budget lies inside the band (probe it); "
        "does_not_fit: even the lower edge is over")
    band_lower_bytes: int | None = Field(default=None, description="lower edge of the error band (calibration residuals)")
    band_upper_bytes: int | None = Field(default=None, description="upper edge of the error band: what `fits` is judged on")
    band_notes: list[str] = Field(default_factory=list, description="why the band is as wide as it is")
    probe_command: str | None = Field(default=None, description="the `ask-oom probe` command that settles a borderline verdict")
    headroom_bytes: int | None = None
    host_fits: bool | None = None
    max_micro_batch: int | None = Field(default=None, description="largest micro-batch that fits the budget at this seq_len")
    max_seq_len: int | None = Field(default=None, description="largest seq_len that fits the budget at this micro-batch "
                                    "(serve: the largest max_model_len whose one sequence the KV-cache pool holds)")
    serving: ServingSize | None = Field(default=None, description="vLLM serving: the pool arithmetic (serve workload only)")
    notes: list[str] = Field(default_factory=list, description="assumptions and caveats the calculator made")
    host_breakdown: dict[str, int] = Field(default_factory=dict, description="host RAM per node by purpose (offload, loading)")
    allocator_reserve_bytes: int | None = Field(
        default=None, description="capacity x (1 - margin): left free for allocator fragmentation and non-PyTorch memory")
