"""A memory error described in words instead of pasted: "I got OOM on each GPU", "显存会无限增加直到out of memory".

Users often paste a sentence, not a traceback. When the log parser finds no error message, this reads the text for
a stated memory failure (GPU or host, English or Chinese), what the run was doing, and whether memory was said to
grow, so the agent can diagnose what was described instead of answering "no memory error". Linear, bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel

from .log_parser.lines import content_lines, scan_window
from .log_parser.messages import EXIT_CODE, killed_exit_status
from .log_parser.model_names import FAMILIES, looks_like_model
from .memory.registry import NAMED_SIZES, ONE_SIZE_FAMILIES, stated_params
from .prefilter import Line, Prefilter, search_text


# ASCII-only boundaries: in Unicode mode \b sees no boundary between a Chinese character and "OOM". "OOM" is also a
# verb ("it OOMs instantly", "OOMed at step 300", "OOMing when vLLM holds 20 GiB").
# Apple Metal (MLX, PyTorch MPS) reports "Command buffer execution failed: Insufficient Memory (...ErrorOutOfMemory)".
GPU_OOM_SAID = re.compile(r"(?<![A-Za-z])OOM(?:s|ed|ing|'d|'ing)?(?![A-Za-z])|out[ -]of[ -](?:GPU[ -]|CUDA[ -]|device[ -]|video[ -])?memory|Insufficient Memory|ErrorOutOfMemory|显存.{0,4}?(?:不足|溢出|不够|爆|占满|满了|炸|超了|超出|超标|装不下|放不下|塞不下)|(?:爆|炸|超|超过|超出)显存|显卡.{0,3}?(?:爆|炸)"
                  # memory said to overflow, or to be what a run ran into ("crashes due to memory overflow", "runs into
                  # memory issues")
                  r"|\bmemory\s{1,2}over(?:flow|load)\w{0,3}"
                  # memory said to run out, with or without a word between ("my gpu memory still run out"), or a
                  # "memory error" named in prose ("I have got the allocate memory error"); Python's host MemoryError
                  # is one word, and an "illegal memory access" is no memory error
                  r"|\bmemory\s{1,2}(?:(?!not\b|never\b)[a-z]{2,10}\s{1,2})?(?:ran|runs?|running)\s{1,2}out\b(?!\s{1,2}of\s{1,2}(?!memory))"
                  r"|\bmemory\s{1,2}errors?\b"
                  # "of" dropped, as non-native writers often do: "a five minutes audio cause out memory", "ran out memory"
                  r"|\b(?:runs?|ran|running|cause[sd]?|causing|gets?|got|getting)\s{1,2}out\s{1,2}memory\b|\b(?:runs?|ran|running|run)\s{1,2}into\s{1,2}(?:GPU\s|CUDA\s)?memory\s{1,2}(?:issues?|problems?|errors?)"
                  # VRAM said to run out (a card's "24GB VRAM" is its size, not a failure)
                  r"|(?:out of|not enough|insufficient|exceed\w{0,3}(?: the)?)\s{1,2}VRAM|VRAM\s{1,2}(?:overflow\w{0,3}|exhausted|is full|ran out|runs out)",
                  re.IGNORECASE)
# Memory named with a failure a few words on: "...memory increases to over 200 GB ... crashes", "memory usage explodes".
_FAILS = r"\b(?:crash(?:es|ed|ing)?|froze|freezes|exhaust(?:s|ed)?|explod(?:es|ed|ing)|blows? up|(?:gets?|got|is|was) killed)\b"
_MEMORY_FAILS = re.compile(r"\b(?:memory|VRAM)\s{0,2}(?:consumption|usage|use|footprint)\b.{0,160}?" + _FAILS, re.IGNORECASE)
# "batch can only be set to 1": the memory limit stated by the largest batch that still runs
_BATCH_ONE = re.compile(r"batch[_ ]?(?:size)?\s{0,3}(?:只能(?:设置到|设置为|设为|开到|是|用)?|can only be(?: set to)?|only (?:fits|works|runs)(?: at| with)?)"
                        r"\s{0,3}1(?!\d)", re.IGNORECASE)
# GPU memory said to be used in excess, with no failure: "Llama uses significantly more memory in 4.38", "rank-0 GPU
# consumes extra 870 MiB", "image_features occupy a huge amount of GPU memory", "调用显存占40g". Asked of a memory
# troubleshooter, that use is the problem.
_EXCESS = r"(?:more|extra|huge|excessive|significantly|too much|much more|a lot of|lots of|far more|way more|twice|double)"
_USE = r"(?:uses?|using|used|consum\w{0,4}|occup\w{0,4}|takes?|taking|allocat\w{0,5}|requires?|needs?|eats?)"
_COMPLAINT = re.compile(r"\b" + _USE + r"\b.{0,40}?\b" + _EXCESS + r"\b.{0,30}?\b(?:GPU\s|CUDA\s|video\s)?(?:memory|VRAM)\b"
                        r"|显存.{0,6}?(?:占用?了?|用了|需要|要)\s?\d{1,3}(?:\.\d)?\s?[gG]|显存.{0,8}?(?:很大|太大|更多|多了|翻倍|变大|大很多|高很多)",
                        re.IGNORECASE)
_RAM_FAILS = re.compile(r"\b(?:RAM|host memory|CPU memory|system memory)\s{0,2}(?:consumption|usage|use|footprint)?\b.{0,160}?" + _FAILS,
                        re.IGNORECASE)
# Apple silicon: the GPU shares the Mac's unified memory (MLX, PyTorch MPS, Metal)
_APPLE = re.compile(r"\b(?:MLX|mlx_lm|MPS|Metal|Mac(?:Book| Studio| mini)?|Apple|M[1-5] ?(?:Pro|Max|Ultra)|unified memory)\b")
# The process killed, in words: SIGKILL named ("I get a sigkill error"), as a launcher's exit code -9 / 137 would say,
# or a process "killed" with no Python error: the host's OOM killer at work (oom-signals.md: Killed, -9). A CUDA OOM
# raises an exception with a message instead, so a kill is the host's even when the user asks about GPU memory.
_KILLED = (r"\bsig ?kill(?:ed)?\b|\bsignal\s?9\b|\berror\s?(?:=\s?|of\s)?-9(?!\d|\.\d)"   # exit statuses: killed_exit_status
           r"|\b(?:was|got|gets|is|get|been)\s{1,2}(?:[a-z]{2,12}\s{1,2})?killed\b"
           # the shell's own word, quoted or bracketed, or said to be what the run printed: '"Killed"', "(Killed)",
           # "it just says killed", "popup "killed" message"
           r"|[\"“'(\[]killed[\"”')\]]|\b(?:says?|said|shows?|showed|prints?|printed|pops?\s?up|outputs?)\W{0,6}killed\b"
           r"|被\s?(?:kill(?:ed)?|杀(?:掉|死)?)")   # ... and in Chinese: "被kill了", "进程被杀掉"
# An OOM said of the host by name: "CPU OOM", "host out of memory", "the OOM of cpu", "OOM on the host"
_HOST_OOM = (r"\b(?:CPU|host|RAM|system)[ -](?:OOM|out[ -]of[ -]memory)(?![A-Za-z])"
             r"|(?<![A-Za-z])OOM\s{1,2}(?:of|on|in)\s{1,2}(?:the\s{1,2})?(?:CPU|host|RAM|system(?:\s{1,2}memory)?)\b")
_HOST = re.compile(r"(?<!显)内存.{0,20}(?:不足|占满|爆|炸|溢出|不够|超过|满了|小了|太小)|(?:爆|炸|超|超过|超出)内存|\b(?:host|CPU|system)\s{0,2}(?:RAM|memor\w{0,3})\b"
                   r"|\bRAM\b.{0,40}\b(?:full|exhausted)\b|\b(?:not|no)\s{1,2}enough\s{1,2}RAM\b"
                   # a RAM size said to be exceeded: "the memory requirement exceeds even this machine's 512GB RAM"
                   r"|\bexceed\w{0,3}\b.{0,80}?\b\d{1,5}\s?[GT]i?B?\s?(?:of\s)?RAM\b"
                   r"|oom[- ]killer|Cannot allocate memory|" + _HOST_OOM
                   + r"|" + _KILLED, re.IGNORECASE)
# the host named outright as what ran out: "CPU OOM", "OOM on the host", a kill. (Not "内存不足": Chinese pastes use 内存
# for the GPU's memory too, "CUDA内存不够", "报内存不够，应该是显存不够的意思".)
_HOST_EXPLICIT = re.compile(_HOST_OOM + r"|" + _KILLED, re.IGNORECASE)
GROWTH_SAID = re.compile(r"\bkeeps?\s{0,2}(?:increasing|growing|rising)|\b(?:increas|grow|grew)\w{0,4}\s{0,2}(?:from|over|steadily|gradually|until|each|every|continuously|constantly)"
                     r"|memory leak|\bleaks?\s{1,2}(?:GPU\s|CUDA\s)?memory|(?:不断|持续|逐渐|逐步|一直|慢慢的?|缓慢)在?(?:增加|增长|增大|变大|上涨|升高|上升|飙升|攀升|涨)"
                     r"|无限增加|越来越(?:大|多|高)"
                     # memory said to be growing or creeping up ("the memory is increasing in the process of training",
                     # "GPU memory keeps climbing")
                     r"|\b(?:memory|VRAM)\b(?:\s{1,2}\w{1,12}){0,2}?\s{1,2}(?:is|was|keeps?|kept)\s{1,2}(?:increasing|growing|rising|climbing|creeping)\b"
                     r"|\b(?:memory|VRAM)\b(?:\s{1,2}\w{1,12}){0,2}?\s{1,2}(?:creeps?|crept|climbs?|climbed)\s{1,2}up\b"
                     # with each turn or step ("每次对话显存占用都会增加几百Mb"), or along with something ("随之增长")
                     r"|每(?:次|轮|个|一步|步)[^，。,.]{0,12}?(?:显存|内存)[^，。,.]{0,8}?(?:增加|增长|上涨|涨)"
                     r"|(?:显存|内存)[^，。,.]{0,6}?随之(?:增加|增长|上涨)"
                     # memory that should have been given back and was not: still held, so the next step or model
                     # adds to it ("does not free all the memory", "memory is not released", "显存不释放")
                     r"|\b(?:does\s?n[o']t|did\s?n[o']t|not|never|won't|can't|cannot)\s{1,2}(?:being\s{1,2}|be\s{1,2})?"
                     r"(?:release|free)[sd]?\b.{0,30}?\bmemory|\bmemory\b.{0,30}?\bnot\s{1,2}(?:being\s{1,2}|be\s{1,2})?(?:released|freed)\b"
                     r"|(?:不|没有?|未|无法)(?:被)?释放"
                     r"|\b(?:is|are|was|were)n't\s{1,2}(?:fully\s{1,2}|completely\s{1,2})?(?:released|freed)\b"
                     # the same work repeated until it runs out: an input repeated cannot have grown, what it leaves
                     # behind has ("连续执行 44 次后出现 OOM", "after 40 consecutive requests", "the third file OOMs");
                     # training steps are left out (a longer batch may arrive at any step)
                     r"|连续\s?(?:执行|运行|推理|调用|生成|请求)\s?(?:了\s?)?\d{1,5}\s?(?:次|轮|条|个)"
                     r"|(?:执行|运行|推理|调用|生成|请求)\s?(?:了\s?)?\d{1,5}\s?次(?:后|之后|以后)"
                     r"|\bafter\s{1,2}(?:about\s{1,2}|around\s{1,2}|some\s{1,2})?\d{1,5}\+?\s{1,2}(?:consecutive\s{1,2}|repeated\s{1,2}|successive\s{1,2})?"
                     r"(?:runs|calls|requests|inferences|generations|files|images|utterances|queries|predictions|invocations)\b"
                     r"|\b(?:third|fourth|fifth|sixth|\d{1,3}(?:rd|th))\s{1,2}(?:or\s{1,2}\w{1,6}\s{1,2})?(?:file|request|call|run|generation|image|utterance|query|inference)\s{1,2}(?:OOMs|fails|crashes|runs\s{1,2}out)\b"
                     # usage said to start low and end high ("GPU memory usage starts from ~5G to more than 10G")
                     r"|\b(?:usage|memory|VRAM)\b.{0,20}?\bstart\w{0,3}\s{1,2}(?:from|at|with)\s{0,2}(?:~|about\s|around\s)?\d{1,4}(?:\.\d{1,2})?\s?[GM]i?B?\b.{0,40}?"
                     r"\b(?:to|then|reach\w{0,2}|up\s{1,2}to)\s{1,2}(?:more\s{1,2}than\s{1,2}|over\s{1,2}|about\s{1,2})?\d{1,4}(?:\.\d{1,2})?\s?[GM]i?B?\b",
                     re.IGNORECASE)
# Something accumulated across steps (a loss summed with its graph, kept tensors) grows until OOM; accumulating
# predictions or logits is the evaluation loop's own mechanism (eval_accumulation), not growth across steps.
_ACCUMULATES = re.compile(r"\baccumulat(?:e|es|ed|ing)\b", re.IGNORECASE)
_EVAL_WORDS = re.compile(r"pred|logit|eval", re.IGNORECASE)
# ...and said of the evaluation outputs, with memory named anywhere, it is the memory problem itself: the Trainer keeps
# every batch's logits until the metrics run ("Trainer accumulates logits", nested_concat(preds_host, logits)).
_KEPT_OUTPUTS = re.compile(r"\b(?:logits|preds?|predictions|outputs)\b.{0,80}?\baccumulat|\baccumulat\w*\b.{0,80}?\b(?:logits|preds?|"
                           r"predictions)\b|nested_concat|preds_host", re.IGNORECASE)
_MEMORY_WORD = re.compile(r"memory|\d\s{0,2}G[Bi]?\b|显存|内存", re.IGNORECASE)
_A, _Z = r"(?<![A-Za-z])", r"(?![A-Za-z])"  # word edges that also hold next to Chinese characters
# Saving a checkpoint, as people say it: "when I saved the model", "it saves a checkpoint", "save weight", "保存模型";
# not a model saved earlier ("the saved model", "having saved a model in 8bit"). Gathering the state dict is the
# save's first step (under ZeRO-3 or FSDP each rank assembles the full weights: "when model get state dict, gpu is
# OOM", "consolidating the state dict"), and the save calls name it too (save_pretrained, save_model).
SAVE_WORDS = (_A + r"(?:saving|saves?|(?:when|while|as|once)\s{1,3}(?:I|we|it|they)\s{1,3}saved)\s{0,2}(?:the\s{0,2}|a\s{0,2})?"
              r"(?:model|checkpoints?|weights?|ckpt)" + _Z
              + r"|" + _A + r"(?:gets?|getting|gather\w{0,3}|consolidat\w{0,3}|collect\w{0,3})\s{1,2}(?:the\s{1,2})?"
                            r"(?:full\s{1,2})?state[ _]dict" + _Z
              + r"|\bsave_(?:pretrained\w{0,12}|model|checkpoint)\b"
              + r"|保存\s{0,2}(?:模型|权重|检查点|checkpoint|ckpt)|(?:模型|权重|检查点|checkpoint|ckpt)\s{0,2}保存")
_PHASES: list[tuple[str, re.Pattern]] = [
    # ... not inside an argument name ("--per_device_eval_batch_size", "do_eval", "evaluation_strategy"): every run's
    # argument dump prints those, so they say nothing of when it failed
    ("evaluation", re.compile(r"(?<![A-Za-z_-])(?:evaluat[a-z]{0,4}|eval|predict[a-z]{0,4})(?![A-Za-z_])|评估|验证集|预测",
                              re.IGNORECASE)),
    ("lora_merge", re.compile(_A + r"merg[a-z]{0,3}" + _Z + r"|合并", re.IGNORECASE)),
    ("checkpoint_save", re.compile(SAVE_WORDS, re.IGNORECASE)),
    ("generation", re.compile(_A + r"(?:inference|generat[a-z]{0,4}|vllm|serving)" + _Z + r"|推理", re.IGNORECASE)),
    # ... resuming from a checkpoint loads it (and, in training, its optimizer states)
    ("model_loading", re.compile(_A + r"(?:loading|load)\s{0,2}(?:the\s{0,2})?(?:model|weights|checkpoint)|加载"
                                 + r"|" + _A + r"resum\w{0,3}\s{1,2}(?:training\s{1,2})?from\s{1,2}(?:the\s{1,2}|a\s{1,2}|my\s{1,2})?"
                                   r"(?:ckpt|checkpoint)", re.IGNORECASE)),
]
# A sentence about training ("inference at that length is fine, but fine-tuning blows up", "the script generates a CUDA
# OOM while starting the training"): its generation word is not the phase. Training in progress only: "the trained
# model", "the fine-tuned model", "微调后" name a model that generates.
_TRAINING_SAID = re.compile(r"(?<![A-Za-z])(?:train(?:s|ing)?|fine-?tun(?:e|es|ing)|finetun(?:e|es|ing)|sft|pre-?train(?:s|ing)?)"
                            r"(?![A-Za-z])|(?:微调|训练)(?![后好完])", re.IGNORECASE)


# A line that sets two runs against each other ("fine-tuning works, but the generate script runs out of memory",
# "OOM during training, but evaluation is fine", "推理没问题，但是训练时显存不足"): the phase is the failing clause's.
_CONTRAST = re.compile(r"\b(?:but|however|whereas|yet)\b|但是?|然而|可是|不过", re.IGNORECASE)
_FAILURE_SAID = re.compile(r"\b(?:errors?|OOMs?|OOMed|crash\w{0,3}|fail\w{0,3}|killed)\b|out[ -]of[ -]memory|报错|爆显存|显存不足"
                           r"|溢出", re.IGNORECASE)


def _phase_of(seen: Line) -> str | None:
    """The phase a line's words name, first of _PHASES; generation not on a line about training (the line behind
    described_oom's prefilter). Where a contrast splits the line and one clause alone says what failed, that clause's
    words decide (the other clause names the run that worked)."""
    if seen.search(_CONTRAST) and seen.search(_FAILURE_SAID):
        failing = [c for c in _CONTRAST.split(seen.text) if _FAILURE_SAID.search(c)]
        if len(failing) == 1:
            return _named_phase(lambda pat: pat.search(failing[0]))
    return _named_phase(seen.search)


def _named_phase(search: Callable[[re.Pattern[str]], re.Match[str] | None]) -> str | None:
    """The first of _PHASES that `search` finds; generation not where it also finds training."""
    return next((name for name, pat in _PHASES if search(pat)
                 and not (name == "generation" and search(_TRAINING_SAID))), None)


# A Hugging Face model id as people paste it: a hub URL or "Org/Model-Name" with a size or version in it.
_MODEL_ID = re.compile(r"(?:huggingface\.co|hf\.co|modelscope\.cn/models)/([\w.-]{2,60}/[\w.-]{2,100})|(?<![/\w.~-])([A-Za-z][\w.-]{1,40}/[\w.-]*\d[\w.-]{0,80})(?![\w.-]*/[\w.-])")   # an org/name id, not folders of a path
# A loose model name with its size, as people write it in a sentence: Llama-2-70b, Qwen2-VL-7B, Mixtral-8x7B, gpt-oss-20b
# (the calculator's registry resolves such names), also as the last folder of a path (/models/Qwen2.5-VL-32B-Instruct/).
_MODEL_NAME = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.]{1,30}(?:-[A-Za-z0-9_.]{1,20}){0,3}?-\d{1,3}(?:\.\d)?(?:x\d{1,3})?[bB]"
                         r"(?:-(?:[A-Za-z][A-Za-z0-9_.]{0,20}|\d{1,2}bit)){0,3})(?![A-Za-z0-9_]|/[\w.-])")   # "-Instruct-bnb-4bit"


class DescribedOOM(BaseModel):
    """What a prose description says about a memory failure."""

    kind: str  # cuda_oom | host_oom | mps_oom (OOMReport kinds)
    line: int
    text: str
    phase: str | None = None
    model: str | None = None
    growth_line: int | None = None
    growth_text: str | None = None


def is_prose(line: str) -> bool:
    """A sentence, not noise: few symbols among the characters (random or binary-ish text is a third symbols)."""
    chars = [c for c in line if not c.isspace()]
    if not chars:
        return False
    symbols = sum(1 for c in chars if not c.isalnum() and ord(c) < 0x3000)  # CJK punctuation is prose punctuation
    return symbols <= 0.2 * len(chars)


# A model's family as checkpoint names write it (model_names.FAMILIES, the longest first so "llama2" is not read as
# "llama"), its version glued ("qwen2.5", "InternVL3", "gpt2").
_FAMILY_WORD = "(?:" + "|".join(sorted(FAMILIES, key=len, reverse=True)) + ")"
_FAMILY = _FAMILY_WORD + r"[A-Za-z0-9.]{0,10}"
# A family and its size as people write them in a sentence: "llama3.1 70B", "Llama 3.1 (70B)", "Qwen2.5-VL 7B",
# "Qwen1.5-chat 72B", "GPT NEO 1.3B", "gpt oss 120B", "gpt2 large(774M)": the family, a spaced version, up to two
# qualifier words, then the size in billions or millions (read as "Llama3.1-70B", "GPT-NEO-1.3B", "gpt2-large-774M").
# A memory size ("40 GB", "24 MB") is no model size: the unit letter must end the word.
_FAMILY_SIZE = re.compile(r"(?<![A-Za-z0-9_/.-])(" + _FAMILY + r"(?:[- ]\d{1,2}(?:\.\d)?(?!\d))?(?:[-_ ][A-Za-z]{2,8}){0,2}?)"
                          r"(?: \(? ?|\( ?)(\d{1,4}(?:\.\d{1,2})?) ?([bBmM])\)?(?![A-Za-z0-9])", re.IGNORECASE)
# ...or glued to it: "qwen72b", "llama65b", "baichuan13b" (not "llama27b": a version is not read as part of a size)
_FAMILY_GLUED = re.compile(r"(?<![A-Za-z0-9_/.-])(" + _FAMILY_WORD + r")(\d{1,3}(?:\.\d)?[bB])(?![A-Za-z0-9])", re.IGNORECASE)
# ...or its size first: "7b bloom", "70B llama"
_SIZE_FAMILY = re.compile(r"(?<![A-Za-z0-9_/.-])(\d{1,3}(?:\.\d)?[bB]) (" + _FAMILY + r")(?![A-Za-z0-9])", re.IGNORECASE)
# ...or as an Ollama tag: "qwen2:72b-instruct-q4_K_M", "deepseek-coder:6.7b" (read as "qwen2-72b-instruct-q4_K_M")
_FAMILY_TAG = re.compile(r"(?<![A-Za-z0-9_/.-])(" + _FAMILY + r"(?:-[A-Za-z]{2,10}){0,2}):(\d{1,4}(?:\.\d{1,2})?[bBmM](?:-[\w.]{1,30}){0,3})"
                         r"(?![\w.])", re.IGNORECASE)
# ...or only its size, said of a model: "13B 模型", "a 7B model"; with a checkpoint's suffix: "13B-chat", "14B-Int4";
# said of its parameters: "an 80B param model", "9708M total parameters", "3 billion parameters"; or the model said
# to be it: "the model is only 7B", "模型是7B" (the registry stands in a model of that size)
_SIZE_ONLY = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,3}(?:\.\d)?) ?[bB] ?(?:的 ?)?(?:大?模型|models?\b|LLMs?\b)", re.IGNORECASE)
_SIZE_SUFFIX = re.compile(r"(?<![A-Za-z0-9_.-])(\d{1,3}(?:\.\d{1,2})?[bB]-(?:chat|instruct|base|hf|it|int4|int8|awq|gptq))(?![\w.])",
                          re.IGNORECASE)
_PARAMS_SAID = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,5}(?:\.\d{1,3})?) ?([BM]|billion|million)[- ](?:total )?param(?:eter)?s?\b",
                          re.IGNORECASE)
_MODEL_IS = re.compile(r"\bmodel (?:is|was) (?:only |just )?(?:an? )?(\d{1,3}(?:\.\d)?) ?[bB](?![A-Za-z0-9])"
                       r"|模型(?:是|为|大小为?|只有)(\d{1,3}(?:\.\d)?) ?[bB](?![A-Za-z0-9])", re.IGNORECASE)
_UNIT = {"b": "B", "billion": "B", "m": "M", "million": "M"}
# ...or a family released in one size, named alone: "chatglm2就爆显存" (not a path's folder or a module's file name)
_ONE_SIZE = re.compile(r"(?<![A-Za-z0-9_/.-])(" + "|".join(sorted(ONE_SIZE_FAMILIES, key=len, reverse=True)) + r")(?![A-Za-z0-9_/.-])",
                       re.IGNORECASE)

# ...or a family whose checkpoints name a size word (registry.NAMED_SIZES): "openai/whisper-medium", "T5-base model",
# "whisper large-v3", "chinese-roberta-wwm-ext-large" (read as "whisper-large-v3"; registry.stated_params sizes it)
_NAMED_FAMILY = "(?:" + "|".join(f.replace("-", "[-_ ]") for f in sorted(NAMED_SIZES, key=len, reverse=True)) + ")"
_SIZE_WORD = "(?:" + "|".join(sorted({w for sizes in NAMED_SIZES.values() for w in sizes}, key=len, reverse=True)) + ")"
_NAMED_SIZE = re.compile(r"(?<![A-Za-z0-9_.-])((?:[A-Za-z][\w.-]{0,38}/)?(?:[A-Za-z]{1,12}[-_])?" + _NAMED_FAMILY
                         + r"[-_ ](?:[A-Za-z0-9]{1,8}[-_ ]){0,2}?" + _SIZE_WORD + r"(?:[-_ ]v\d(?:[-_ ]turbo)?)?)(?![A-Za-z0-9])",
                         re.IGNORECASE)


def model_named(text: str) -> str | None:
    """The first model the text names: a Hugging Face / ModelScope URL or id, or a loose name with its size."""
    text = scan_window(text)
    for _, line in content_lines(text):
        model = _model_in_line(line[:2000])
        if model is not None:
            return model
    return None


def _model_in_line(line: str, seen: Line | None = None) -> str | None:
    """A model named in one line, the most explicit form first: URL or org/name id, a hyphenated name with its size,
    a family word and its size. A candidate that is a file or a folder of scripts ("configs/zero3.yaml",
    "int8/int4") is passed over for the next: the line may name the model after it. `seen`: the line behind
    described_oom's prefilter, when it comes from there."""
    for m in _MODEL_ID.finditer(line) if "/" in line else ():
        name = (m.group(1) or m.group(2)).rstrip(".")
        if looks_like_model(name):
            return name
    for m in _MODEL_NAME.finditer(line) if "-" in line else ():
        name = m.group(1).rstrip(".")
        if looks_like_model(name):
            return name
    seen = seen or _LINE.line(line)
    for pattern, render in _SAID_FORMS if seen.may_match else ():
        m = seen.search(pattern)
        said = render(m) if m else None
        if said:
            return said
    return None


def _sized(name: str) -> str | None:
    """A family's size word read as a model only when it is one of that family's sizes ("whisper xxl" is a tool's name)."""
    return name if stated_params(name) else None


def _params_said(m: re.Match[str]) -> str:
    count, unit = float(m.group(1)), _UNIT[m.group(2).lower()]
    return f"{count / 1000:g}B" if unit == "M" and count >= 1000 else f"{m.group(1)}{unit}"   # "9708M": 9.708B


# The looser ways a line names a model, most explicit first, each with the name it stands for
_SAID_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    (_FAMILY_SIZE, lambda m: f"{_joined(m.group(1))}-{m.group(2)}{m.group(3)}"),   # "Llama 3.1 (70B)"
    (_SIZE_FAMILY, lambda m: f"{m.group(2)}-{m.group(1)}"),                         # "70B llama"
    (_FAMILY_GLUED, lambda m: f"{m.group(1)}-{m.group(2)}"),                        # "qwen72b"
    (_FAMILY_TAG, lambda m: f"{m.group(1)}-{m.group(2)}"),                          # "qwen2:72b-instruct-q4_K_M"
    (_SIZE_SUFFIX, lambda m: m.group(1)),                                           # "13B-chat"
    (_PARAMS_SAID, _params_said),                                                   # "an 80B param model"
    (_SIZE_ONLY, lambda m: f"{m.group(1)}B"),                                       # "7B模型"
    (_MODEL_IS, lambda m: f"{m.group(1) or m.group(2)}B"),                          # "the model is only 7B"
    (_NAMED_SIZE, lambda m: _sized(re.sub(r"\s+", "-", m.group(1)))),              # "whisper large-v3"
    (_ONE_SIZE, lambda m: m.group(1)),                                              # "chatglm"
)


def _joined(name: str) -> str:
    """A family with its spaced version and qualifiers as one name: "Llama 3.1" → "Llama3.1", "GPT NEO" → "GPT-NEO"."""
    return re.sub(r"(?<=[A-Za-z]) (?=\d)", "", name).replace(" ", "-")


_HOST_SUBJECT = re.compile(r"(?:(?<!显)内存|\bRAM\b|host memory|CPU memory|system memory)(?!.*(?:显存|GPU|VRAM|CUDA))",
                           re.IGNORECASE)


def _fails_on_host(line: str) -> bool:
    """Is host RAM what the failure sentence says ran out: the last memory named before the failure words is the
    host's ("GPU memory peaks at 14GB, but system RAM reaches 500GB, resulting in an out of memory error")?"""
    m = GPU_OOM_SAID.search(line)
    return m is not None and bool(_HOST_SUBJECT.search(line[:m.end()]))   # no GPU word between it and the failure


def _grows_on_host(line: str) -> bool:
    """Is host RAM what the growth sentence says grows (the memory word closest before the growth words)?"""
    m = GROWTH_SAID.search(line)
    before = line[max(0, (m.start() if m else len(line)) - 24):m.start() if m else len(line)]
    return bool(_HOST_SUBJECT.search(before))


# the patterns searched in every line, each behind the words its matches must contain (tools/prefilter.py): the
# failure and growth words, the phases and the looser forms of a model's name (most need a family's name)
_LINE = Prefilter(GPU_OOM_SAID, _MEMORY_FAILS, _BATCH_ONE, _COMPLAINT, _KEPT_OUTPUTS, _HOST, _RAM_FAILS, _HOST_EXPLICIT,
                  GROWTH_SAID, _ACCUMULATES, *(pat for _, pat in _PHASES), _TRAINING_SAID, _CONTRAST, _FAILURE_SAID,
                  *(pat for pat, _ in _SAID_FORMS), EXIT_CODE)


def described_oom(text: str) -> DescribedOOM | None:
    """The memory failure a text describes in words, or None when it describes none."""
    text = scan_window(text)
    gpu = host = growth = explicit = None   # explicit: the first line that names the host outright as what ran out
    phase: str | None = None
    model: str | None = None
    kept = None   # evaluation outputs said to be kept
    for lineno, line in content_lines(text):
        line = line[:2000]
        seen = _LINE.line(line)
        if not seen.may_match:   # none of the words the patterns below need (nor those of a loose model name)
            if model is None:
                model = _model_in_line(line, seen)
            continue
        killed = seen.search(EXIT_CODE) is not None and killed_exit_status(line)
        if gpu is None and (seen.search(GPU_OOM_SAID) or seen.search(_MEMORY_FAILS)
                            or seen.search(_BATCH_ONE) or seen.search(_COMPLAINT)) \
                and is_prose(line):
            gpu = (lineno, line.strip())
        if kept is None and seen.search(_KEPT_OUTPUTS):
            kept = (lineno, line.strip())
        if host is None and (seen.search(_HOST) or seen.search(_RAM_FAILS) or killed) \
                and is_prose(line):
            host = (lineno, line.strip())
        if explicit is None and (seen.search(_HOST_EXPLICIT) or killed) and is_prose(line):
            explicit = (lineno, line.strip())
        if growth is None and (seen.search(GROWTH_SAID) or (seen.search(_ACCUMULATES)
                                                                  and not _EVAL_WORDS.search(line))):
            growth = (lineno, line.strip())
        if phase is None:
            phase = _phase_of(seen)
        if model is None:
            model = _model_in_line(line, seen)
    if kept is not None and _MEMORY_WORD.search(text):
        phase = "evaluation"
        if gpu is None and host is None:
            gpu = kept
    if gpu is None and host is None:
        if growth is None:
            return None
        # No failure named, but memory said to keep growing ("内存会一直增长，哪里有内存泄漏"): asked of a memory
        # troubleshooter, that is the memory problem itself, on the host when only RAM words are used
        if _grows_on_host(growth[1]):
            host = growth
        else:
            gpu = growth
    gpu_words = re.search(r"GPU|CUDA|VRAM|显存|显卡", text, re.IGNORECASE)
    if search_text(_APPLE, text) and not re.search(r"CUDA|nvidia|显卡", text, re.IGNORECASE):
        kind, (line, said) = "mps_oom", gpu or host   # one memory for CPU and GPU: the device ran out
    elif explicit is not None:
        kind, (line, said) = "host_oom", explicit   # named outright anywhere: a general "OOM" elsewhere does not outrank it
    elif host is not None and (gpu is None or not gpu_words or (gpu[0] == host[0] and _fails_on_host(gpu[1]))):
        kind, (line, said) = "host_oom", host
    else:
        kind, (line, said) = "cuda_oom", gpu or host
    return DescribedOOM(kind=kind, line=line, text=said[:300], phase=phase, model=model,
                        growth_line=growth[0] if growth else None, growth_text=growth[1][:300] if growth else None)


# Any sign that something other than memory went wrong: an exception, a kill, a fault, a hang, a NaN.
_ANY_ERROR = re.compile(r"[A-Za-z]*(?:Error|Exception)\b|Traceback|\b(?:failed|fatal|killed|abort(?:ed)?|assert\w*|segmentation "
                        r"fault|core dumped|timed? ?out|hangs?|stuck|nan|inf)\b|报错|错误|异常|失败|卡住", re.IGNORECASE)


MIN_QUESTION_WORDS = 5   # "Try to fine tune 8B on an H100 with cutoff_len 51974": a sentence, not a word or two


def memory_question(text: str) -> DescribedOOM | None:
    """A config pasted with words but no error at all: asked of a memory troubleshooter, the question is whether the
    run fits. Read as a GPU memory failure of the text's phase, at its first sentence; None when any error is shown
    or no sentence was written (a config alone asks nothing: it is sized, not diagnosed)."""
    head = scan_window(text)
    if search_text(_ANY_ERROR, head):
        return None
    first = next(((n, line.strip()) for n, line in content_lines(head)
                  if len(line.split()) >= MIN_QUESTION_WORDS and is_prose(line)), None)
    if first is None:
        return None
    phase = _named_phase(lambda pat: search_text(pat, head))
    return DescribedOOM(kind="cuda_oom", line=first[0], text=first[1][:300], phase=phase, model=model_named(head))


# Asked without a config: how much memory the run needs ("how much GPU memory does fine-tuning need", "至少需要多少显存",
# "最低显存"), or whether it can run on a stated card ("I cannot start instruction tuning on a single A100 with 40GB",
# "is it possible to fine-tune the 7B model on one 80G GPU", "单卡12g跑不了"). Asked of a memory troubleshooter, the
# question is the memory failure itself, as memory_question reads a config with words.
_CAPACITY_ASKED = re.compile(
    r"\bhow much (?:GPU |video |VRAM |graphics )?(?:memory|VRAM|RAM)\b|\b(?:minimum|least|min) (?:GPU |video )?(?:memory|VRAM)\b"
    r"|多少(?:G|GB|g)?(?:显存|内存)|(?:显存|内存).{0,6}?(?:需要多少|最低|最少|至少|要求)|(?:最低|最少|至少|最小).{0,6}?(?:显存|内存)"
    r"|\b(?:cannot|can't|can not|unable to|not able to) (?:start|run|train|fine-?tune|finetune|load)\b[^.\n]{0,60}?\b\d{1,3} ?G(?:B|iB)?\b"
    r"|\bpossible to (?:fine-?tune|finetune|train|run|load)\b[^.\n]{0,60}?(?:\b\d{1,3} ?G(?:B|iB)?\b|GPU)"
    r"|\d{1,3} ?[gG](?:B|iB)?[^，。,.\n]{0,6}?跑不(?:起来|了|动)", re.IGNORECASE)
# ...of the host when it names RAM and not the GPU
_HOST_ASKED = re.compile(r"\bRAM\b|(?<!显)内存", re.IGNORECASE)
_GPU_ASKED = re.compile(r"GPU|VRAM|CUDA|显存|显卡|\b(?:A|H)\d{2,3}\b|\b(?:RTX ?)?\d{4}\b", re.IGNORECASE)


def capacity_question(text: str) -> DescribedOOM | None:
    """Words with no error and no config that ask whether the run fits, or how much memory it needs: read as the memory
    failure they ask about, GPU unless only the host's RAM is named, at the asking sentence."""
    text = scan_window(text)
    for n, line in content_lines(text):
        m = _CAPACITY_ASKED.search(line[:2000])
        if m is None:
            continue
        asked = line[:2000]
        kind = "host_oom" if _HOST_ASKED.search(m.group(0)) and not _GPU_ASKED.search(asked) else "cuda_oom"
        phase = _named_phase(lambda pat: pat.search(asked))
        return DescribedOOM(kind=kind, line=n, text=asked.strip()[:300], phase=phase, model=model_named(text))
    return None
