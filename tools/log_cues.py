"""Cues in a pasted log that are not numbers: the phase a function name or a sentence names, quantization in play,
dtype errors. The parser reads the error message and the traceback's frames; users also paste code lines, rich
tracebacks (│ ... in _save_to_state_dict │) and prose, and these name the phase just as well
(../shared/oom-signals.md, "Phase from the traceback frames"). Linear, bounded; each cue keeps its line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from .described_oom import SAVE_WORDS, DescribedOOM, described_oom
from .fixes_said import FixSaid, TriggerSaid, said_in_words
from .frameworks import EVAL_HARNESSES, KV_POOL_ENGINES, SERVING_ENGINES
from .gpus import DATACENTER_GPU_PATTERN
from .log_parser.lines import clean_line, content_lines, scan_window
from .prefilter import Prefilter, may_contain, search_text
from .units import MiB

if TYPE_CHECKING:
    from .report import OOMReport

MAX_SCAN = 2 * 1024 * 1024  # of a config (code or YAML); of a log, the scan window (log_parser.lines.scan_window)
MAX_LINE = 2000

_A, _Z = r"(?<![A-Za-z_])", r"(?![A-Za-z_])"  # word edges that also hold next to Chinese characters

# Function and method names of the phases (HF Trainer, PEFT, DeepSpeed, accelerate, bitsandbytes), and the words
# people use for them. Later lines win: in a traceback the deepest frame is the closest to the failure.
_PHASE_CUES: list[tuple[str, re.Pattern]] = [
    # HF Trainer's evaluation loop keeps every batch's logits in preds_host via nested_concat until the end.
    # (Argument names such as eval_accumulation_steps are left out: Trainer prints them in every run's argument dump.)
    ("evaluation", re.compile(r"\b(?:evaluation_loop|prediction_step|nested_concat|preds_host|prediction_loop)\b|" + _A + r"(?:evaluating|evaluation)" + _Z
                              + r"|评估|验证", re.IGNORECASE)),
    # Serialising a checkpoint: bitsandbytes' _save_to_state_dict un-tiles 8-bit weights (a second copy) on save.
    ("checkpoint_save", re.compile(r"\b(?:_save_to_state_dict|save_pretrained|_save_checkpoint|save_checkpoint|"
                                   r"save_model|save_16bit_model|_zero3_consolidated_16bit_state_dict|get_state_dict)\b"
                                   r"|" + SAVE_WORDS, re.IGNORECASE)),
    # Merging a LoRA adapter materialises W + BA for every layer (PEFT merge_and_unload).
    ("lora_merge", re.compile(r"\b(?:merge_and_unload|merge_adapter|_merge_lora|export_model)\b|"
                              + _A + r"merg(?:e|ing)\s{0,2}(?:the\s{0,2})?(?:lora|adapter|weights|model)" + _Z,
                              re.IGNORECASE)),
    # Placing weights on the GPU: from_pretrained / load_state_dict / dispatch_model, or moving a model with .to/.cuda.
    ("model_loading", re.compile(r"\b(?:from_pretrained|_load_state_dict|load_state_dict|dispatch_model|"
                                 r"load_checkpoint_in_model|_load_pretrained_model)\b|\bmodel\.(?:to|cuda)\(",
                                 re.IGNORECASE)),
    ("generation", re.compile(r"\b(?:greedy_search|_sample|beam_search|generate)\(|\bmax_new_tokens\b")),
    # Creating or stepping optimizer states: torch optimizers, DeepSpeed's ZeRO optimizer initialisation.
    ("optimizer_step", re.compile(r"\b(?:optimizer\.step|_init_group|initialize_optimizer_states|"
                                  r"_create_fp32_partitions|adamw?_step)\b|" + _A
                                  + r"optimizer\s{0,2}states?\s{0,2}(?:init\w{0,12}|creation|allocation)" + _Z,
                                  re.IGNORECASE)),
]

# Quantized weights in play: bitsandbytes frames, 4/8-bit loading flags, GPTQ/AWQ, QLoRA.
_QUANT = re.compile(r"bitsandbytes|\bload_in_(?:4|8)bit\b|\bBitsAndBytesConfig\b|\bbnb_4bit\w{0,20}|"
                    r"(?<![\w.])(?:4|8)[- ]?bit(?![\w])|\bnf4\b|\bint8\b|\bqlora\b|\bgptq\b|\bawq\b", re.IGNORECASE)

# Errors of a dtype the GPU or an op does not support (PyTorch, vLLM, GradScaler messages).
_DTYPE = re.compile(r"Bfloat16 is only supported on GPUs with compute capability|"
                    r"Attempting to unscale FP16 gradients|"
                    r"not implemented for '(?:BFloat16|Half|Float8\w{0,8})'|"
                    r"(?:bf16|bfloat16)[^\n]{0,60}(?:not supported|unsupported|requires)", re.IGNORECASE)


# A vision encoder in the step: its inputs (pixel_values, grid sizes), modules and pixel / image-count limits as
# HF (Qwen2-VL, LLaVA, mllama), vLLM (limit_mm_per_prompt) and llama.cpp (mmproj, clip) name them.
_VISION = re.compile(r"pixel_values|image_grid_thw|video_grid_thw|\bvisual\.|vision_tower|vision_model|vision_encoder|"
                     r"image_features|mm_projector|multi_modal_projector|limit_mm_per_prompt|\b(?:image_|video_)?max_pixels\b|"
                     r"\bmmproj\b|\bclip_image|\bencode_images?\b|get_image_features|"
                     r"high[- ]res\w{0,8}|\bimages\b|\bvideos?\b|multi-?modal|图片|图像|视频|多模态|"
                     # transformers' vision-language model classes (Qwen2VLForConditionalGeneration, Llava..., Mllama...)
                     r"\b\w{0,30}(?:VL|Vision|Llava|Mllama|Idefics\d?|PaliGemma|Pixtral|Florence2|Blip2|Fuyu|Chameleon)"
                     r"\w{0,20}ForConditionalGeneration\b|\bAutoModelFor(?:Vision2Seq|ImageTextToText)\b", re.IGNORECASE)

# An engine refusing to start because its KV cache does not fit the memory left after weights and profiling: vLLM's
# own messages (and its profile line when the rest is negative or no block fits), llama.cpp's KV buffer allocation.
_KV_CACHE = re.compile(r"No available memory for the cache blocks|raise_if_cache_size_invalid|larger than the maximum number of tokens that can be "
                       r"stored in KV cache|Insufficient memory for (?:the )?KV cache|KV cache is needed, which is larger "
                       r"than the available KV cache memory|the rest of the memory reserved for KV Cache is -\d"
                       r"|# (?:cuda|GPU) blocks: 0\b|failed to allocate buffer for kv cache|kv_cache_init\(\) failed",
                       re.IGNORECASE)

# llama.cpp creating its context: the context length it reserves the KV cache for ("llama_new_context_with_model: n_ctx
# = 131072", "llama_context: n_ctx = 2048") and the cache it allocated ("llama_kv_cache_init: CUDA0 KV buffer size =
# 16384.00 MiB", one line per device; older builds print the total, "KV self size = 5120.00 MiB"). llama.cpp allocates the
# keys and values of all n_ctx tokens when it creates the context (llama_kv_cache_init), before any prompt.
_LLAMA_N_CTX = re.compile(r"(?:llama_new_context_with_model|llama_context|llama_init_from_model):\s{1,16}n_ctx\s{0,16}=\s{0,8}(\d{1,8})(?!\d)")
_LLAMA_KV_SIZE = re.compile(r"KV (self|buffer) size\s{0,16}=\s{0,8}(\d{1,9}(?:\.\d{1,3})?)\s{0,2}MiB")

# PEFT's preparation of a k-bit model for training (prepare_model_for_kbit_training, formerly ..._int8_training) on the
# stack: its own frame ("line 98, in prepare_model_for_kbit_training"), or its call as a traceback's source line right
# under a frame line. A script merely calling it (every QLoRA script does) is neither.
_KBIT_PREPARATION = re.compile(r"\bin prepare_model_for_(?:kbit|int8)_training\b")
_KBIT_CALL = re.compile(r"^\s{1,12}(?:\w{1,40}\s{0,2}=\s{0,2})?(?:[\w.]{1,40}\.)?prepare_model_for_(?:kbit|int8)_training\(")
_FRAME_LINE = re.compile(r'^\s{0,12}File "[^"]{1,400}", line \d{1,7}, in ')

# vLLM's start-up check: "Free memory on device (31.44/47.38 GiB) on startup is less than desired GPU memory
# utilization (0.95, 45.01 GiB)". Before the engine loads anything, what is not free is held by something else.
_STARTUP_FREE = re.compile(r"Free memory on device \((\d{1,5}(?:\.\d{1,3})?)/(\d{1,5}(?:\.\d{1,3})?) GiB\) on startup is less "
                           r"than desired GPU memory utilization \((\d(?:\.\d{1,3})?), (\d{1,5}(?:\.\d{1,3})?) GiB\)")

# Allocation failures printed by runtimes the allocator parser does not model: Apple Metal / MLX ("[malloc_or_wait]
# Unable to allocate N bytes"), ggml's buffer allocation ("failed to allocate buffer of size N"), and a notebook's
# exception header ("OutOfMemoryError    Traceback (most recent call last)") whose message was not pasted. Metal also
# fails a whole command buffer when the GPU's share of unified memory runs out ("[METAL] Command buffer execution failed:
# Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"): MLX raises that as a RuntimeError.
_METAL_OUT_OF_MEMORY = r"Command buffer execution failed: Insufficient Memory|kIOGPUCommandBufferCallbackErrorOutOfMemory"
_RUNTIME_OOM = re.compile(r"\[malloc(?:_or_wait)?\] Unable to allocate|\[metal::malloc\]|failed to allocate buffer of size \d"
                          r"|^\s{0,8}(?:torch\.)?(?:cuda\.)?OutOfMemoryError\s{2,}Traceback|" + _METAL_OUT_OF_MEMORY,
                          re.IGNORECASE | re.MULTILINE)
# An index past a table's end (token ids beyond the vocabulary, labels beyond the classes): on CUDA it surfaces as a
# device-side assert or as the next cuBLAS call failing to allocate its handle (CUBLAS_STATUS_ALLOC_FAILED).
_INDEX_ERROR = re.compile(r"IndexError: index out of range|index out of range in self|indexSelect\w{0,20}Index|"
                          r"srcIndex < srcSelectDimSize|out of index|(?:greater|larger) th[ae]n (?:the )?num_embeddings|"
                          r"(?:token|input) ids?\b.{0,40}\b(?:exceed|out of range|larger than|beyond)\b.{0,20}\bvocab",
                          re.IGNORECASE)
# The user's own experiment that isolates the method: adapters work, full fine-tuning runs out ("sft_type为lora的时候是
# 正常的，改成full后报错", "LoRA works fine but full fine-tuning OOMs"). Only the trained parameters' states differ.
_ADAPTER_OK = r"(?:q?lora|peft|adapter)\w{0,4}.{0,40}?(?:works?|worked|is fine|runs?|ran|fits?|正常|没问题|没有问题|可以|能跑)"
_FULL = r"(?:(?<![A-Za-z])full(?:[ _-]?(?:fine[ _-]?tun[a-z]{0,5}|ft|param[a-z]{0,6}|training|sft))?(?![A-Za-z])|全量|全参)"
METHOD_CONTRAST = re.compile(_ADAPTER_OK + r".{0,80}?" + _FULL + r"|" + _FULL + r".{0,60}?(?:oom|out of memory|fail\w{0,3}|报错|爆显存|显存不足)"
                              r".{0,80}?" + _ADAPTER_OK, re.IGNORECASE)

# DeepSpeed ZeRO-3's optimizer works in sub groups of `sub_group_size` parameters (default 1e9): its frames
# (_prepare_fp32_grad_for_sub_group, _optimizer_step(sub_group_id)) name them.
_ZERO3_SUB_GROUP = re.compile(r"\w{0,40}sub_group\w{0,20}")
# a failure the log shows: a Python exception line (KeyError: ..., torch.distributed...ChildFailedError), a fatal signal
# or a non-zero exit; the last one is the failure (a paste without any is a progress log or a fragment). A bare
# "Traceback (most recent call last):" is not one: Python prints the exception last, so a traceback cut before its
# exception line has lost the error itself.
_FAILURE = re.compile(r"(?:^|[\s\]|:])(?:[A-Za-z_][\w.]{0,80}\.)?[A-Z]\w{0,60}(?:Error|Exception|Interrupt):|"
                      r"^\s{0,8}(?:[A-Za-z_][\w.]{0,80}\.)?[A-Z]\w{0,60}(?:Error|Exception|Interrupt)\s*$|"
                      r"\b(?:CUDA|NCCL|cuBLAS|CUBLAS|cuDNN|CUDNN) error:|Segmentation fault|core dumped|\bexit(?:s|ed)? with "
                      r"(?:return |exit )?code[ =:]{1,3}-?[1-9]|exitcode\s{0,2}:\s{0,2}-?[1-9]|returned non-zero exit status|"
                      r"^\s{0,8}(?:FATAL|Fatal error)\b")
# What the other ranks and the launcher print after one rank died, whatever killed it: a collective that timed out
# waiting for it (NCCL watchdog), the elastic agent's ChildFailedError, a launcher's non-zero exit. They say a process
# ended, not why: they never outrank the failure the user's words state, and a paste that shows only them has lost
# the failing rank's own error.
AFTERMATH_KINDS = frozenset({"nccl_timeout"})   # report.related_errors kinds of that kind
_AFTERMATH = re.compile(r"ChildFailedError|\bexit(?:s|ed)? with (?:return |exit )?code|exitcode\s{0,2}:|returned non-zero "
                        r"exit status|Watchdog caught collective operation timeout", re.IGNORECASE)


def is_aftermath(cue: Cue) -> bool:
    """Is this failure line only a dead rank's aftermath (ChildFailedError, a launcher's exit code, an NCCL timeout)?"""
    return bool(_AFTERMATH.search(cue.text))


# the user says one GPU holds more than the others: "GPU 0 uses far more memory", "显存分配不均匀"
_IMBALANCE = re.compile(r"\b(?:uneven(?:ly)?|imbalanced?|unbalanced)\b.{0,40}?\b(?:memory|VRAM|GPUs?|cards?|load|split|"
                        r"allocation|distribut\w{0,5})\b|\b(?:memory|VRAM|GPU|load|allocation)\b.{0,30}?\b(?:uneven(?:ly)?|"
                        r"imbalanced?|unbalanced)\b|\b(?:GPU|cuda|card|rank|device)\s?:?0\b.{0,30}?\b(?:uses|has|takes|holds|"
                        r"consumes|gets|needs)\s(?:much\s|far\s|way\s|a\slot\s)?more\b|\bmore\s(?:memory|VRAM)\s(?:on\s\w{1,10}\s)?"
                        r"than\s(?:the\s)?other\s(?:GPUs|cards|ranks|devices)\b|分配不均|不均匀|不均衡|负载不均|"
                        r"(?:一张|某张|第一张|0号|0卡)卡?.{0,12}?(?:更多|更高|最多|多很多|多出|急剧增长|特别高|爆)",
                        re.IGNORECASE)
_HOST_BUFFER = re.compile(r"ggml_backend_cpu_buffer|CPU_REPACK|host buffer", re.IGNORECASE)
_METAL = re.compile(r"malloc_or_wait|metal::malloc|\bmlx\b|" + _METAL_OUT_OF_MEMORY, re.IGNORECASE)

# accelerate's big-model placement: one process spreads the layers over every visible GPU.
# Also its functions (infer_auto_device_map, dispatch_model) and the words ("the device map puts the decoder on GPU 0").
_DEVICE_MAP = re.compile(r"""device_map\s{0,2}(?:[=:(]|\s)\s{0,2}["']?(auto|balanced|balanced_low_0|sequential)\b"""
                         r"|\b(?:infer_auto_device_map|load_checkpoint_and_dispatch|dispatch_model)\b|\b[Dd]evice map\b")


# Adapter training named anywhere (a script finetuning_lora.py, "QLoRA", peft frames, lit-llama / litgpt's LLaMA-Adapter
# scripts finetune/adapter.py and adapter_v2.py): the base weights are frozen.
_ADAPTERS = re.compile(r"(?<![A-Za-z])(?:q?lora|peft|adalora|adapter(?:_v\d)?(?=\.py))(?![A-Za-z])", re.IGNORECASE)
# ... unless the words deny it: "without any PEFT and quantization", "no LoRA", "not using lora", "不用lora"
_DENIED = re.compile(r"(?:\b(?:without|w/o|no|not|non|nor)(?:[ -](?:any|using|use|a|the))?[ -]{1,2}|(?:不用|没用|没有用|不使用|未使用|不是)\s?)$",
                     re.IGNORECASE)
# Full fine-tuning stated in words ("full-parameter fine-tuning", "full finetune", "全参微调", "全量微调"): every weight trains.
FULL_SAID = re.compile(r"(?<![A-Za-z])full[ _-]?(?:fine[ _-]?tun[a-z]{0,5}|finetun[a-z]{0,5}|param[a-z]{0,6}(?: fine[ _-]?tun[a-z]{0,5})?|ft|sft)"
                        r"(?![A-Za-z])|全参|全量(?:微调|训练|参数)", re.IGNORECASE)

# The user says the same run worked with another model of its kind ("no issues doing a similar experiment with other
# 7B models", "其他7B模型都没问题"): what differs is this model's own traits, not the setup's size.
_COMPARABLE_WORKED = re.compile(
    r"\bno (?:issues?|problems?|OOMs?)\b.{0,80}?\b(?:other|similar|older|smaller)\b.{0,40}?\bmodels?\b"
    r"|\b(?:other|similar|older)\b.{0,30}?\bmodels?\b(?:(?!\bnot\b|n't|\bnever\b|\bno\b).){0,30}?\b(?:work(?:s|ed)?|fit|fits|trained|ran)\b(?! ?not)"
    r"|\bwork(?:s|ed)? (?:fine |well )?(?:with|for|on) (?:other|similar|older)\b.{0,30}?\bmodels?\b"
    r"|(?:其他|别的|其它).{0,12}模型.{0,6}(?:都)?(?:没问题|没有问题|可以|正常)", re.IGNORECASE)

# A chat that fails after some turns: chat front-ends resend the whole history each turn, so the prompt, and the KV
# cache built over it, grow with the conversation ("works for the first question, the second one runs out", "经过多轮
# 对话后，显存直接爆掉"). Multi-turn training data says nothing of this: read only where nothing trains.
_CONVERSATION = re.compile(
    r"多轮(?:对话|聊天|问答)|几轮(?:对话|聊天)|聊了几轮|第[二2]个问题|再问(?:第[二2]个|一个|一次)|问第[二2]个|对话历史|历史对话|"
    r"\b(?:the |a )?second (?:question|prompt|message|turn|query|request)\b|"
    r"\bafter (?:a few|several|some|multiple|many|\d{1,3}) (?:rounds|turns|questions|messages|exchanges)\b|"
    r"\bmulti-?turn (?:chat|conversation|dialog\w{0,3})\b|\blong (?:conversation|chat)s?\b|"
    r"\b(?:conversation|chat) history\b", re.IGNORECASE)

_INFERENCE = re.compile(r"(?<![A-Za-z])(?:inference|infer|serving|generate\(|做推理|推理)(?![A-Za-z])", re.IGNORECASE)
# An engine that serves a model (frameworks.SERVING_ENGINES), as a word: "VLLM0.7.2" and "ollama run" count, "vllm_utils"
# of a trainer does not.
_ENGINE = re.compile(r"(?<![A-Za-z_/.-])(" + "|".join(re.escape(name) for name in sorted(SERVING_ENGINES, key=len, reverse=True))
                     + r")(?![A-Za-z_])", re.IGNORECASE)
_HARNESS = re.compile(r"(?<![A-Za-z_])(" + "|".join(re.escape(name) for name in sorted(EVAL_HARNESSES, key=len, reverse=True))
                      + r")(?![A-Za-z_])", re.IGNORECASE)
# Any sign of a training run: its words, methods and steps (then an engine named is a trainer's rollout engine or an
# aside, not a server).
_TRAINING = re.compile(r"(?<![A-Za-z])(?:train\w{0,5}|fine-?tun\w{0,4}|finetun\w{0,4}|sft|q?lora|grpo|ppo|dpo|orpo|kto|rlhf|"
                       r"backward|optimizer|epochs?|gradient\w{0,12})(?![A-Za-z])|训练|微调"
                       # DeepSpeed's ZeRO stages shard a training run's optimizer states, gradients and parameters
                       # ("zero3", "deepspeed_zero2_offload", "ZeRO-3"); ZeRO-Inference says so by name
                       r"|(?<![A-Za-z])(?:zero[_ -]?(?:stage)?[_ -]?[123]|ZeRO-[123])(?![0-9])", re.IGNORECASE)

# GPU models as people and nvidia-smi name them: consumer cards need a marker (RTX/GTX, a plural "3090s", "Ti", "GPU")
# so years and ports are not read as cards.
_GPU_NAME = re.compile(r"(?:\b(?:RTX|GTX|GeForce)\s?)([1-5]0[5-9]0)(\s?Ti)?\b|\b([1-5]0[5-9]0)(\s?Ti)?(?=s\b|\s?(?:GPU|card|显卡)|\s?\d{1,2}\s?GB)"
                       rf"|\b({DATACENTER_GPU_PATTERN})\b", re.IGNORECASE)


class Cue(BaseModel):
    """One cue: what it says and where."""

    line: int
    text: str


class EngineContext(BaseModel):
    """The context llama.cpp created: its length in tokens and, when printed, the KV cache it allocated for it."""

    line: int
    text: str
    tokens: int
    kv_bytes: int | None = Field(default=None, description="the KV buffers printed after it, summed over devices")
    kv_line: int | None = None


class LogCues(BaseModel):
    """Non-numeric cues of one log."""

    phase: str | None = None
    phase_cue: Cue | None = None
    quantization: Cue | None = None
    dtype_error: Cue | None = None
    device_map: Cue | None = Field(default=None, description="device_map=auto/balanced/sequential in the log or config")
    vision: Cue | None = Field(default=None, description="a vision encoder or image input named in the log or config")
    kv_cache: Cue | None = Field(default=None, description="vLLM's KV cache does not fit (a budget error, not an OOM)")
    startup_free: Cue | None = Field(default=None, description="vLLM's start-up check: less free memory than it wants")
    kbit_preparation: Cue | None = Field(default=None, description="PEFT's prepare_model_for_kbit_training on the "
                                                                   "traceback's stack")
    engine_context: EngineContext | None = Field(default=None, description="the last context llama.cpp created: its n_ctx "
                                                                           "and the KV cache allocated for it")
    runtime_oom: Cue | None = Field(default=None, description="an allocation failure of MLX/Metal, ggml or a notebook header")
    index_error: Cue | None = Field(default=None, description="an index past a table's end (token id beyond the vocabulary)")
    failure: Cue | None = Field(default=None, description="the last failure the log shows: an exception line, a fatal "
                                                          "signal or a non-zero exit (none: a progress log or a fragment)")
    cut_traceback: Cue | None = Field(default=None, description="the paste stops inside a traceback: its last frame, with "
                                                                "at most the frame's code line after it and no error")
    imbalance: Cue | None = Field(default=None, description="the user says one GPU holds more memory than the others")
    zero3_sub_group: Cue | None = Field(default=None, description="a DeepSpeed ZeRO-3 optimizer sub-group frame")
    method_contrast: Cue | None = Field(default=None, description="the user says adapters work where full fine-tuning fails")
    gpu_models: list[str] = Field(default_factory=list, description="distinct GPU models the text names, in order")
    adapters: Cue | None = Field(default=None, description="LoRA / QLoRA / PEFT named in the log: the weights are frozen")
    full_tuning: Cue | None = Field(default=None, description="full fine-tuning stated, or adapters denied (\"without "
                                                              "any PEFT\")")
    conversation: Cue | None = Field(default=None, description="the words say a chat failed after some turns (its "
                                                                "history, resent each turn, grows); unset in a training run")
    comparable_worked: Cue | None = Field(default=None, description="the user says the same run worked with other "
                                                                    "models of its kind")
    training: Cue | None = Field(default=None, description="the first sign of training in the log (else the config): its "
                                                           "words, methods, steps")
    serving: Cue | None = Field(default=None, description="an inference engine or server named in a text that says "
                                                          "nothing of training")
    engine: str | None = Field(default=None, description="the log parser's name of that engine, where it has one")
    harness: Cue | None = Field(default=None, description="an evaluation harness named (lm-eval, OpenCompass, VLMEvalKit, ...)")
    fixes: list[FixSaid] = Field(default_factory=list, description="the fixes the words say made the error go away "
                                                                   "(tools/fixes_said.py): each names the cause it fixed")
    triggers: list[TriggerSaid] = Field(default_factory=list, description="the size knobs the words say brought the "
                                                                          "error on (tools/fixes_said.py)")
    oom_said: DescribedOOM | None = Field(default=None, description="the memory failure the words state "
                                                                    "(tools/described_oom.py), whatever error the log "
                                                                    "shows beside them")


# the patterns searched in every line of the log, each behind the words its matches must contain (tools/prefilter.py)
_LINE = Prefilter(*(pat for _, pat in _PHASE_CUES), _QUANT, _DTYPE, _KV_CACHE, _RUNTIME_OOM, _FAILURE, _IMBALANCE,
                  _INDEX_ERROR, METHOD_CONTRAST, _VISION, FULL_SAID, _ADAPTERS, _CONVERSATION, _COMPARABLE_WORKED)


def log_cues(text: str, config_text: str | None = None) -> LogCues:
    """The cues of `text` (the log); the device map also from `config_text` (code or config). Never raises."""
    text = scan_window(text)   # its start and its end: where the cues are
    phase = phase_cue = quant = dtype = vision = kv = adapters = worked = startup = runtime = index_error = sub_group = contrast = None
    failure = imbalance = full = context = kbit = conversation = last_frame = None
    after_frame = 0   # content lines since the last traceback frame
    previous = ""
    gpu_models: list[str] = []
    device_map = _device_map(config_text or "") or _device_map(text)
    previous_no = 0
    for lineno, line in content_lines(text):
        if lineno > previous_no + 1:
            previous = ""   # an empty line came between
        previous_no = lineno
        line = line[:MAX_LINE]
        seen = _LINE.line(line)
        if seen.may_match:   # (most lines of a long log hold none of the patterns' words)
            for name, pat in _PHASE_CUES:
                if seen.search(pat):
                    phase, phase_cue = name, _cue(lineno, line)
                    break
            if quant is None and seen.search(_QUANT):
                quant = _cue(lineno, line)
            if dtype is None and seen.search(_DTYPE):
                dtype = _cue(lineno, line)
            if kv is None and seen.search(_KV_CACHE):
                kv = Cue(line=lineno, text=line.strip()[:300])
            if runtime is None and seen.search(_RUNTIME_OOM):
                runtime = Cue(line=lineno, text=line.strip()[:300])
            if seen.search(_FAILURE):
                failure = _cue(lineno, line)
            if imbalance is None and seen.search(_IMBALANCE):
                imbalance = _cue(lineno, line)
            if index_error is None and seen.search(_INDEX_ERROR):
                index_error = _cue(lineno, line)
            if contrast is None and seen.search(METHOD_CONTRAST):
                contrast = _cue(lineno, line)
            if vision is None and seen.search(_VISION):
                vision = _cue(lineno, line)
            if adapters is None and seen.search(_ADAPTERS) and adapter_named(line):
                adapters = _cue(lineno, line)
            if full is None and (seen.search(FULL_SAID) or (seen.search(_ADAPTERS) and not adapter_named(line))):
                full = _cue(lineno, line)
            if conversation is None and seen.search(_CONVERSATION):
                conversation = _cue(lineno, line)
            if worked is None and seen.search(_COMPARABLE_WORKED):
                worked = _cue(lineno, line)
        if kbit is None and "prepare_model_for_" in line and (_KBIT_PREPARATION.search(line) or (
                _KBIT_CALL.search(line) and _FRAME_LINE.search(previous))):
            kbit = _cue(lineno, line)
        previous = line
        if "n_ctx" in line or "KV " in line:
            context = _engine_context(context, lineno, line)
        if startup is None and "on startup" in line and _STARTUP_FREE.search(line):
            startup = Cue(line=lineno, text=line.strip()[:300])
        if 'File "' in line and _FRAME_LINE.search(clean_line(line)[0]):   # "[rank0]:   File ..." too
            last_frame, after_frame = _cue(lineno, line), 0
        else:
            after_frame += 1
        if sub_group is None and "sub_group" in line and _ZERO3_SUB_GROUP.search(line):
            sub_group = _cue(lineno, line)
        if len(gpu_models) < 8:
            for m in _GPU_NAME.finditer(line):
                number, ti = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
                name = (number + (" Ti" if ti else "")) if number else m.group(5).upper()
                if name not in gpu_models:
                    gpu_models.append(name)
    if adapters is not None and search_text(_INFERENCE, text):
        adapters = None   # an adapter loaded to run the model: the weights are all there is, not a training step
    harnessed = _first(_HARNESS, text, (config_text or "")[:MAX_SCAN])
    trained = _first(_TRAINING, text, (config_text or "")[:MAX_SCAN])
    training = trained[0] if trained is not None else None
    serving, engine = (None, None) if training is not None else _serving(text, (config_text or "")[:MAX_SCAN])
    if training is not None:
        conversation = None   # multi-turn training data, RL rollouts: not a chat's history
    fixes, triggers = said_in_words(text)
    # Python prints the exception after the frames: a paste that ends on a frame (and its code line) lost the error
    cut = last_frame if last_frame is not None and after_frame <= 1 and (failure is None or failure.line < last_frame.line) \
        else None
    if vision is None and config_text:
        m = _VISION.search(config_text[:MAX_SCAN])
        if m is not None:
            vision = Cue(line=config_text.count("\n", 0, m.start()) + 1, text=f"config: {m.group(0)}")
    return LogCues(phase=phase, phase_cue=phase_cue, quantization=quant, dtype_error=dtype, device_map=device_map,
                   vision=vision, kv_cache=kv, startup_free=startup, engine_context=context, kbit_preparation=kbit, runtime_oom=runtime, index_error=index_error, failure=failure, cut_traceback=cut, imbalance=imbalance, zero3_sub_group=sub_group,
                   method_contrast=contrast, gpu_models=gpu_models,
                   adapters=adapters, full_tuning=full, comparable_worked=worked, conversation=conversation, training=training, serving=serving, engine=engine,
                   harness=harnessed[0] if harnessed is not None else None, fixes=fixes, triggers=triggers,
                   oom_said=described_oom(text))


def _engine_context(context: EngineContext | None, lineno: int, line: str) -> EngineContext | None:
    """`context` updated by one line: a new n_ctx starts a new context; the KV buffers printed after it add up (one
    line per device), and a "KV self size" line is already their total."""
    m = _LLAMA_N_CTX.search(line)
    if m is not None:
        return EngineContext(line=lineno, text=line.strip()[:300], tokens=int(m.group(1)))
    m = _LLAMA_KV_SIZE.search(line)
    if m is None or context is None:
        return context
    size = int(float(m.group(2)) * MiB)
    total = size if m.group(1) == "self" or context.kv_bytes is None else context.kv_bytes + size
    return context.model_copy(update={"kv_bytes": total, "kv_line": lineno})


def adapter_named(line: str) -> bool:
    """Does the line name adapter training (LoRA, QLoRA, PEFT, adapter_v2.py), other than to deny it ("without any
    PEFT", "不用lora")? The user's words (assistant/text_facts.py) are read with the same test."""
    return any(not _DENIED.search(line[max(0, m.start() - 24):m.start()]) for m in _ADAPTERS.finditer(line))


def _first(pattern: re.Pattern, text: str, config_text: str) -> tuple[Cue, re.Match] | None:
    """The line of the first match in the log, else in the config (its text marked "config: "), and the match."""
    for where, body in (("", text), ("config: ", config_text)):
        m = search_text(pattern, body)
        if m is not None:
            start = body.rfind("\n", 0, m.start()) + 1
            cue = _cue(body.count("\n", 0, m.start()) + 1, body[start:].split("\n", 1)[0])
            return cue.model_copy(update={"text": where + cue.text}), m
    return None


def pool_engine(report: OOMReport, cues: LogCues | None) -> str | None:
    """The engine serving the model when it reserves its KV cache up front (frameworks.KV_POOL_ENGINES): the log
    parser's framework, else, for a memory error, the engine the words or the config name. None while the weights
    load: no cache exists yet."""
    if report.phase == "model_loading":
        return None
    if report.framework in KV_POOL_ENGINES:
        return report.framework
    if cues is None or not report.is_memory_error:
        return None
    name = serving_engine(cues)
    return name if name in KV_POOL_ENGINES else None


def serving_engine(cues: LogCues | None) -> str | None:
    """The engine (frameworks.SERVING_ENGINES) a text that trains nothing names, as written there, lower-cased."""
    if cues is None or cues.serving is None:
        return None
    m = _ENGINE.search(cues.serving.text)
    return m.group(1).lower() if m else None


def _serving(text: str, config_text: str) -> tuple[Cue | None, str | None]:
    """The first inference engine the log (else the config) names, with the name the log parser gives it."""
    found = _first(_ENGINE, text, config_text)
    return (found[0], SERVING_ENGINES[found[1].group(1).lower()]) if found is not None else (None, None)


def startup_free_numbers(cue: Cue) -> tuple[float, float, float, float] | None:
    """(free GiB, total GiB, utilization, wanted GiB) of vLLM's start-up check line."""
    m = _STARTUP_FREE.search(cue.text)
    return tuple(float(g) for g in m.groups()) if m else None  # type: ignore[return-value]


def runtime_oom_kind(cue: Cue, text: str) -> str:
    """The OOMReport kind of a runtime allocation failure: Metal's unified memory, a ggml host buffer, else the GPU."""
    if _METAL.search(cue.text) or search_text(_METAL, scan_window(text)):
        return "mps_oom"
    if _HOST_BUFFER.search(cue.text):
        return "host_oom"
    return "cuda_oom"


def _cue(lineno: int, line: str) -> Cue:
    """A cue on one line, without the frame borders of rich tracebacks (│ ... │)."""
    return Cue(line=lineno, text=line.strip(" │|")[:300])


# A sentence that proposes a setting rather than reports one: "you need to add device_map='auto'", "需要…增加一个
# device_map='auto'参数" (a reply's fix: the failing run did not have it). "I added …", "增加了…" report the run's own.
_PROPOSED = re.compile(r"\b(?:need(?:s|ed)? to|should|try(?:ing)?|you (?:can|could|may)|please|suggest\w*)\b.{0,80}?"
                       r"\b(?:add|set|use|pass|specify)\b"
                       r"|(?:需要|建议|可以|试试|试一下|请|要).{0,40}?(?:增加|加上|添加|加一个|加个|设置|设为|使用|用)(?!了)",
                       re.IGNORECASE)


def _device_map(text: str) -> Cue | None:
    """The first device_map the text shows as the run's own: one only proposed as a fix is passed over."""
    text = text[:MAX_SCAN]
    if not may_contain(_DEVICE_MAP, text):
        return None
    for m in _DEVICE_MAP.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        if _PROPOSED.search(text[start:m.start()][-300:]):
            continue
        end = text.find("\n", m.end())
        return Cue(line=text.count("\n", 0, m.start()) + 1, text=text[start:end if end >= 0 else None].strip()[:300])
    return None
