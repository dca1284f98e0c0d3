"""Image (and video) tokens per sample, from image headers and the processor's resize rule.

Only headers are read (PNG/GIF/WebP/JPEG sizes from their first bytes, PIL's lazy open for other formats:
no pixel is decoded). The processors' parameters are data (PROCESSORS, keyed by model family); three rules
use them: native resolution (Qwen2-VL: resize into [min_pixels, max_pixels], 14-px patches, 2x2 merge),
a fixed grid (LLaVA-1.5: 576 per image), and anyres tiles (LLaVA-NeXT).
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

# ---- LLaMA-Factory ProcessorArguments defaults (src/llamafactory/hparams/model_args.py): images are first shrunk
# to image_max_pixels (sqrt scale, int() sides; mm_plugin.BasePlugin._preprocess_image), videos to video_max_pixels,
# frames sampled at video_fps up to video_maxlen (an odd frame count gets its last frame repeated for Qwen2-VL).
LLAMAFACTORY_IMAGE_MAX_PIXELS = 768 * 768
LLAMAFACTORY_IMAGE_MIN_PIXELS = 32 * 32
LLAMAFACTORY_VIDEO_MAX_PIXELS = 256 * 256
LLAMAFACTORY_VIDEO_MIN_PIXELS = 16 * 16
LLAMAFACTORY_VIDEO_FPS = 2.0
LLAMAFACTORY_VIDEO_MAXLEN = 128
QWEN_MIN_SIDE = 28  # LLaMA-Factory's Qwen2VLPlugin enlarges a side under 28 px to 28

HEADER_BYTES = 64                 # PNG / GIF / WebP sizes sit in the first 30 bytes
JPEG_SCAN_LIMIT = 4 * 1024**2     # stop looking for a JPEG SOF marker after this many bytes (EXIF blocks come first)
JPEG_MAX_SEGMENTS = 512

Rule = Literal["native", "fixed", "anyres"]


@dataclass(frozen=True)
class VisionProcessor:
    """How one model family turns an image into LM tokens (the processor's parameters, with their source)."""

    family: str
    rule: Rule
    patch_size: int = 14
    merge_size: int = 1
    temporal_patch_size: int = 1
    min_pixels: int = 0
    max_pixels: int = 0
    tokens_per_tile: int = 0
    tile_size: int = 336
    grid_pinpoints: tuple[tuple[int, int], ...] = ()
    source: str = ""


_QWEN_SOURCE = ("Qwen2-VL / Qwen2.5-VL preprocessor_config.json: patch_size 14, merge_size 2, temporal_patch_size 2, "
                "min_pixels 3136 (56x56), max_pixels 12845056 (the released checkpoints; transformers' class default "
                "is 28x28x1280 = 1003520); smart_resize rounds each side to a multiple of 28")
PROCESSORS: dict[str, VisionProcessor] = {
    "qwen2_vl": VisionProcessor("qwen2_vl", "native", 14, 2, 2, 56 * 56, 12_845_056, source=_QWEN_SOURCE),
    "qwen2_5_vl": VisionProcessor("qwen2_5_vl", "native", 14, 2, 2, 56 * 56, 12_845_056, source=_QWEN_SOURCE),
    "llava": VisionProcessor("llava", "fixed", 14, tokens_per_tile=576, tile_size=336,
                             source="LLaVA-1.5: CLIP ViT-L/14 at 336 px = 24x24 = 576 tokens per image"),
    "llava_next": VisionProcessor(
        "llava_next", "anyres", 14, tokens_per_tile=576, tile_size=336,
        grid_pinpoints=((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)),
        source="LLaVA-NeXT (llava-v1.6) anyres: image_grid_pinpoints up to 672x672 = 4 tiles + the base image, "
               "576 tokens each, + one newline token per feature row (upper bound: unpadding removes padded rows)"),
}
# model_type / vision kind / name fragments -> family key
FAMILY_ALIASES = {"qwen2_vl": "qwen2_vl", "qwen2-vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen2.5-vl": "qwen2_5_vl",
                  "llava_next": "llava_next", "llava-next": "llava_next", "llava-v1.6": "llava_next",
                  "llava": "llava", "clip": "llava"}


def processor_for(family: str | None) -> VisionProcessor | None:
    """The processor entry of a family name, model_type or model name (None when not a known vision family)."""
    if not family:
        return None
    key = family.lower()
    for alias in sorted(FAMILY_ALIASES, key=len, reverse=True):
        if alias in key:
            return PROCESSORS[FAMILY_ALIASES[alias]]
    return None


# ---------------------------------------------------------------- headers


def image_size(ref: Any, media_dir: str | Path = "") -> tuple[int, int] | None:
    """(width, height) from the image's header, or None when the file is missing or not an image."""
    if isinstance(ref, bytes):
        return _size_from_stream(io.BytesIO(ref))
    if not isinstance(ref, str):
        return None
    path = Path(ref)
    if not path.is_absolute() and media_dir:
        joined = Path(media_dir) / path
        path = joined if joined.exists() else path
    try:
        with path.open("rb") as fh:
            return _size_from_stream(fh)
    except OSError:
        return None


def _size_from_stream(fh: BinaryIO) -> tuple[int, int] | None:
    head = fh.read(HEADER_BYTES)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        fh.seek(2)
        return _jpeg_size(fh)
    return _pil_size(fh)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(fh: BinaryIO) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker (height, width follow its precision byte)."""
    for _ in range(JPEG_MAX_SEGMENTS):
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF or fh.tell() > JPEG_SCAN_LIMIT:
            return None
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:  # no length field
            continue
        seg = fh.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if marker[1] in _SOF:
            body = fh.read(5)
            if len(body) < 5:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            return w, h
        fh.seek(length - 2, io.SEEK_CUR)
    return None


def _pil_size(fh: BinaryIO) -> tuple[int, int] | None:
    """Other formats (BMP, TIFF...): PIL reads the header only until pixels are asked for."""
    from PIL import Image, UnidentifiedImageError

    fh.seek(0)
    try:
        with Image.open(fh) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- tokens


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize (transformers image_processing_qwen2_vl.smart_resize): sides to multiples of `factor`,
    pixels within [min_pixels, max_pixels]."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def framework_resize(width: int, height: int, max_pixels: int | None, min_pixels: int | None) -> tuple[int, int]:
    """LLaMA-Factory's own pre-resize (mm_plugin._preprocess_image) before the HF processor runs."""
    if max_pixels and width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if min_pixels and width * height < min_pixels:
        f = math.sqrt(min_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    return max(width, 1), max(height, 1)


def image_tokens(width: int, height: int, proc: VisionProcessor, *, max_pixels: int | None = LLAMAFACTORY_IMAGE_MAX_PIXELS,
                 min_pixels: int | None = LLAMAFACTORY_IMAGE_MIN_PIXELS) -> int:
    """LM tokens of one width x height image for this processor (after the framework's pre-resize)."""
    if proc.rule == "fixed":
        return proc.tokens_per_tile
    if proc.rule == "anyres":
        return _anyres_tokens(width, height, proc)
    width, height = framework_resize(width, height, max_pixels, min_pixels)
    width, height = max(width, QWEN_MIN_SIDE), max(height, QWEN_MIN_SIDE)
    factor = proc.patch_size * proc.merge_size
    h, w = smart_resize(height, width, factor, proc.min_pixels, proc.max_pixels)
    return (h // factor) * (w // factor)


def _anyres_tokens(width: int, height: int, proc: VisionProcessor) -> int:
    """LLaVA-NeXT: the best-fitting grid (llava select_best_resolution), tiles + base image, a newline per row."""
    best, best_eff, best_waste = proc.grid_pinpoints[0], -1, math.inf
    for gw, gh in proc.grid_pinpoints:
        scale = min(gw / width, gh / height)
        eff = min(int(width * scale) * int(height * scale), width * height)
        waste = gw * gh - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (gw, gh), eff, waste
    tiles = (best[0] // proc.tile_size) * (best[1] // proc.tile_size)
    side = proc.tile_size // proc.patch_size
    rows = (best[1] // proc.tile_size) * side
    return (tiles + 1) * proc.tokens_per_tile + rows


def video_tokens(frames: int, width: int, height: int, proc: VisionProcessor, *,
                 max_pixels: int | None = LLAMAFACTORY_VIDEO_MAX_PIXELS,
                 min_pixels: int | None = LLAMAFACTORY_VIDEO_MIN_PIXELS) -> int:
    """LM tokens of a video: frames (an odd count padded to even) x per-frame tokens / temporal patch (Qwen2-VL: 2)."""
    if proc.rule != "native":
        return frames * image_tokens(width, height, proc)
    frames += frames % proc.temporal_patch_size
    per_frame = image_tokens(width, height, proc, max_pixels=max_pixels, min_pixels=min_pixels)
    return frames // proc.temporal_patch_size * per_frame


def worst_image_side(max_pixels: int) -> int:
    """The side of a square image at the cap: the stated size of a missing image (it is counted at the cap)."""
    return int(math.isqrt(max_pixels))
