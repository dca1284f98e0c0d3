"""Builders for memory snapshots in the documented `torch.cuda.memory._snapshot()` format (no tests here).

Stacks are innermost first, as the allocator records them, mixing C++ frames (stacks="all", the default) with
Python frames; a Llama-style training step's allocation sites are modelled on transformers and torch.optim.
"""

from __future__ import annotations

import pickle

GiB = 1 << 30
MiB = 1 << 20
SP = "/opt/conda/lib/python3.11/site-packages"


def fr(filename: str, name: str, line: int = 1) -> dict:
    return {"filename": filename, "line": line, "name": name}


ALLOC_CPP = [fr("??", "c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc(...)", 0),
             fr("??", "at::empty_strided_cuda(...)", 0)]
TRAIN = [fr(f"{SP}/transformers/trainer.py", "training_step", 3790),
         fr(f"{SP}/transformers/trainer.py", "_inner_training_loop", 2560),
         fr(f"{SP}/transformers/trainer.py", "train", 2240), fr("/workspace/train.py", "main", 88),
         fr("/workspace/train.py", "<module>", 120)]
WEIGHTS = ALLOC_CPP + [fr(f"{SP}/torch/nn/modules/module.py", "_apply", 942),
                       fr(f"{SP}/transformers/modeling_utils.py", "_load_state_dict_into_meta_model", 830),
                       fr(f"{SP}/transformers/modeling_utils.py", "_load_pretrained_model", 4930),
                       fr(f"{SP}/transformers/modeling_utils.py", "from_pretrained", 4400),
                       fr("/workspace/train.py", "main", 40)]
ADAM = ALLOC_CPP + [fr(f"{SP}/torch/optim/adam.py", "_init_group", 167), fr(f"{SP}/torch/optim/adam.py", "step", 230),
                    fr(f"{SP}/torch/optim/optimizer.py", "wrapper", 517)] + TRAIN
FORWARD = ALLOC_CPP + [fr(f"{SP}/torch/nn/modules/linear.py", "forward", 125),
                       fr(f"{SP}/torch/nn/modules/module.py", "_call_impl", 1762),
                       fr(f"{SP}/transformers/models/llama/modeling_llama.py", "forward", 155),
                       fr(f"{SP}/torch/nn/modules/module.py", "_call_impl", 1762)] + TRAIN
ATTENTION = ALLOC_CPP + [fr(f"{SP}/torch/nn/functional.py", "softmax", 2140),
                         fr(f"{SP}/transformers/models/llama/modeling_llama.py", "eager_attention_forward", 190),
                         fr(f"{SP}/transformers/models/llama/modeling_llama.py", "forward", 260)] + TRAIN
LOSS = ALLOC_CPP + [fr(f"{SP}/torch/nn/functional.py", "cross_entropy", 3494),
                    fr(f"{SP}/transformers/loss/loss_utils.py", "fixed_cross_entropy", 36),
                    fr(f"{SP}/transformers/loss/loss_utils.py", "ForCausalLMLoss", 60),
                    fr(f"{SP}/transformers/models/llama/modeling_llama.py", "forward", 480)] + TRAIN
BACKWARD = ALLOC_CPP + [fr("??", "torch::autograd::generated::MmBackward0::apply(...)", 0),
                        fr("??", "torch::autograd::Engine::evaluate_function(...)", 0),
                        fr("??", "torch::autograd::Engine::thread_main(...)", 0)]
UNKNOWN = ALLOC_CPP + [fr("/workspace/train.py", "make_buffers", 12)]


def llama_parts(scale: float = 1.0, extra_activations: int = 0) -> list[tuple[int, list[dict]]]:
    """(block size, stack) of a Llama-style step at the OOM: weights, Adam states, activations, 4 GiB of logits."""
    w = int(512 * MiB * scale)
    parts = [(w, WEIGHTS) for _ in range(8)]                   # 4 GiB weights
    parts += [(w, ADAM) for _ in range(16)]                    # 8 GiB exp_avg + exp_avg_sq
    parts += [(w, BACKWARD) for _ in range(8)]                 # 4 GiB gradients (weight-sized, from backward)
    parts += [(256 * MiB, BACKWARD) for _ in range(2)]         # backward temporaries
    parts += [(1 * GiB, FORWARD) for _ in range(6)]            # 6 GiB activations
    parts += [(512 * MiB, ATTENTION)]                          # attention scores
    parts += [(4 * GiB, LOSS)]                                 # the fp32 logits in cross_entropy
    if extra_activations:
        parts += [(extra_activations, FORWARD)]
    return parts


def build(parts: list[tuple[int, list[dict]]], *, frames: bool = True, free_per_segment: int = 2 * MiB,
          oom: tuple[int, int, list[dict]] | None = None, device: int = 0, base: int = 0x7F0000000000) -> dict:
    """A snapshot dict: one segment per part (the block allocated, then an inactive tail of `free_per_segment`), the
    history of their allocations, and an OOM action (size requested, device_free, stack) when given."""
    segments, trace = [], []
    addr = base
    for size, stack in parts:
        blocks = [{"address": addr, "size": size, "requested_size": size, "state": "active_allocated",
                   "frames": stack if frames else []}]
        if free_per_segment:
            blocks.append({"address": addr + size, "size": free_per_segment, "requested_size": 0,
                           "state": "inactive", "frames": []})
        total = size + free_per_segment
        segments.append({"device": device, "address": addr, "total_size": total, "allocated_size": size,
                         "active_size": size, "requested_size": size, "stream": 0,
                         "segment_type": "large" if size > MiB else "small", "segment_pool_id": (0, 0),
                         "is_expandable": False, "frames": stack if frames else [], "blocks": blocks})
        if frames:
            trace.append({"action": "segment_alloc", "addr": addr, "size": total, "stream": 0, "frames": stack,
                          "time_us": 1})
            trace.append({"action": "alloc", "addr": addr, "size": size, "stream": 0, "frames": stack, "time_us": 2})
        addr += total + (1 << 21)
    if oom is not None:
        size, device_free, stack = oom
        trace.append({"action": "oom", "device_free": device_free, "size": size, "stream": 0,
                      "frames": stack if frames else [],
                      "time_us": 3})
    traces = [[] for _ in range(device)] + [trace]
    return {"segments": segments, "device_traces": traces,
            "allocator_settings": {"PYTORCH_CUDA_ALLOC_CONF": "", "max_split_size": -1,
                                   "expandable_segments": False, "roundup_power2_divisions": {"1": 0}}}


def llama_snapshot(**kw) -> dict:
    """The Llama-style step with an OOM requesting 2 GiB while 1.2 GiB was free."""
    scale = kw.pop("scale", 1.0)
    extra = kw.pop("extra_activations", 0)
    kw.setdefault("oom", (2 * GiB, int(1.2 * GiB), LOSS))
    return build(llama_parts(scale, extra), **kw)


def dumps(obj: object, protocol: int = 4) -> bytes:
    return pickle.dumps(obj, protocol=protocol)
