"""Run context that frameworks print into logs: framework and launcher, DeepSpeed ZeRO stage, model,
GPUs (nvidia-smi tables, device banners), package versions and training arguments, each with its line.
The version and argument formats live in versions.py and arguments.py; this module keeps first sightings.

`FactCollector.feed` sees every cleaned line once; cheap substring gates keep the regexes off most lines.
"""

from __future__ import annotations

import re

from ..report import Evidence, GPUSeen, LoggedArg
from .attention import find_attention
from .arguments import clean_value, find_arguments, find_eval_batch_size, may_name_arguments, plausible_value
from .model_names import looks_like_model
from .versions import find_versions, may_name_versions

# DeepSpeed builds and loads its CPU Adam op ("Loading extension module cpu_adam...", "Time to load cpu_adam op") and
# prints its banner ("Adam Optimizer #0 is created with AVX2 arithmetic capability") only when the optimizer is
# offloaded to CPU (ZeRO offload_optimizer device cpu, DeepSpeedCPUAdam): its states then live in host RAM
CPU_ADAM_WORDS = ("cpu_adam", "deepspeedcpuadam", "is created with avx")


# Framework → substrings (in the lower-cased line) that show it; the most specific framework wins.
FRAMEWORKS: list[tuple[str, tuple[str, ...]]] = [
    ("llamafactory", ("llamafactory", "llama-factory", "llama_factory", "llmtuner", "train_bash.py", "finetuning_type")),
    ("axolotl", ("axolotl",)),
    ("unsloth", ("unsloth",)),
    ("swift", ("swift/llm", "swift sft", "ms-swift", "/swift/trainers", "swift.llm", "swift/cli")),
    ("torchtune", ("torchtune", "tune run")),
    ("moe-llava", ("moellava", "moe-llava")),
    ("llava", ("llava/train", "llava/model", "llava.train")),
    ("trl", ("trl/trainer", "trl.trainer", "sfttrainer", "dpotrainer", "grpotrainer")),
    ("vllm", ("vllm/engine", "vllm/worker", "vllm/model_executor", "vllm.engine", "vllm/executor", "llmengine",
              "initializing an llm engine", "vllmworkerprocess", "loading model weights took", "model loading took",
              "vllm.entrypoints", "vllm serve ")),   # the server's own launch command
    # llama.cpp and the tools built on it (llama-cpp-python, Ollama, LM Studio): its loader's log prefixes
    ("llama.cpp", ("llama_model_load:", "llm_load_tensors:", "load_tensors:", "llama_new_context_with_model:",
                   "ggml_cuda_init:", "llama_context:")),
    ("hf_trainer", ("transformers/trainer.py", "transformers/trainer_seq2seq.py", "***** running training *****",
                    "transformers.trainer", "trainingarguments(", "|trainer.py:")),
    ("accelerate", ("accelerate/", "accelerate launch", "accelerate.")),
    ("deepspeed", ("deepspeed/runtime", "deepspeed info", "deepspeedengine", "deepspeed/", "zero stage", "[deepspeed]")),
]
LAUNCHERS: list[tuple[str, tuple[str, ...]]] = [
    ("llamafactory-cli", ("llamafactory-cli",)),
    ("accelerate", ("accelerate launch", "accelerate/commands/launch.py", "bin/accelerate")),
    ("deepspeed", ("deepspeed/launcher/", "deepspeed.launcher", "bin/deepspeed", "sigkill_handler")),
    ("torchrun", ("torchrun", "torch/distributed/run.py", "torch.distributed.run", "torch.distributed.launch",
                  "torch/distributed/launch.py", "torch/distributed/elastic", "torch.distributed.elastic", "childfailederror")),
]
# Word tokens of a line decide cheaply which extractors run: a framework key shows up as its longest token
# ("transformers/trainer.py" → "transformers"). One tokenisation per line replaces many alternation scans.
_TO_SPACES = bytes(c if (48 <= c <= 57 or 97 <= c <= 122 or c == 95 or c >= 128) else 32 for c in range(256))


def tokens_of(encoded_low: bytes) -> set[bytes]:
    """Runs of [a-z0-9_] in a lower-cased, UTF-8 encoded line (C speed: one bytes.translate, one split)."""
    return set(encoded_low.translate(_TO_SPACES).split())


FRAMEWORK_TOKENS = frozenset(max(tokens_of(k.encode()), key=len) for _, keys in FRAMEWORKS + LAUNCHERS for k in keys) | {
    b"deepspeed", b"python", b"python3", b"trainer", b"llama", b"accelerate"}
_DEEPSPEED_CMD = re.compile(r"(?:^|[\s;&|$])deepspeed\s{1,4}(?:--|[\w./-]{1,200}\.py)")
_PYTHON_CMD = re.compile(r"(?:^|[\s;&|$/])python3?(?:\.\d{1,2})?\s{1,4}(?:-u\s{1,4}|-m\s{1,4}[\w.]{1,80}|[\w./-]{1,200}\.py)")

_ZERO_STAGE = [
    re.compile(r"ZeRO[\s-]{0,2}[Ss]tage\s{0,3}([0-3])"),
    re.compile(r"zero_optimization_stage\s{0,4}\.{0,40}\s{0,4}([0-3])\b"),
    re.compile(r"zero_config\s{0,4}\.{0,40}\s{0,4}stage=([0-3])\b"),
    re.compile(r"\bZeRO-([0-3])\b"),
    re.compile(r"\bStage (3) initialize (?:beginning|end)\b"),  # DeepSpeed stage3.py's see_memory_usage banner
    # how people write it in a sentence or a file name: "deepspeed zero3", "ZeRO3", "zero-2"
    re.compile(r"(?<![A-Za-z0-9])[Zz][Ee][Rr][Oo][-_]?([1-3])(?![0-9])"),
]
_JSON_STAGE = re.compile(r"""["']stage["']\s{0,3}:\s{0,3}([0-3])\b""")
_DS_FILE_STAGE = re.compile(r"(?:z|zero|stage)[_-]?([0-3])(?![0-9])", re.IGNORECASE)

# model
_MODEL_ARG = re.compile(
    r"""(?:model_name_or_path|pretrained_model_name_or_path|model_id_or_path|base_model)['"]?\s{0,3}[=:]?\s{0,3}['"]?"""
    r"""([^\s,'")]{2,300})""")
_MODEL_KWARG = re.compile(r"""(?:^|[\s(,])(?:model|model_path|model_id)\s{0,2}=\s{0,2}['"]([^'"\s]{2,300})['"]""")
_MODEL_FLAG = re.compile(r"(?:^|\s)--(?:model|model_path|model_id|model_dir)[ =]\s{0,3}([^\s\\'\"-][^\s\\'\"]{1,300})")
# "loading weights file /m/X/model.safetensors" or "... file config.json from cache at /hub/models--org--X/..."
_MODEL_FILE = re.compile(r"loading (?:weights|configuration) file ([^\s,]{2,400})(?: from cache at ([^\s,]{2,400}))?")
_HF_CACHE = re.compile(r"models--([\w.-]{1,100})--([\w.-]{1,200})")
# any file fetched from the hub cache: "loading file tokenizer.json from cache at /root/.cache/.../models--org--X/..."
_FROM_CACHE = re.compile(r"from cache at ([^\s,]{0,400}models--[\w.-]{1,100}--[\w.-]{1,200})")
# a config print naming the checkpoint: '"_name_or_path": "/root/.cache/huggingface/hub/models--org--X/snapshots/..."'
_NAME_OR_PATH = re.compile(r"""["']_name_or_path["']\s{0,2}:\s{0,2}["']([^"'\s]{2,400})["']""")

# DeepSpeed see_memory_usage: "CPU Virtual Memory:  used = 503.3 GB, percent = 97.9%" where used is
# (total - available) / 2**30 and percent is psutil's (total - available) / total (deepspeed/runtime/utils.py)
_CPU_VM = re.compile(r"CPU Virtual Memory:\s{0,4}used\s{0,3}=\s{0,3}(\d{1,7}(?:\.\d{1,6})?)\s{0,2}GB,"
                     r"\s{0,3}percent\s{0,3}=\s{0,3}(\d{1,3}(?:\.\d{1,4})?)\s{0,2}%")

# GPUs
_SMI_NAME = re.compile(
    r"^\|?\s{0,8}(\d{1,2})\s{1,8}((?:NVIDIA|Tesla|Quadro|GeForce|AMD|Instinct|Radeon)[^|]{1,60}?)\s{1,40}(?:On|Off)\s{0,8}\|")
_SMI_MEM = re.compile(r"(\d{1,7})\s{0,2}MiB\s{0,4}/\s{0,4}(\d{1,7})\s{0,2}MiB")
_TF_DEVICE = re.compile(r"device:GPU:(\d{1,3}) with (\d{1,7}) MB memory\)?:?\s{0,3}-> device: \d{1,3}, name: ([^,]{1,80})")
# banners naming the device: unsloth "GPU: NVIDIA GeForce RTX 4090. Max memory: 23.643 GB.", "Using GPU: NVIDIA A10G"
_GPU_BANNER = re.compile(r"GPU:\s{1,3}((?:NVIDIA|Tesla|AMD|Radeon|Instinct)[\w -]{2,60}?)(?:\.|,|\s*$)(?:\s{1,3}Max memory:\s{0,3}([\d.]{1,10})\s{0,2}GB)?")
_ENV_GPU_TYPE = re.compile(r"GPU type:\s{0,4}(.{2,80}?)\s*$")
_GPU_COUNT = [
    (5, re.compile(r"world[ _]size\s{0,3}[:=]\s{0,3}(\d{1,5})\b", re.IGNORECASE)),
    (4, re.compile(r"(?:nproc_per_node|num_gpus|NPROC_PER_NODE|num_processes)[=\s]\s{0,3}(\d{1,4})\b")),
    (4, re.compile(r"GPU number:\s{0,4}(\d{1,4})\b")),
    (3, re.compile(r"Detected (\d{1,4}) GPUs?", re.IGNORECASE)),
    (3, re.compile(r"\bn_gpu\s{0,2}[:=]\s{0,2}(\d{1,4})\b")),
]
_VISIBLE = re.compile(r"CUDA_VISIBLE_DEVICES=['\"]?([\d,]{1,100})")
_INCLUDE = re.compile(r"--include[= ]\s{0,3}localhost:([\d,]{1,100})")



def _model_from_path(path: str) -> str:
    """'/data/Qwen2-7B/model.safetensors.index.json' → '/data/Qwen2-7B'; HF cache paths → 'org/name'."""
    m = _HF_CACHE.search(path)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    head, _, tail = path.rstrip("/").rpartition("/")
    if "." in tail and head:  # a file inside the model directory
        return head
    return path


def _hub_name(value: str) -> str:
    """A hub-cache path given as a model argument names its repo: '.../models--org--X/snapshots/h' → 'org/X'."""
    return _model_from_path(value) if "models--" in value else value


_DIGITS = b"0123456789"
# Lines whose facts depend on their digits (GPU rows by index, ZeRO stage JSON, nvidia-smi memory rows) are never
# skipped as "seen before".
_DIGIT_SENSITIVE = ("stage", "zero", "mib", "nvidia", "device:gpu", "tesla", "amd", "gpu type", "radeon", "instinct",
                     "cpu virtual memory")
_SEEN_CAP = 8192


class FactCollector:
    """Collects run facts from a stream of cleaned lines; first sighting wins (the run's setup is printed first)."""

    def __init__(self, max_evidence: int = 200) -> None:
        self.frameworks: dict[str, tuple[int, str]] = {}
        self.launchers: dict[str, tuple[int, str]] = {}
        self.deepspeed_stage: tuple[int, int, str] | None = None  # (stage, line, text)
        self._stage_weak = False  # stage inferred from a ZeRO-3-only file or class; a printed stage replaces it
        self.model: tuple[int, str, int, str] | None = None      # (strength, model, line, text)
        self.gpus: dict[int | str, GPUSeen] = {}
        self.gpu_lines: dict[int | str, tuple[int, str]] = {}
        self.gpu_count: tuple[int, int, int, str] | None = None   # (strength, count, line, text)
        self.versions: dict[str, str] = {}
        self.version_lines: dict[str, tuple[int, str]] = {}
        self.training_args: dict[str, LoggedArg] = {}
        self.arg_texts: dict[str, str] = {}
        self._pending_smi: tuple[int, int] | None = None          # (gpu index, line) awaiting its memory row
        self._last_zero_json = -100
        self.attention: tuple[int, str, int, str] | None = None   # (strength, implementation, line, text)
        self.host_ram: tuple[float, int, int, int, str] | None = None  # (percent, used, total, line, text)
        self.cpu_adam: tuple[int, str] | None = None   # (line, text): DeepSpeed's CPU Adam, the optimizer offloaded
        # Long logs repeat the same line shapes (loss dicts, progress, step logs) millions of times: a shape (the
        # line without its digits) that once yielded no new fact cannot yield one later (first sighting wins).
        self._seen_shapes: set[bytes] = set()

    # -- dispatch ----------------------------------------------------------------------------------------
    def _state(self) -> tuple:
        return (len(self.frameworks), len(self.launchers), self.deepspeed_stage, self.model, len(self.gpus),
                self.gpu_count, len(self.versions), len(self.training_args), self._pending_smi, self.attention,
                self.host_ram, self.cpu_adam)

    def feed(self, lineno: int, line: str, low: str) -> None:
        encoded = low.encode("utf-8", "replace")
        shape = encoded.translate(None, _DIGITS)  # bytes.translate: ~10x faster than str.translate
        if shape in self._seen_shapes:
            return
        before = self._state()
        self._feed(lineno, line, low, tokens_of(encoded))
        if self._state() == before and not any(k in low for k in _DIGIT_SENSITIVE):
            if len(self._seen_shapes) >= _SEEN_CAP:
                self._seen_shapes.clear()
            self._seen_shapes.add(shape)

    def _feed(self, lineno: int, line: str, low: str, tokens: set[bytes]) -> None:
        if not tokens.isdisjoint(FRAMEWORK_TOKENS):
            self._frameworks(lineno, line, low)
        if "zero" in low or "stage" in low:
            self._zero_stage(lineno, line, low)
        if "model" in low or "loading" in low or "_name_or_path" in low:
            self._model(lineno, line, low)
        if "mib" in low or "nvidia" in low or "gpu" in low or "tesla" in low or "amd" in low:
            self._gpus(lineno, line, low)
        if ("size" in low or "gpu" in low or "nproc" in low or "cuda_visible" in low or "include" in low
                or "num_processes" in low):
            self._gpu_count(lineno, line, low)
        if may_name_versions(low, tokens):
            self._versions(lineno, line, low)
        if may_name_arguments(low, tokens):
            self._training_args(lineno, line, low)
        if "attn" in low or "attention" in low or "sdpa" in low or "xformers" in low or "flash" in low:
            self._attention(lineno, line, low)
        if "cpu virtual memory" in low:
            self._host_ram(lineno, line)
        if self.cpu_adam is None and any(word in low for word in CPU_ADAM_WORDS):
            self.cpu_adam = (lineno, line)

    # -- framework / launcher / ZeRO stage ---------------------------------------------------------------
    def _frameworks(self, lineno: int, line: str, low: str) -> None:
        for name, keys in FRAMEWORKS:
            if name not in self.frameworks and any(k in low for k in keys):
                self.frameworks[name] = (lineno, line)
        for name, keys in LAUNCHERS:
            if name not in self.launchers and any(k in low for k in keys):
                self.launchers[name] = (lineno, line)
        if "deepspeed" in low and "deepspeed" not in self.launchers and _DEEPSPEED_CMD.search(line):
            self.launchers["deepspeed"] = (lineno, line)
        if "python" in low and "python" not in self.launchers and _PYTHON_CMD.search(line):
            self.launchers["python"] = (lineno, line)

    def _zero_stage(self, lineno: int, line: str, low: str) -> None:
        if "zero_optimization" in low:
            self._last_zero_json = lineno
        if self.deepspeed_stage is not None and not self._stage_weak:
            return
        for pattern in _ZERO_STAGE:
            m = pattern.search(line)
            if m:
                self.deepspeed_stage, self._stage_weak = (int(m.group(1)), lineno, line), False
                return
        if lineno - self._last_zero_json <= 12:
            m = _JSON_STAGE.search(line)
            if m:
                self.deepspeed_stage, self._stage_weak = (int(m.group(1)), lineno, line), False
                return
        if self.deepspeed_stage is None and ("deepspeedzerooffload" in low or "zero/stage3.py" in low
                                             or "[stage3.py:" in low):  # ZeRO-3-only class / module
            self.deepspeed_stage, self._stage_weak = (3, lineno, line), True

    # -- model ---------------------------------------------------------------------------------------------
    def _model(self, lineno: int, line: str, low: str) -> None:
        strength = self.model[0] if self.model else 0
        if strength >= 3:
            return
        for level, candidate in self._model_candidates(line, low, strength):
            if looks_like_model(candidate):  # script folders, package paths and code never name the model
                self.model = (level, candidate, lineno, line)
                return

    @staticmethod
    def _model_candidates(line: str, low: str, strength: int):
        """(strength, name) pairs this line offers, strongest first: arguments naming the model (3), then files
        loaded from a model directory or the hub cache and config prints (2)."""
        if "model_name_or_path" in low or "model_id_or_path" in low or "base_model" in low:
            m = _MODEL_ARG.search(line)
            if m and not m.group(1).startswith("-"):
                yield 3, _hub_name(m.group(1))
        if "model=" in low or "model_path=" in low or "model_id=" in low:
            m = _MODEL_KWARG.search(line)
            if m:
                yield 3, _hub_name(m.group(1))
        if "--model " in low or "--model=" in low or "--model_path" in low or "--model_dir" in low or "--model_id " in low:
            m = _MODEL_FLAG.search(line)
            if m:
                yield 3, _hub_name(m.group(1))
        if strength >= 2:
            return
        if "loading" in low and "file" in low:
            m = _MODEL_FILE.search(line)
            if m and (m.group(2) or "/" in m.group(1)):
                yield 2, _model_from_path(m.group(2) or m.group(1))
        if "from cache at" in low and "models--" in low:
            m = _FROM_CACHE.search(line)  # tokenizer/processor files name the same checkpoint
            if m:
                yield 2, _model_from_path(m.group(1))
        if "_name_or_path" in low:
            m = _NAME_OR_PATH.search(line)
            if m:
                yield 2, _hub_name(m.group(1))

    # -- attention kernel, host RAM ------------------------------------------------------------------------
    def _attention(self, lineno: int, line: str, low: str) -> None:
        found = find_attention(line, low)
        if found and (self.attention is None or found[1] > self.attention[0]):
            self.attention = (found[1], found[0], lineno, line)

    def _host_ram(self, lineno: int, line: str) -> None:
        m = _CPU_VM.search(line)
        if not m:
            return
        used_gib, percent = float(m.group(1)), float(m.group(2))
        if percent <= 0 or percent > 100 or (self.host_ram and percent <= self.host_ram[0]):
            return  # the highest print wins: the peak, and the most precise total (percent has one decimal)
        used = int(round(used_gib * (1 << 30)))
        self.host_ram = (percent, used, int(round(used * 100 / percent)), lineno, line)

    # -- GPUs -----------------------------------------------------------------------------------------------
    def _gpus(self, lineno: int, line: str, low: str) -> None:
        m = _SMI_NAME.search(line) if ("on" in low or "off" in low) else None
        if m:
            idx = int(m.group(1))
            name = " ".join(m.group(2).split())
            if idx not in self.gpus:
                self.gpus[idx] = GPUSeen(index=idx, name=name)
                self.gpu_lines[idx] = (lineno, line)
            self._pending_smi = (idx, lineno)
            return
        if self._pending_smi and "mib" in low and lineno - self._pending_smi[1] <= 2:
            mm = _SMI_MEM.search(line)
            if mm:
                gpu = self.gpus.get(self._pending_smi[0])
                if gpu is not None and gpu.memory_bytes is None:
                    gpu.used_bytes = int(mm.group(1)) << 20
                    gpu.memory_bytes = int(mm.group(2)) << 20
                self._pending_smi = None
                return
        if "device:gpu:" in low and "name:" in low:
            m = _TF_DEVICE.search(line)
            if m and int(m.group(1)) not in self.gpus:
                idx = int(m.group(1))
                self.gpus[idx] = GPUSeen(index=idx, name=m.group(3).strip(), memory_bytes=int(m.group(2)) << 20)
                self.gpu_lines[idx] = (lineno, line)
        if "gpu: " in low and "type" not in self.gpus:
            m = _GPU_BANNER.search(line)
            if m:
                # "GB" in these banners is GiB (torch total_memory / 1024**3)
                memory = int(round(float(m.group(2)) * (1 << 30))) if m.group(2) else None
                self.gpus["type"] = GPUSeen(name=m.group(1).strip(), memory_bytes=memory)
                self.gpu_lines["type"] = (lineno, line)
        if "gpu type:" in low and "type" not in self.gpus:
            m = _ENV_GPU_TYPE.search(line)
            if m:
                self.gpus["type"] = GPUSeen(name=m.group(1).strip())
                self.gpu_lines["type"] = (lineno, line)

    def _gpu_count(self, lineno: int, line: str, low: str) -> None:
        best = self.gpu_count[0] if self.gpu_count else 0
        for strength, pattern in _GPU_COUNT:
            if strength <= best:
                continue
            m = pattern.search(line)
            if m and int(m.group(1)) > 0:
                self.gpu_count = (strength, int(m.group(1)), lineno, line)
                return
        if best < 2 and ("cuda_visible_devices" in low or "--include" in low):
            m = _VISIBLE.search(line) or _INCLUDE.search(line)
            if m:
                ids = [x for x in m.group(1).split(",") if x]
                if ids:
                    self.gpu_count = (2, len(ids), lineno, line)

    # -- versions and training arguments (first sighting wins) ----------------------------------------------
    def _versions(self, lineno: int, line: str, low: str) -> None:
        for key, version in find_versions(line, low):
            if key not in self.versions:
                self.versions[key] = version
                self.version_lines[key] = (lineno, line)

    def _add_arg(self, key: str, value: str | None, lineno: int, line: str) -> None:
        if key in self.training_args or len(self.training_args) >= 200:
            return
        value = clean_value(value)
        if value and plausible_value(key, value):
            self.training_args[key] = LoggedArg(value=value[:300], line=lineno)
            self.arg_texts[key] = line

    def _training_args(self, lineno: int, line: str, low: str) -> None:
        for key, value in find_arguments(line, low):
            self._add_arg(key, value, lineno, line)

    def feed_eval_banner(self, lineno: int, line: str) -> None:
        """'  Batch size = 8' right after '***** Running Evaluation *****' is the evaluation batch size."""
        value = find_eval_batch_size(line)
        if value:
            self._add_arg("eval_batch_size", value, lineno, line)

    # -- results ----------------------------------------------------------------------------------------------
    def framework(self) -> tuple[str, int, str] | None:
        for name, _ in FRAMEWORKS:
            if name in self.frameworks:
                return (name, *self.frameworks[name])
        return None

    def launcher(self) -> tuple[str, int, str] | None:
        for name in ("llamafactory-cli", "accelerate", "deepspeed", "torchrun", "python"):
            if name in self.launchers:
                return (name, *self.launchers[name])
        return None

    def attn_implementation(self) -> tuple[str, int, str] | None:
        return self.attention[1:] if self.attention else None

    def stage(self) -> tuple[int, int, str] | None:
        if self.deepspeed_stage is not None:
            return self.deepspeed_stage
        ds = self.training_args.get("deepspeed")
        if ds is not None:
            m = _DS_FILE_STAGE.search(ds.value.rsplit("/", 1)[-1])
            if m:
                return int(m.group(1)), ds.line, self.arg_texts.get("deepspeed", ds.value)
        return None

    def evidence(self) -> list[Evidence]:
        out = []
        for key, (lineno, line) in self.version_lines.items():
            out.append(Evidence(line=lineno, text=line[:300], fact=f"versions.{key}"))
        for key, arg in self.training_args.items():
            out.append(Evidence(line=arg.line, text=self.arg_texts.get(key, "")[:300], fact=f"training_args.{key}"))
        for key, (lineno, line) in self.gpu_lines.items():
            out.append(Evidence(line=lineno, text=line[:300], fact="gpus"))
        return out


