"""Out-of-memory messages: which kind a line reports and the numbers it prints.

Each pattern is matched against one message of at most a few KiB; every repetition is bounded so no
input can make a pattern backtrack badly. Formats, with the public reports they were checked against,
are listed in tests/fixtures/logs/SOURCES.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .sizes import NUM, SP, UNIT, to_bytes

# Priority of a hit when a log holds several memory errors: the most specific message wins, then the first.
# 4: PyTorch/HIP/MPS message with a requested size; 3: any other accelerator OOM; 2: library allocation
# failures (cuBLAS/cuDNN, NCCL, allocator warnings); 1: host RAM exhaustion.
P_DETAILED, P_GPU, P_LIBRARY, P_HOST = 4, 3, 2, 1

# The caching allocator's message when a memory fraction caps the process (torch.cuda.set_per_process_memory_fraction,
# c10/cuda/CUDACachingAllocator.cpp): a header, then one field per line ("Requested               : 320.00 MiB").
FRACTION_HEADER = "would exceed allowed memory"
_FRACTION_FIELD = re.compile(r"\s{0,40}(?:Currently allocated|Requested|Device limit|Free \(according to CUDA\)|PyTorch limit|:)")
_FRAC_DEVICE = re.compile(r"Allocation on device (\d{1,4})")
_FIELD_GAP = r"\s{0,40}:\s{0,4}"   # the labels are padded to one width
_FRAC_ALLOC = re.compile(rf"Currently{SP}allocated{_FIELD_GAP}{NUM}{SP}{UNIT}")
_FRAC_REQ = re.compile(rf"Requested{_FIELD_GAP}{NUM}{SP}{UNIT}")
_FRAC_LIMIT = re.compile(rf"Device{SP}limit{_FIELD_GAP}{NUM}{SP}{UNIT}")
_FRAC_FREE = re.compile(rf"Free{SP}\(according{SP}to{SP}CUDA\){_FIELD_GAP}{NUM}{SP}{UNIT}")


def fraction_field(line: str) -> bool:
    """Is this line one field of the memory-fraction message (a label, then its size)?"""
    return _FRACTION_FIELD.match(line) is not None


# Markers that end a PyTorch OOM message; a message without one may continue on the next (wrapped) line.
_END_MARKERS = ("alloc_conf", "environment-variables", "reserved in total by pytorch)", "cached)",
                "memory management", "disable upper limit", "may cause system failure")


@dataclass
class MemoryHit:
    """One memory error found in a message: its kind, how much to trust it, and the numbers it prints."""

    kind: str
    priority: int
    text: str
    requested_bytes: int | None = None
    gpu_index: int | None = None
    gpu_total_bytes: int | None = None
    gpu_free_bytes: int | None = None
    process_used_bytes: int | None = None
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None
    torch_reserved_unallocated_bytes: int | None = None
    other_processes: list[tuple[int, int]] = field(default_factory=list)
    exit_signal: str | None = None
    phase_hint: str | None = None
    exact_size: bool = False  # requested_bytes printed as an exact byte count (refines a rounded print before it)
    wrappable: bool = False  # a PyTorch allocator message: may continue on the next (hard-wrapped) line
    # which fields came from the text, with the fragment as written (for evidence)
    fragments: dict[str, str] = field(default_factory=dict)
    fragment_lines: dict[str, int] = field(default_factory=dict)  # a fragment read from a later line (merged hits)

    @property
    def signature(self) -> tuple:
        """Identity of 'the same OOM' printed by several ranks."""
        return (self.kind, self.requested_bytes)


def is_open(message: str) -> bool:
    """A PyTorch OOM message with no end marker yet: the next line may be its wrapped continuation."""
    low = message.lower()
    return not any(m in low for m in _END_MARKERS)


# --- PyTorch (CUDA/HIP) caching allocator messages -------------------------------------------------------
# PyTorch's allocator messages are read case-blind: a paste lower-cased as a whole ("cuda out of memory. tried to allocate
# 78.88 mib (gpu 0; 3.95 gib total capacity; ...)", an issue title) keeps its numbers.
# c10 prints a size past its formatter as a floor: "Tried to allocate more than 1EB memory"
_REQ = re.compile(rf"Tried{SP}to{SP}allocate{SP}(?:more{SP}than{SP})?{NUM}{SP}{UNIT}?", re.IGNORECASE)
# old format: "(GPU 2; 23.64 GiB total capacity; 23.08 GiB already allocated; 704.00 KiB free; 23.20 GiB reserved ...)";
# torch_npu (Ascend) prints the same message with "NPU" for "GPU" ("(NPU 3; 60.96 GiB total capacity; ...)")
_OLD_GPU = re.compile(r"\((?:GPU|NPU)\s{0,4}(\d{1,4})\s{0,4};", re.IGNORECASE)
_OLD_TOTAL = re.compile(rf"{NUM}{SP}{UNIT}{SP}total{SP}capac", re.IGNORECASE)
_OLD_ALLOC = re.compile(rf"{NUM}{SP}{UNIT}{SP}already{SP}alloc", re.IGNORECASE)
_OLD_FREE = re.compile(rf";{SP}{NUM}{SP}{UNIT}{SP}free", re.IGNORECASE)
_OLD_RESERVED = re.compile(rf"{NUM}{SP}{UNIT}{SP}reserved{SP}in{SP}total", re.IGNORECASE)
# PyTorch 1.0-1.4 printed the cached-but-unallocated bytes as "X cached" (cached_bytes - allocated).
_OLD_CACHED = re.compile(rf";{SP}{NUM}{SP}{UNIT}{SP}cached", re.IGNORECASE)
# current format: "GPU 0 has a total capacity of 79.18 GiB of which 3.61 GiB is free. Process 1234 has ... Including
# non-PyTorch memory, this process has 75.56 GiB memory in use. Of the allocated memory 69.86 GiB is allocated by
# PyTorch, and 5.04 GiB is reserved by PyTorch but unallocated."  ("capacty" is PyTorch 2.1's spelling)
# Some builds (and device-less contexts) print no index: "GPU  has a total capacity of ...".
_NEW_TOTAL = re.compile(rf"GPU{SP}(\d{{1,4}})?{SP}has{SP}a{SP}total{SP}capac\w{{0,4}}{SP}of{SP}{NUM}{SP}{UNIT}?", re.IGNORECASE)
_NEW_FREE = re.compile(rf"of{SP}which{SP}{NUM}{SP}{UNIT}?", re.IGNORECASE)
_NEW_PROCESS = re.compile(rf"this{SP}process{SP}has{SP}{NUM}{SP}{UNIT}?", re.IGNORECASE)
_NEW_ALLOC = re.compile(rf"Of{SP}the{SP}allocated{SP}memory{SP}{NUM}{SP}{UNIT}?", re.IGNORECASE)
_NEW_UNALLOC = re.compile(rf"and{SP}{NUM}{SP}{UNIT}{SP}is{SP}reserved{SP}by", re.IGNORECASE)
_OTHER_PROC = re.compile(rf"Process{SP}(\d{{1,10}}){SP}has{SP}{NUM}{SP}{UNIT}{SP}memory", re.IGNORECASE)
# Apple: "MPS backend out of memory (MPS allocated: 17.68 GB, other allocations: 3.95 MB, max allowed: 18.13 GB).
# Tried to allocate 1024.00 MB on private pool."
_MPS_ALLOC = re.compile(rf"MPS{SP}allocated:{SP}{NUM}{SP}{UNIT}")
_MPS_OTHER = re.compile(rf"other{SP}allocations:{SP}{NUM}{SP}{UNIT}")
_MPS_MAX = re.compile(rf"max{SP}allowed:{SP}{NUM}{SP}{UNIT}")
# XLA/JAX: "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 7406166528 bytes."
_XLA_BYTES = re.compile(r"(?:trying to allocate|allocating)\s{0,4}(\d{1,20})\s{0,4}bytes", re.IGNORECASE)
# TF/XLA BFC allocator: "ran out of memory trying to allocate 1.25TiB (rounded to 1374521760000)"
_BFC_ROUNDED = re.compile(r"rounded to (\d{1,20})\)")
# TensorFlow: "OOM when allocating tensor with shape[16,112,112,147] and type float on .../device:GPU:0 by allocator"
_TF_SHAPE = re.compile(r"OOM when allocating tensor (?:with|of) shape\s{0,2}\[([\d,\s]{0,200})\]\s{0,2}and type (\w{1,16})")
_TF_DEVICE = re.compile(r"device:GPU:(\d{1,4})")
_TF_DTYPE_BYTES = {"float": 4, "float32": 4, "half": 2, "float16": 2, "bfloat16": 2, "double": 8, "float64": 8,
                   "int32": 4, "int64": 8, "int8": 1, "uint8": 1, "bool": 1, "int16": 2}
# PaddlePaddle's allocator (paddle/fluid/memory/allocation, raised as ResourceExhaustedError / BadAlloc): "Out of
# memory error on GPU 0. Cannot allocate 3.621826GB memory on GPU 0, 21.184814GB memory has been allocated and available
# memory is only 2.814575GB." (Paddle 1.x prints no allocated part). Sizes are binary (HumanReadableSize).
_PADDLE_GPU = re.compile(r"Out of memory error on GPU\s{0,2}(\d{1,4})")
_PADDLE_REQ = re.compile(rf"Cannot{SP}allocate{SP}{NUM}{SP}{UNIT}")
_PADDLE_ALLOC = re.compile(rf"{NUM}{SP}{UNIT}{SP}memory{SP}has{SP}been{SP}allocated")
_PADDLE_FREE = re.compile(rf"available{SP}memory{SP}is(?:{SP}only)?{SP}{NUM}{SP}{UNIT}")
# CUDA driver API: "cuMemAlloc failed to allocate 1073741824 bytes: CUDA_ERROR_OUT_OF_MEMORY"
_DRIVER_BYTES = re.compile(r"(?:allocate|alloc)\s{0,2}(\d{1,20})\s{0,2}bytes")
# host: "DefaultCPUAllocator: can't allocate memory: you tried to allocate 268435456 bytes."
_CPU_BYTES = re.compile(r"tried to allocate (\d{1,20}) bytes")
# NCCL: "include/alloc.h:185 NCCL WARN Failed to CUDA calloc 6291456 bytes"
_NCCL_BYTES = re.compile(r"Failed to CUDA (?:calloc|malloc|host alloc\w{0,4}) (\d{1,20}) bytes", re.IGNORECASE)
# llama.cpp / ggml (ggml-cuda.cu, ggml-alloc.c, llama.cpp's loader): "ggml_backend_cuda_buffer_type_alloc_buffer:
# allocating 144.00 MiB on device 4: cudaMalloc failed: out of memory" (size / 1024 / 1024 with %.2f), then
# "ggml_gallocr_reserve_n: failed to allocate CUDA4 buffer of size 150995968" (%zu bytes) and
# "llama_model_load: error loading model: unable to allocate CUDA0 buffer". HIP builds name devices ROCm<n>.
_GGML_DEVICE_ALLOC = re.compile(rf"allocating{SP}{NUM}{SP}{UNIT}{SP}on{SP}device{SP}(\d{{1,4}})")
_GGML_BUFFER = re.compile(r"(?:failed|unable) to allocate (CUDA|ROCm)(\d{1,4}|_Host) buffer(?: of size (\d{1,20}))?")
_GGML_BUFFER_KIND = {"CUDA": "cuda_oom", "ROCm": "hip_oom"}
# ggml's CPU backend allocates its buffers (weights, KV cache) with an aligned host malloc: "ggml_backend_cpu_buffer_
# type_alloc_buffer: failed to allocate buffer of size 17179869216" is host RAM running out
_GGML_CPU_BUFFER = "ggml_backend_cpu_buffer"
_BUFFER_OF_SIZE = re.compile(r"buffer of size (\d{1,20})")   # ggml's and ONNX Runtime's failed request, in bytes
# launcher summaries: "exitcode  : -9 (pid: 14750)", "exits with return code = -9", "Signal 9 (SIGKILL) received"
# "exitcode: -9", "return code = -9", "exited with code 137", "error code -9", "exit status 137": a process's status
EXIT_CODE = re.compile(r"(?:exitcode|returncode|(?:exit(?:ed)?(?: with)?|return|error) (?:code|status))\s{0,4}(?:[:=]|of)?"
                        r"\s{0,4}(-?\d{1,3})(?!\d|\.\d)", re.IGNORECASE)
_SIGNAL_NAME = re.compile(r"\b(SIG(?:KILL|BUS|FPE|SEGV|ABRT|TERM))\b")
# torch DataLoader: "DataLoader worker (pid 123) is killed by signal: Bus error." (the signal's strsignal text)
_KILLED_BY = {"bus error": "SIGBUS", "floating point exception": "SIGFPE", "segmentation fault": "SIGSEGV",
              "aborted": "SIGABRT"}
_KILLED_WORD = re.compile(r"(?:^|[\s:])Killed(?:\s|$)")
_EXIT_SIGNALS = {"-9": "SIGKILL", "137": "SIGKILL", "-7": "SIGBUS", "135": "SIGBUS", "-8": "SIGFPE", "136": "SIGFPE",
                 "-11": "SIGSEGV", "139": "SIGSEGV", "-6": "SIGABRT", "134": "SIGABRT"}


def _size(match: re.Match | None, num_group: int = 1) -> int | None:
    if match is None:
        return None
    return to_bytes(match.group(num_group), match.group(num_group + 1))


def _put(hit: MemoryHit, name: str, match: re.Match | None, num_group: int = 1) -> None:
    value = _size(match, num_group)
    if value is not None and getattr(hit, name) is None:
        setattr(hit, name, value)
        hit.fragments[name] = match.group(0).strip()


def killed_exit_status(text: str) -> bool:
    """Does the text give an exit status that means SIGKILL (-9, 137: the host's OOM killer, oom-signals.md)?"""
    return any(_EXIT_SIGNALS.get(m.group(1)) == "SIGKILL" for m in EXIT_CODE.finditer(text))


def exit_signal(line: str) -> str | None:
    """The signal a launcher summary reports (SIGKILL for exit code -9 or 137), or None."""
    m = _SIGNAL_NAME.search(line)
    if m and m.group(1) != "SIGTERM":
        return m.group(1)
    low = line.lower()
    if "killed by signal" in low:
        for text, name in _KILLED_BY.items():
            if text in low:
                return name
    m = EXIT_CODE.search(line)
    if m:
        return _EXIT_SIGNALS.get(m.group(1))
    return None


def _torch_segments(message: str) -> list[str]:
    """A line can hold several PyTorch OOM messages back to back; split at each 'Tried to allocate'."""
    starts = []
    pos = message.find("Tried")
    while pos != -1 and len(starts) < 16:
        if message.startswith("Tried", pos) and _REQ.match(message, pos):
            starts.append(pos)
        pos = message.find("Tried", pos + 5)
    if len(starts) <= 1:
        return [message]
    return [message[: starts[1]]] + [message[a:b] for a, b in zip(starts[1:], starts[2:] + [len(message)])]


def parse_torch_message(kind: str, message: str) -> list[MemoryHit]:
    """Numbers from a PyTorch caching-allocator OOM message (old and current formats, CUDA and HIP)."""
    hits = []
    for segment in _torch_segments(message):
        hit = MemoryHit(kind=kind, priority=P_GPU, text=segment, wrappable=True)
        _put(hit, "requested_bytes", _REQ.search(segment))
        if hit.requested_bytes is not None:
            hit.priority = P_DETAILED
        if FRACTION_HEADER in segment.lower():
            # the device limit is the card's capacity (the fraction's own limit, printed last, is not read)
            _put(hit, "requested_bytes", _FRAC_REQ.search(segment))
            _put(hit, "torch_allocated_bytes", _FRAC_ALLOC.search(segment))
            # "Currently allocated" is the allocator's total_allocated_memory: what it took from cudaMalloc, i.e. what
            # it reserves (c10/cuda/CUDACachingAllocator.cpp), so the rest of the card is held outside it
            _put(hit, "torch_reserved_bytes", _FRAC_ALLOC.search(segment))
            _put(hit, "gpu_total_bytes", _FRAC_LIMIT.search(segment))
            _put(hit, "gpu_free_bytes", _FRAC_FREE.search(segment))
            device = _FRAC_DEVICE.search(segment)
            if device:
                hit.gpu_index = int(device.group(1))
            if hit.requested_bytes is not None:
                hit.priority = P_DETAILED
            hits.append(hit)
            continue
        m = _NEW_TOTAL.search(segment)
        if m:
            if m.group(1) is not None:
                hit.gpu_index = int(m.group(1))
            _put(hit, "gpu_total_bytes", m, 2)
            _put(hit, "gpu_free_bytes", _NEW_FREE.search(segment, m.end()))
            _put(hit, "process_used_bytes", _NEW_PROCESS.search(segment))
            _put(hit, "torch_allocated_bytes", _NEW_ALLOC.search(segment))
            _put(hit, "torch_reserved_unallocated_bytes", _NEW_UNALLOC.search(segment))
            for pm in _OTHER_PROC.finditer(segment):
                size = to_bytes(pm.group(2), pm.group(3))
                if size is not None and len(hit.other_processes) < 64:
                    hit.other_processes.append((int(pm.group(1)), size))
        else:
            m = _OLD_GPU.search(segment)
            if m:
                hit.gpu_index = int(m.group(1))
            _put(hit, "gpu_total_bytes", _OLD_TOTAL.search(segment))
            _put(hit, "torch_allocated_bytes", _OLD_ALLOC.search(segment))
            _put(hit, "gpu_free_bytes", _OLD_FREE.search(segment))
            _put(hit, "torch_reserved_bytes", _OLD_RESERVED.search(segment))
            _put(hit, "torch_reserved_unallocated_bytes", _OLD_CACHED.search(segment))
            if hit.torch_reserved_bytes is not None and hit.torch_allocated_bytes is not None:
                hit.torch_reserved_unallocated_bytes = max(0, hit.torch_reserved_bytes - hit.torch_allocated_bytes)
            elif hit.torch_reserved_unallocated_bytes is not None and hit.torch_allocated_bytes is not None:
                hit.torch_reserved_bytes = hit.torch_allocated_bytes + hit.torch_reserved_unallocated_bytes
        if _TURBOMIND_DEVICE_MALLOC in segment:
            hit.phase_hint = "model_loading"
        hits.append(hit)
    return hits


def _parse_mps(message: str) -> MemoryHit:
    hit = MemoryHit(kind="mps_oom", priority=P_GPU, text=message)
    _put(hit, "requested_bytes", _REQ.search(message))
    _put(hit, "torch_allocated_bytes", _MPS_ALLOC.search(message))
    _put(hit, "gpu_total_bytes", _MPS_MAX.search(message))  # the MPS high-watermark limit is the usable total
    other = _size(_MPS_OTHER.search(message))
    if hit.torch_allocated_bytes is not None and other is not None:
        hit.process_used_bytes = hit.torch_allocated_bytes + other
    if hit.gpu_total_bytes is not None and hit.process_used_bytes is not None:
        hit.gpu_free_bytes = max(0, hit.gpu_total_bytes - hit.process_used_bytes)
    return _detailed_if_sized(hit)


def _parse_paddle(message: str) -> MemoryHit:
    """PaddlePaddle's GPU allocator message: the request, the GPU, what Paddle holds and what was still free."""
    device = _PADDLE_GPU.search(message)
    hit = MemoryHit(kind="cuda_oom", priority=P_GPU, text=message, gpu_index=int(device.group(1)) if device else None)
    for name, pattern in (("requested_bytes", _PADDLE_REQ), ("torch_allocated_bytes", _PADDLE_ALLOC),
                          ("gpu_free_bytes", _PADDLE_FREE)):
        _put(hit, name, pattern.search(message))
    return _detailed_if_sized(hit)


def _detailed_if_sized(hit: MemoryHit) -> MemoryHit:
    """A message that prints the size it failed to allocate outranks one that does not (P_DETAILED)."""
    if hit.requested_bytes is not None:
        hit.priority = P_DETAILED
    return hit


def _parse_tf(message: str) -> MemoryHit:
    hit = MemoryHit(kind="tf_oom", priority=P_GPU, text=message)
    m = _TF_SHAPE.search(message)
    if m:
        dims = [d for d in m.group(1).replace(" ", "").split(",") if d]
        elem = _TF_DTYPE_BYTES.get(m.group(2).lower())
        if dims and elem and all(d.isdigit() for d in dims):
            total = elem
            for d in dims[:12]:
                total *= int(d)
            hit.requested_bytes = total
            hit.fragments["requested_bytes"] = m.group(0)
    d = _TF_DEVICE.search(message)
    if d:
        hit.gpu_index = int(d.group(1))
    return hit


def _parse_ggml_malloc(message: str) -> MemoryHit:
    """ggml's 'allocating X MiB on device N: cudaMalloc failed: out of memory' (size rounded to 0.01 MiB)."""
    hit = MemoryHit(kind="cuda_oom", priority=P_GPU, text=message)
    m = _GGML_DEVICE_ALLOC.search(message)
    if m:
        _put(hit, "requested_bytes", m)
        hit.gpu_index = int(m.group(3))
    return hit


def _parse_ggml_buffer(message: str, match: re.Match) -> MemoryHit:
    """ggml's 'failed to allocate CUDA0 buffer of size N' (exact bytes); a CUDA_Host buffer is pinned host RAM."""
    backend, device, size = match.groups()
    if device == "_Host":
        hit = MemoryHit(kind="host_oom", priority=P_HOST, text=message)
    else:
        hit = MemoryHit(kind=_GGML_BUFFER_KIND[backend], priority=P_GPU, text=message, gpu_index=int(device))
    if size is not None:
        hit.requested_bytes = int(size)
        hit.fragments["requested_bytes"] = match.group(0)
        hit.exact_size = True
    return hit


def _bytes_hit(kind: str, priority: int, message: str, pattern: re.Pattern) -> MemoryHit:
    hit = MemoryHit(kind=kind, priority=priority, text=message)
    m = pattern.search(message)
    if m:
        hit.requested_bytes = int(m.group(1))
        hit.fragments["requested_bytes"] = m.group(0)
    return hit


# the CUDA runtime's own error string, as TurboMind ("[TM][ERROR] CUDA runtime error: out of memory") and PyTorch
# before 1.0 ("cuda runtime error (2) : out of memory") print it
_CUDA_RUNTIME_OOM = re.compile(r"cuda runtime error(?: \(\d{1,3}\))?\s{0,2}:\s{0,2}out of memory"
                               # ... and as llm.c's cudaCheck prints it: "[CUDA ERROR] at file train_gpt2.cu:693:" with
                               # cudaGetErrorString's "out of memory" (on its own line, or glued in a paste)
                               r"|\[cuda error\] at file [^:\n]{1,200}:\d{1,6}:\s{0,2}out of memory")
# TurboMind's deviceMalloc (src/turbomind/utils/memory_utils.cu: check_cuda_error(cudaMalloc(...))) allocates the
# weight tensors as the model loads; its KV cache comes from the block allocator after the weights are in, so a failure
# there is the weights'
_TURBOMIND_DEVICE_MALLOC = "memory_utils.cu"

# Ray's memory monitor kills a worker when the node's host RAM passes its threshold (0.95 by default) and says so in
# its own words, none of them "out of memory" ("Memory on the node (IP: .., ID: ..) where the task (..) was running was
# 243.6GB / 251.5GB (0.968), which exceeds the memory usage threshold of 0.95. Ray killed this worker ..."); the
# exception it raises is ray.exceptions.OutOfMemoryError ("Task was killed due to the node running low on memory.")
_RAY_MEMORY_MONITOR = ("node running low on memory", "memory on the node (", "exceeds the memory usage threshold")


def _ray_host_oom(line: str) -> MemoryHit:
    return MemoryHit(kind="host_oom", priority=P_HOST, text=line, exit_signal="SIGKILL")


# accelerate's find_executable_batch_size (the HF Trainer's auto_find_batch_size) halves the batch after each CUDA
# out-of-memory error and gives up at zero: "RuntimeError: No executable batch size found, reached zero."
# (accelerate/utils/memory.py): every batch size down to 1 ran out of GPU memory.
_NO_EXECUTABLE_BATCH = "no executable batch size found"
# OpenVINO's GPU plugin refuses one allocation above the device's largest object ("[GPU] Exceeded max size of memory
# object allocation: requested 11271610368 bytes, but max alloc size supported by device is 4294959104 bytes"): an
# Intel GPU's memory limit, read with the XPU kind (Intel GPUs)
_OCL_MAX_ALLOC = "exceeded max size of memory object allocation"
_OCL_REQUESTED = re.compile(r"requested (\d{1,20}) bytes")
# Intel MKL's allocator on the host ("RuntimeError: mkl_malloc: failed to allocate memory")
_MKL_MALLOC = "mkl_malloc: failed to allocate memory"
# ONNX Runtime's arena allocator (core/framework/bfc_arena.cc) throws from BFCArena::AllocateRawInternal when its
# device allocator fails: "Failed to allocate memory for requested buffer of size 37898745088". The arena serves the
# CUDA, ROCm and DirectML providers (and the CPU one); these reports run the GPU providers, so it reads as the GPU's.
# A line cut before the message still names the throwing function, which throws nothing else.
_ORT_ARENA = ("failed to allocate memory for requested buffer", "bfcarena::allocaterawinternal")


_CODE_STARTS = ("except ", "except(", "raise ", "if ", "elif ", "#", "return ", "print(", "logger.", "assert ")


def detect(line: str, low: str) -> list[MemoryHit]:
    """Memory errors reported by one (cleaned) line. Cheap substring checks decide before any regex runs."""
    if "memory" in low and any(phrase in low for phrase in _RAY_MEMORY_MONITOR):
        return [_ray_host_oom(line)]
    if "out of memory" in low or "outofmemory" in low or "out_of_memory" in low or "memoryallocation" in low:
        if low.lstrip().startswith(_CODE_STARTS) and "tried to allocate" not in low:
            return []  # a source line shown in a traceback ("except torch.cuda.OutOfMemoryError:"), not an error
        if low.strip(" .!:") == "out of memory":
            # the CUDA runtime's error string on a line of its own (cudaGetErrorString(cudaErrorMemoryAllocation), as
            # C/CUDA programs print it under their own "[CUDA ERROR] at file ..." line); the host's is "Cannot
            # allocate memory"
            return [MemoryHit(kind="cuda_oom", priority=P_LIBRARY, text=line)]
        if "mps backend out of memory" in low:
            return [_parse_mps(line)]
        if "resource_exhausted" in low or "resource exhausted" in low or "xlaruntimeerror" in low:
            return [_bytes_hit("xla_oom", P_GPU, line, _XLA_BYTES)]
        if "nccl" in low:
            return [_bytes_hit("nccl_oom", P_LIBRARY, line, _NCCL_BYTES)]
        if "out of memory: killed process" in low or "oom-kill" in low:
            return [MemoryHit(kind="host_oom", priority=P_HOST, text=line, exit_signal="SIGKILL")]
        if "ray.exceptions.outofmemoryerror" in low:
            return [_ray_host_oom(line)]
        if "ran out of memory trying to allocate" in low:  # BFC allocator warning (TF and XLA)
            return [_bytes_hit("tf_oom", P_LIBRARY, line, _BFC_ROUNDED)]
        if "on host" in low and ("cuda_error_out_of_memory" in low or "cudahostalloc" in low):
            return [MemoryHit(kind="host_oom", priority=P_HOST, text=line)]  # pinned host memory, not the GPU
        if "cuda_error_out_of_memory" in low and "tried to allocate" not in low:  # driver API (JAX, CuPy, vLLM)
            return [_bytes_hit("cuda_oom", P_GPU, line, _DRIVER_BYTES)]
        if "cudamalloc failed" in low or "hipmalloc failed" in low:  # ggml / llama.cpp device allocation
            return [_parse_ggml_malloc(line)]
        if "out of memory error on gpu" in low:   # PaddlePaddle
            return [_parse_paddle(line)]
        if "hip out of memory" in low:
            return parse_torch_message("hip_oom", line)
        if "npu out of memory" in low:   # torch_npu on Ascend: PyTorch's message, "NPU" for "GPU"
            return parse_torch_message("npu_oom", line)
        if "xpu out of memory" in low:
            return parse_torch_message("xpu_oom", line)
        if ("cuda out of memory" in low or "cuda error: out of memory" in low or "outofmemoryerror" in low
                or "cuda_error_out_of_memory" in low or "cudaerrormemoryallocation" in low
                or "cuda failed with error out of memory" in low   # CTranslate2 (faster-whisper, whisperX)
                or _CUDA_RUNTIME_OOM.search(low)):
            return parse_torch_message("cuda_oom", line)
        return []
    if "tried to allocate" in low:
        if "you tried to allocate" in low:  # DefaultCPUAllocator (host RAM)
            return [_bytes_hit("host_oom", P_HOST, line, _CPU_BYTES)]
        if _REQ.search(line):  # a wrapped message whose first line was lost
            return parse_torch_message("cuda_oom", line)
        return []
    if "oom when allocating" in low:
        return [_parse_tf(line)]
    if _NO_EXECUTABLE_BATCH in low and not low.lstrip().startswith(_CODE_STARTS):   # not the traceback's source line
        # raised after the CUDA OOMs it caught: one of those, when printed, says more
        return [MemoryHit(kind="cuda_oom", priority=P_LIBRARY, text=line)]
    if _OCL_MAX_ALLOC in low:
        return [_bytes_hit("xpu_oom", P_GPU, line, _OCL_REQUESTED)]
    if _MKL_MALLOC in low:
        return [MemoryHit(kind="host_oom", priority=P_HOST, text=line)]
    if any(phrase in low for phrase in _ORT_ARENA):
        return [_bytes_hit("cuda_oom", P_LIBRARY, line, _BUFFER_OF_SIZE)]
    if "alloc_failed" in low or "not_enough_workspace" in low:
        if "cublas_status_alloc_failed" in low or "cudnn_status_alloc_failed" in low or \
                "cudnn_status_not_enough_workspace" in low:
            return [MemoryHit(kind="cublas_alloc", priority=P_LIBRARY, text=line)]
        return []
    if "buffer" in low and ("failed to allocate" in low or "unable to allocate" in low):
        m = _GGML_BUFFER.search(line)
        if m:
            return [_parse_ggml_buffer(line, m)]
        if _GGML_CPU_BUFFER in low:
            hit = _bytes_hit("host_oom", P_HOST, line, _BUFFER_OF_SIZE)
            hit.exact_size = hit.requested_bytes is not None
            return [hit]
    if "failed to cuda" in low and "nccl" in low:
        return [_bytes_hit("nccl_oom", P_LIBRARY, line, _NCCL_BYTES)]
    return _detect_host(line, low)


# Windows' commit limit: virtual memory is RAM plus the paging file, and a process (often a DataLoader worker loading
# torch's CUDA DLLs) that cannot commit more fails with ERROR_COMMITMENT_LIMIT, WinError 1455 ("The paging file is too
# small for this operation to complete", localised: "页面文件太小，无法完成操作"): the host's memory ran out.
WINDOWS_COMMIT_LIMIT = ("winerror 1455", "paging file is too small", "页面文件太小")
# A notebook's or a hosted app's RAM cap: Colab's "Your session crashed after using all available RAM", Hugging Face
# Spaces' "Memory limit exceeded (16Gi)" (the container's memory limit, which holds no GPU).
HOSTED_RAM_CAP = ("using all available ram", "memory limit exceeded")
# ggml_init allocates its context's memory pool on the host (ggml_aligned_malloc) and asserts it got it:
# "GGML_ASSERT(ctx->mem_buffer != NULL) failed" is host RAM (or Windows' commit limit) running out.
GGML_HOST_POOL = ("ctx->mem_buffer != null",)
_HOST_RAN_OUT = WINDOWS_COMMIT_LIMIT + GGML_HOST_POOL   # host memory whatever else the line names
# the host-limit phrases whose lines hold no other word the parser's line gates look for
HOST_LIMIT_PHRASES = _HOST_RAN_OUT + HOSTED_RAM_CAP


def _detect_host(line: str, low: str) -> list[MemoryHit]:
    if "cannot allocate memory" in low or "can't allocate memory" in low or "bad_alloc" in low:
        return [_bytes_hit("host_oom", P_HOST, line, _CPU_BYTES)]
    if any(phrase in low for phrase in _HOST_RAN_OUT):
        return [MemoryHit(kind="host_oom", priority=P_HOST, text=line)]
    if any(phrase in low for phrase in HOSTED_RAM_CAP) and not any(w in low for w in ("gpu", "cuda", "vram", "显存")):
        return [MemoryHit(kind="host_oom", priority=P_HOST, text=line)]
    if "killed" in low:
        if "bus error" in low:  # "killed by signal: Bus error": SIGBUS (/dev/shm too small), not RAM exhaustion
            return []
        if "dataloader worker" in low:
            return [MemoryHit(kind="host_oom", priority=P_HOST, text=line, exit_signal="SIGKILL",
                              phase_hint="data_loading")]
        if _KILLED_WORD.search(line) and "killed process" not in low:
            return [MemoryHit(kind="host_oom", priority=P_HOST, text=line, exit_signal="SIGKILL")]
    if ("cudahostalloc" in low or "cudamallochost" in low or "pinned memory" in low) and (
            "fail" in low or "error" in low):
        return [MemoryHit(kind="host_oom", priority=P_HOST, text=line)]
    if "code" in low or "status" in low or "sig" in low:
        sig = exit_signal(line)
        if sig == "SIGKILL" and "sending process" not in low:
            return [MemoryHit(kind="host_oom", priority=P_HOST, text=line, exit_signal="SIGKILL")]
    return []
