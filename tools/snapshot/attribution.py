"""What held the GPU's memory, by the calculator's component names, read from each block's allocation stack.

The state attributed is the one at the OOM when the history recorded an `oom` action (the segments are rolled back
to that moment through the actions recorded after it), else the segments as the snapshot saw them. Each held block
gets the component of the first rule in SITE_RULES that matches a frame of its stack ('path/file.py:function',
lower case); reserved memory no block holds is `fragmentation`; a block no rule recognises, or with no stack, is
`unattributed`. So the components always sum to the reserved bytes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from ..memory.schema import COMPONENTS
from ..units import format_bytes
from .reader import Frame, Snapshot, TraceEntry

FRAGMENTATION = "fragmentation"
UNATTRIBUTED = "unattributed"
# A block allocated in backward: a parameter's gradient when its size matches a weight block's (one gradient per
# weight block of that size), else a temporary of backward (an activation's gradient), counted as activations.
BACKWARD = "gradients_or_backward_temporaries"
TOP_SITES = 10

# A word that must not be a directory name ('/workspace/train.py' is no cuBLAS workspace): nothing but the file's own
# name and the function may follow it.
_NOT_DIR = r"[^/]{0,400}$"

# (pattern, component, why): matched in order against each frame's 'path/file.py:function' in lower case; the first
# rule that matches any frame of a block's stack decides. Patterns use bounded repetitions only.
SITE_RULES: tuple[tuple[str, str, str], ...] = (
    (r"torch/utils/checkpoint\.py:", "activations", "recomputed in backward by activation checkpointing"),
    (r"accumulategrad|accumulate_grad", "gradients", "a parameter's .grad accumulated by autograd"),
    (r"torch/optim/optimizer\.py:(?:load_state_dict|_process_value)", "optimizer_states",
     "optimizer state loaded from a checkpoint"),
    (r"torch/optim/[\w/]{0,40}\.py:_init_group", "optimizer_states",
     "optimizer state created at the first step (torch.optim _init_group)"),
    (r"bitsandbytes/optim/[\w/]{0,40}\.py:\w{0,30}init_state", "optimizer_states",
     "bitsandbytes optimizer state created at the first step"),
    (r"deepspeed/runtime/zero/stage(?:3|_1_and_2)\.py:\w{0,60}(?:optimizer_state|initialize_optimizer)",
     "optimizer_states", "DeepSpeed ZeRO optimizer state partitions"),
    (r"deepspeed/runtime/zero/stage(?:3|_1_and_2)\.py:\w{0,60}fp32", "master_weights",
     "DeepSpeed ZeRO fp32 master partitions"),
    (r"deepspeed/runtime/zero/stage(?:3|_1_and_2)\.py:\w{0,60}(?:grad|reduce|ipg)", "gradients",
     "DeepSpeed ZeRO gradient partitions and reduce buckets"),
    (r"deepspeed/runtime/zero/partition_parameters\.py:\w{0,60}gather", "zero3_gathered_params",
     "ZeRO-3 parameters gathered for compute"),
    (r"deepspeed/runtime/zero/(?:stage3|stage_1_and_2|partition_parameters)\.py:", "weights",
     "DeepSpeed ZeRO flat parameter buffers"),
    (r"torch/distributed/fsdp/[\w/]{0,60}\.py:\w{0,40}(?:all_gather|unshard)", "zero3_gathered_params",
     "FSDP parameters unsharded for compute"),
    (r"torch/optim/|torch/nn/utils/clip_grad\.py:", "optimizer_temporaries",
     "temporaries of the optimizer step or gradient clipping"),
    (r"c10d::reducer|torch/nn/parallel/distributed\.py:", "ddp_gradient_buckets", "DDP gradient buckets"),
    (rf"(?:from_pretrained|load_state_dict|_load_pretrained_model|load_checkpoint|set_module_tensor_to_device)"
     rf"{_NOT_DIR}|safetensors/torch\.py:", "weights", "model weights loaded from a checkpoint"),
    (r"torch/nn/modules/module\.py:(?:_apply|to|cuda|to_empty|convert)$", "weights",
     "model moved to the GPU with .to()/.cuda()"),
    (r"torch/nn/modules/[\w/]{0,40}\.py:(?:__init__|reset_parameters)$|peft/[\w/]{0,60}\.py:update_layer",
     "weights", "parameters created on the GPU"),
    (r"bitsandbytes/nn/modules\.py:\w{0,30}(?:cuda|to|quantize)", "weights", "quantized weights moved to the GPU"),
    (r"transformers/trainer_pt_utils\.py:(?:nested_concat|torch_pad_and_concatenate|nested_numpify)",
     "eval_accumulated", "predictions the Trainer's evaluation loop keeps on the GPU (eval_accumulation_steps unset)"),
    (rf"cache_utils\.py:|(?:past_key_value|kv_cache|paged_attention){_NOT_DIR}", "kv_cache", "the generation KV cache"),
    (rf"loss_utils\.py:|(?:cross_entropy|log_softmax|nll_loss|lm_head|logits){_NOT_DIR}", "logits_and_loss",
     "logits and the loss (cross-entropy upcasts the logits)"),
    (rf"workspace{_NOT_DIR}", "cuda_workspace", "cuBLAS/cuDNN workspace"),
    (rf"backward{_NOT_DIR}|autograd/graph\.py:_engine_run|autograd::engine", BACKWARD, "allocated in backward"),
    (rf"(?:scaled_dot_product|sdpa_attention|eager_attention|attention_forward|flash_attn|efficient_attention"
     rf"|softmax){_NOT_DIR}", "attention_scores", "attention scores (inside the attention kernel or softmax)"),
    (r"modeling_(?:siglip|clip|vit|qwen2_vl|llava)\w{0,20}\.py:\w{0,40}vision|vision_tower|visual\w{0,20}\.py:",
     "vision_activations", "the vision encoder's forward"),
    (r":forward$|:_call_impl$|:_wrapped_call_impl$|torch/nn/functional\.py:|modeling_\w{1,40}\.py:",
     "activations", "saved in a module's forward"),
)
_COMPILED = tuple(re.compile(p) for p, _, _ in SITE_RULES)
_ANY_RULE = re.compile("|".join(f"(?:{p})" for p, _, _ in SITE_RULES))   # one search tells most frames apart
_PLUMBING = ("torch/nn/", "torch/utils/", "torch/_", "torch/autograd/", "<frozen", "??")


class ComponentHeld(BaseModel):
    """Bytes one component held, in how many blocks, and which rules put them there."""

    name: str
    bytes: int
    blocks: int = 0
    rules: list[str] = Field(default_factory=list, description="the 'why' of each rule that matched (at most 5)")


class AllocationSite(BaseModel):
    """A stack frame that allocated held memory, with what it held."""

    site: str
    component: str
    bytes: int
    blocks: int


@dataclass(frozen=True, slots=True)
class HeldBlock:
    """A block held at the moment attributed (allocated, or waiting to be freed on another stream)."""

    address: int
    size: int
    requested_size: int
    state: str
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockAttribution:
    """One held block's component and the rule that matched (or why none did)."""

    address: int
    size: int
    state: str
    component: str
    why: str
    site: str


@dataclass(frozen=True)
class HeldState:
    """Blocks held and bytes reserved on one device at one moment ('oom' or 'snapshot')."""

    device: int
    at: str
    blocks: tuple[HeldBlock, ...]
    reserved_bytes: int
    oom: TraceEntry | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribution:
    """Held memory per component (fragmentation and unattributed included: they sum to reserved)."""

    device: int
    at: str
    reserved_bytes: int
    allocated_bytes: int
    held_bytes: int
    components: list[ComponentHeld]
    top_sites: list[AllocationSite]
    blocks: list[BlockAttribution]
    frames_recorded: bool
    requested_bytes: int | None = None
    device_free_bytes: int | None = None
    device_total_bytes: int | None = None
    request_site: str | None = None
    request_component: str | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> int:
        return sum(c.bytes for c in self.components if c.name == name)


def choose_device(snapshot: Snapshot, device: int | None = None) -> int:
    """The device asked for; else the one whose history has an OOM; else the one reserving the most."""
    if device is not None:
        return device
    for dev, trace in enumerate(snapshot.device_traces):
        if any(e.action == "oom" for e in trace):
            return dev
    reserved = Counter()
    for s in snapshot.segments:
        reserved[s.device] += s.total_size
    return reserved.most_common(1)[0][0] if reserved else 0


def held_state(snapshot: Snapshot, device: int) -> HeldState:
    """The blocks held at the last recorded OOM (rolled back from the segments through the later actions), or at the
    snapshot when no OOM was recorded."""
    held: dict[int, HeldBlock] = {}
    reserved = 0
    for seg in snapshot.segments:
        if seg.device != device:
            continue
        reserved += seg.total_size
        for b in seg.blocks:
            if b.state != "inactive":
                held[b.address] = HeldBlock(b.address, b.size, b.requested_size, b.state, b.frames)
    trace = snapshot.device_traces[device] if device < len(snapshot.device_traces) else ()
    oom_at = next((i for i in range(len(trace) - 1, -1, -1) if trace[i].action == "oom"), None)
    if oom_at is None:
        return HeldState(device, "snapshot", tuple(sorted(held.values(), key=lambda b: b.address)), reserved)
    alloc_frames: dict[int, tuple[Frame, ...]] = {}
    for e in trace[:oom_at]:
        if e.action == "alloc":
            alloc_frames[e.addr] = e.frames
    missing = 0
    for e in reversed(trace[oom_at + 1:]):
        if e.action == "alloc":
            held.pop(e.addr, None)
        elif e.action in ("free_requested", "free_completed"):
            if e.addr not in held:
                frames = alloc_frames.get(e.addr, ())
                missing += not frames
                held[e.addr] = HeldBlock(e.addr, e.size, e.size, "active_allocated", frames)
        elif e.action in ("segment_alloc", "segment_map"):
            reserved -= e.size
        elif e.action in ("segment_free", "segment_unmap"):
            reserved += e.size
    notes = []
    if missing:
        notes.append(f"{missing} block(s) freed after the OOM were allocated before the recorded history began: "
                     "their stacks are unknown")
    return HeldState(device, "oom", tuple(sorted(held.values(), key=lambda b: b.address)), reserved, trace[oom_at],
                     tuple(notes))


class _Matcher:
    """First matching rule for a stack, cached per frame and per stack (the reader shares equal stacks)."""

    def __init__(self) -> None:
        self._frame_rule: dict[Frame, int] = {}
        self._stacks: dict[int, tuple[tuple[Frame, ...], int | None, Frame | None]] = {}

    def frame_rule(self, frame: Frame) -> int:
        rule = self._frame_rule.get(frame)
        if rule is None:
            text = frame.text().lower()
            rule = len(_COMPILED)
            if _ANY_RULE.search(text):
                rule = next((i for i, p in enumerate(_COMPILED) if p.search(text)), rule)
            if len(self._frame_rule) < 500_000:
                self._frame_rule[frame] = rule
        return rule

    def match(self, frames: tuple[Frame, ...]) -> tuple[int | None, Frame | None]:
        cached = self._stacks.get(id(frames))
        if cached is not None and cached[0] is frames:
            return cached[1], cached[2]
        best, where = len(_COMPILED), None
        for f in frames:
            r = self.frame_rule(f)
            if r < best:
                best, where = r, f
        result = (best, where) if where is not None else (None, None)
        if len(self._stacks) < 500_000:
            self._stacks[id(frames)] = (frames, *result)
        return result


def _short(filename: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        i = filename.rfind(marker)
        if i != -1:
            return filename[i + len(marker):]
    parts = filename.replace("\\", "/").split("/")
    return "/".join(parts[-3:])


def site_of(frame: Frame) -> str:
    """'transformers/models/llama/modeling_llama.py:312 forward' (a C++ frame: its function's name)."""
    if not frame.filename.endswith(".py"):
        return frame.name[:200] or frame.filename[:200]
    return f"{_short(frame.filename)}:{frame.line} {frame.name}"[:200]


def _user_frame(frames: tuple[Frame, ...], start: Frame | None = None) -> Frame | None:
    """The innermost Python frame outside torch's own plumbing (what a reader recognises) from `start` outwards;
    else `start`, else the first frame."""
    begin = frames.index(start) if start is not None else 0
    for f in frames[begin:]:
        if f.filename.endswith(".py") and not any(p in f.filename for p in _PLUMBING):
            return f
    return start if start is not None else (frames[0] if frames else None)


def attribute(snapshot: Snapshot, *, device: int | None = None, requested_bytes: int | None = None,
              device_total_bytes: int | None = None) -> Attribution:
    """Held memory per component at the OOM (or the snapshot) on one device; `requested_bytes` is the failing
    request when the caller knows it and the history does not."""
    dev = choose_device(snapshot, device)
    state = held_state(snapshot, dev)
    recorded = snapshot.frames_recorded()
    matcher = _Matcher()
    weight_sizes: Counter = Counter()
    first_pass: list[tuple[HeldBlock, int | None, Frame | None]] = []
    for b in state.blocks:
        rule, frame = matcher.match(b.frames)
        first_pass.append((b, rule, frame))
        if rule is not None and SITE_RULES[rule][1] == "weights":
            weight_sizes[b.requested_size] += 1
    out: list[BlockAttribution] = []
    for b, rule, frame in first_pass:
        if rule is None:
            if not b.frames:
                why = ("no stack recorded for this block" if recorded else
                       "no stacks recorded: call torch.cuda.memory._record_memory_history(max_entries=100000) "
                       "before the step")
                site = f"no stack: {format_bytes(b.size)} blocks"
            else:
                why = "no rule matches its stack"
                user = _user_frame(b.frames)
                site = site_of(user) if user else "unknown"
            out.append(BlockAttribution(b.address, b.size, b.state, UNATTRIBUTED, why, site))
            continue
        _, component, why = SITE_RULES[rule]
        if component == BACKWARD:
            if weight_sizes[b.requested_size] > 0:
                weight_sizes[b.requested_size] -= 1
                component, why = "gradients", "allocated in backward, the size of a weight (a parameter's gradient)"
            else:
                component, why = "activations", "allocated in backward (a temporary: an activation's gradient)"
        out.append(BlockAttribution(b.address, b.size, b.state, component, why, site_of(_user_frame(b.frames, frame))))
    return _summarise(snapshot, state, out, recorded, requested_bytes, device_total_bytes, matcher)


def _summarise(snapshot: Snapshot, state: HeldState, blocks: list[BlockAttribution], recorded: bool,
               requested_bytes: int | None, device_total_bytes: int | None, matcher: _Matcher) -> Attribution:
    notes = list(state.notes)
    held = sum(b.size for b in blocks)
    reserved = state.reserved_bytes
    if held > reserved:
        notes.append(f"the blocks held ({format_bytes(held)}) exceed the segments reserved ({format_bytes(reserved)}): "
                     "the history is incomplete; reserved is taken as the blocks held")
        reserved = held
    totals: dict[str, list] = {}
    for b in blocks:
        entry = totals.setdefault(b.component, [0, 0, []])
        entry[0] += b.size
        entry[1] += 1
        if b.why not in entry[2] and len(entry[2]) < 5:
            entry[2].append(b.why)
    order = {name: i for i, name in enumerate(COMPONENTS)}
    components = [ComponentHeld(name=n, bytes=v[0], blocks=v[1], rules=v[2])
                  for n, v in sorted(totals.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))]
    components.append(ComponentHeld(name=FRAGMENTATION, bytes=reserved - held, blocks=0,
                                    rules=["reserved by the allocator but held by no block"]))
    sites: dict[tuple[str, str], list[int]] = {}
    for b in blocks:
        s = sites.setdefault((b.site, b.component), [0, 0])
        s[0] += b.size
        s[1] += 1
    top = sorted(sites.items(), key=lambda kv: -kv[1][0])[:TOP_SITES]
    top_sites = [AllocationSite(site=k[0], component=k[1], bytes=v[0], blocks=v[1]) for k, v in top]
    if not recorded:
        notes.append("no allocation stacks in this snapshot: every block is unattributed; record them with "
                     "torch.cuda.memory._record_memory_history(max_entries=100000) before the step")
    if snapshot.truncated_traces:
        notes.append("the history was longer than the reader's limit: only its latest entries were read")
    oom = state.oom
    request_site = request_component = None
    if oom is not None:
        requested_bytes = oom.size
        rule, frame = matcher.match(oom.frames)
        if frame is not None:
            request_site = site_of(_user_frame(oom.frames, frame))
            request_component = SITE_RULES[rule][1]
            if request_component == BACKWARD:
                request_component = "gradients or activations (backward)"
        elif oom.frames:
            user = _user_frame(oom.frames)
            request_site = site_of(user) if user else None
    allocated = sum(b.size for b in blocks if b.state == "active_allocated")
    return Attribution(device=state.device, at=state.at, reserved_bytes=reserved, allocated_bytes=allocated,
                       held_bytes=held, components=components, top_sites=top_sites, blocks=blocks,
                       frames_recorded=recorded, requested_bytes=requested_bytes,
                       device_free_bytes=oom.device_free if oom is not None else None,
                       device_total_bytes=device_total_bytes, request_site=request_site,
                       request_component=request_component, notes=notes)
