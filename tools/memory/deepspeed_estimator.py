"""DeepSpeed's own model-state estimators, reproduced exactly (for comparison with what users ran).

Source: microsoft/DeepSpeed deepspeed/runtime/zero/stage_1_and_2.py
(`estimate_zero2_model_states_mem_needs[_all_live]`) and stage3.py
(`estimate_zero3_model_states_mem_needs[_all_live]`). They count model states only (no
activations, logits or buffers): the reason real runs need more than they print.
`_all_live` counts `AutoModel` parameters, i.e. without the lm_head of a causal LM.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..model_arch import ModelArch
from ..units import GiB
from .params import count_params, lora_module_shapes


class DeepSpeedOption(BaseModel):
    """One line of DeepSpeed's printed table."""

    stage: int
    offload_optimizer: bool
    offload_param: bool = False
    zero_init: bool = True
    cpu_bytes: int
    gpu_bytes: int

    @property
    def cpu_gib(self) -> float:
        return self.cpu_bytes / GiB

    @property
    def gpu_gib(self) -> float:
        return self.gpu_bytes / GiB


class DeepSpeedEstimate(BaseModel):
    """The estimator's inputs and every option it prints (per CPU = per node, per GPU)."""

    total_params: int
    largest_layer_params: int
    num_gpus_per_node: int
    num_nodes: int
    additional_buffer_factor: float
    options: list[DeepSpeedOption] = Field(default_factory=list)
    selected: DeepSpeedOption | None = Field(default=None, description="the option matching the asked stage/offload")

    def table(self) -> str:
        """DeepSpeed's own printout format ('per CPU | per GPU | Options'), values in GiB."""
        lines = ["  per CPU  |  per GPU |   Options"]
        for o in self.options:
            opts = [f"offload_optimizer={'cpu ' if o.offload_optimizer else 'none'}"]
            if o.stage == 3:
                opts = [f"offload_param={'cpu ' if o.offload_param else 'none'}"] + opts + [f"zero_init={int(o.zero_init)}"]
            lines.append(f" {o.cpu_bytes / GiB:7.2f}GB | {o.gpu_bytes / GiB:6.2f}GB | {', '.join(opts)}")
        return "\n".join(lines)


def zero2_model_states(total_params: int, num_gpus_per_node: int = 1, num_nodes: int = 1,
                       cpu_offload: bool = True, additional_buffer_factor: float = 1.5) -> tuple[int, int]:
    """(cpu_bytes, gpu_bytes) exactly as stage_1_and_2.estimate_zero2_model_states_mem_needs computes them."""
    total_gpus = num_nodes * num_gpus_per_node
    if cpu_offload:
        gpu_mem = 2 * total_params
        cpu_mem = total_params * max(4 * total_gpus, 16) * additional_buffer_factor
    else:
        gpu_mem = 4 * total_params + int(16 * total_params / total_gpus)
        cpu_mem = total_params * 4 * num_gpus_per_node * additional_buffer_factor
    return int(cpu_mem), int(gpu_mem)


def zero3_model_states(total_params: int, largest_layer_params: int, num_gpus_per_node: int = 1, num_nodes: int = 1,
                       cpu_offload: bool = True, cpu_offload_params: bool = True, zero_init: bool = True,
                       additional_buffer_factor: float = 1.5) -> tuple[int, int]:
    """(cpu_bytes, gpu_bytes) exactly as stage3.estimate_zero3_model_states_mem_needs computes them."""
    total_gpus = num_nodes * num_gpus_per_node
    gpus_factor = 1 / num_nodes
    largest_layer_memory = 4 * largest_layer_params
    if cpu_offload:
        if cpu_offload_params:
            gpu_mem = largest_layer_memory
            if zero_init:
                cpu_mem = total_params * 18 * gpus_factor * additional_buffer_factor
            else:
                cpu_mem = total_params * max(4 * num_gpus_per_node, 18 * gpus_factor) * additional_buffer_factor
        else:
            gpu_mem = largest_layer_memory + int(2 * total_params / total_gpus)
            if zero_init:
                cpu_mem = total_params * 16 * gpus_factor * additional_buffer_factor
            else:
                cpu_mem = total_params * max(4 * num_gpus_per_node, 16 * gpus_factor) * additional_buffer_factor
    else:
        gpu_mem = largest_layer_memory + int(18 * total_params / total_gpus)
        if zero_init:
            cpu_mem = largest_layer_params * 4 * num_gpus_per_node * additional_buffer_factor
        else:
            cpu_mem = total_params * 4 * num_gpus_per_node * additional_buffer_factor
    return int(cpu_mem), int(gpu_mem)


def largest_module_params(arch: ModelArch, include_lm_head: bool = False) -> int:
    """Largest single module's own parameters (`m.parameters(recurse=False)`), as DeepSpeed's model_to_params finds it.

    Linear layers with nn.Linear experts (transformers 4.x layout); embeddings usually win.
    """
    pc = count_params(arch)
    cands = [pc.embedding]
    if include_lm_head and pc.lm_head:
        cands.append(pc.lm_head)
    for _name, in_f, out_f, _n in lora_module_shapes(arch, ["all"], include_experts=True):
        bias = out_f if (arch.mlp_bias or arch.qkv_bias or arch.attention_bias) else 0
        cands.append(in_f * out_f + bias)
    return max(cands)


def deepspeed_estimate(model: ModelArch | int, *, stage: int = 3, num_gpus_per_node: int = 1, num_nodes: int = 1,
                       offload_optimizer: bool = False, offload_param: bool = False, zero_init: bool = True,
                       additional_buffer_factor: float = 1.5, largest_layer_params: int | None = None,
                       include_lm_head: bool = False) -> DeepSpeedEstimate:
    """DeepSpeed's estimate_zero{2,3}_model_states_mem_needs_all_live for a model (or a parameter count).

    With a ModelArch the parameters are counted like `AutoModel.from_pretrained` (no lm_head) unless
    include_lm_head; tied embeddings count once (DeepSpeed dedups by data_ptr).
    """
    if stage not in (2, 3):
        raise ValueError("DeepSpeed ships estimators for ZeRO-2 and ZeRO-3 only")
    if isinstance(model, ModelArch):
        pc = count_params(model)
        total = pc.total - (0 if include_lm_head else pc.lm_head)
        largest = largest_layer_params or largest_module_params(model, include_lm_head)
    else:
        total = int(model)
        largest = int(largest_layer_params or 0)
    out = DeepSpeedEstimate(total_params=total, largest_layer_params=largest, num_gpus_per_node=num_gpus_per_node,
                            num_nodes=num_nodes, additional_buffer_factor=additional_buffer_factor)
    if stage == 2:
        # the printed order of estimate_zero2_model_states_mem_needs_all_cold: offload first
        for off in (True, False):
            cpu, gpu = zero2_model_states(total, num_gpus_per_node, num_nodes, off, additional_buffer_factor)
            out.options.append(DeepSpeedOption(stage=2, offload_optimizer=off, cpu_bytes=cpu, gpu_bytes=gpu))
        out.selected = next(o for o in out.options if o.offload_optimizer == offload_optimizer)
        return out
    for off_opt in (True, False):
        for off_par in (True, False):
            if not off_opt and off_par:
                continue
            for zi in (True, False):
                cpu, gpu = zero3_model_states(total, largest, num_gpus_per_node, num_nodes, off_opt, off_par, zi,
                                              additional_buffer_factor)
                out.options.append(DeepSpeedOption(stage=3, offload_optimizer=off_opt, offload_param=off_par,
                                                   zero_init=zi, cpu_bytes=cpu, gpu_bytes=gpu))
    want_par = offload_param and offload_optimizer
    out.selected = next(o for o in out.options if o.offload_optimizer == offload_optimizer
                        and o.offload_param == want_par and o.zero_init == zero_init)
    return out
