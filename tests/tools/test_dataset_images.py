"""Image headers (no decoding) and image tokens per processor family (parameters as data)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from ask_oom.tools.dataset import profile_dataset
from ask_oom.tools.dataset.images import PROCESSORS, image_size, image_tokens, processor_for, video_tokens

QWEN = PROCESSORS["qwen2_vl"]


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp")])
def test_header_sizes(tmp_path, fmt, ext):
    p = tmp_path / f"x.{ext}"
    Image.new("RGB", (1234, 567), (10, 20, 30)).save(p, format=fmt)
    assert image_size(str(p)) == (1234, 567)
    assert image_size(p.name, tmp_path) == (1234, 567)  # relative to the media dir


def test_jpeg_with_exif_block_before_the_frame(tmp_path):
    im = Image.new("RGB", (640, 480))
    exif = Image.Exif()
    exif[0x010E] = "d" * 20000  # a big APP1 segment the SOF scan must skip
    p = tmp_path / "e.jpg"
    im.save(p, exif=exif.tobytes(), progressive=True)
    assert image_size(str(p)) == (640, 480)


def test_missing_and_non_image_files(tmp_path):
    assert image_size(str(tmp_path / "nope.png")) is None
    (tmp_path / "t.png").write_text("not an image")
    assert image_size(str(tmp_path / "t.png")) is None
    buf = io.BytesIO()
    Image.new("RGB", (99, 77)).save(buf, format="PNG")
    assert image_size(buf.getvalue()) == (99, 77)


def test_qwen2_vl_4000x3000_against_image_max_pixels():
    # LLaMA-Factory default cap 768*768: sqrt scale -> 886x665; smart_resize -> 896x672 -> 32 x 24 = 768 tokens
    assert image_tokens(4000, 3000, QWEN) == 768
    # cap 1024*1024: 1182x886 -> 1176x896 -> 42 x 32 = 1344 tokens
    assert image_tokens(4000, 3000, QWEN, max_pixels=1024 * 1024) == 1344
    # no framework cap: the processor's own max_pixels (12845056) keeps 4004x2996 -> 143 x 107 = 15301 tokens
    assert image_tokens(4000, 3000, QWEN, max_pixels=None) == 15301
    # tiny images are enlarged to the processor's min_pixels (56x56 -> 2x2 = 4 tokens)
    assert image_tokens(10, 10, QWEN, max_pixels=None, min_pixels=None) == 4


def test_llava_fixed_and_anyres():
    assert image_tokens(4000, 3000, PROCESSORS["llava"]) == 576
    # LLaVA-NeXT 672x672 grid: 4 tiles + base = 5 x 576, + 48 newline tokens (one per feature row)
    assert image_tokens(1000, 1000, PROCESSORS["llava_next"]) == 5 * 576 + 48
    # a wide image picks 1008x336: 3 tiles + base, 24 rows
    assert image_tokens(3000, 1000, PROCESSORS["llava_next"]) == 4 * 576 + 24


def test_video_tokens_temporal_patch():
    # 128 frames at 256x256 (LLaMA-Factory video_max_pixels): 252x252 -> 9x9 = 81 per frame, 2 frames per patch
    assert video_tokens(128, 256, 256, QWEN) == 64 * 81
    assert video_tokens(3, 256, 256, QWEN) == 2 * 81  # odd count padded to 4 frames


def test_family_lookup_is_data():
    assert processor_for("Qwen/Qwen2.5-VL-7B-Instruct").family == "qwen2_5_vl"
    assert processor_for("llava-hf/llava-v1.6-mistral-7b-hf").family == "llava_next"
    assert processor_for("llava-hf/llava-1.5-7b-hf").family == "llava"
    assert processor_for("meta-llama/Llama-3.1-8B") is None


def test_profile_counts_images_and_notes_missing(tmp_path):
    Image.new("RGB", (4000, 3000)).save(tmp_path / "big.jpg")
    rows = [{"conversations": [{"from": "human", "value": "<image>hi"}, {"from": "gpt", "value": "ok"}],
             "images": ["big.jpg"]},
            {"conversations": [{"from": "human", "value": "<image><image>hi"}, {"from": "gpt", "value": "ok"}],
             "images": ["big.jpg", "gone.png"]}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    prof = profile_dataset(tmp_path / "d.json", model_family="qwen2_vl")
    assert prof.media.min == 768
    # the missing image is counted at the cap: a 768x768 square -> 756x756 -> 27 x 27 = 729 tokens
    assert prof.media.max == 768 + 729
    assert prof.images_missing == 1 and any("gone.png" in n for n in prof.notes)
    capped = profile_dataset(tmp_path / "d.json", model_family="qwen2_vl", image_max_pixels=1024 * 1024)
    assert capped.media.min == 1344
