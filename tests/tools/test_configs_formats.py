"""Per-format facts live beside the ConfigFormat Literal: every format has a code-fence language and a fixed-file
name, and a file name's extension reads the same wherever it is read."""

from __future__ import annotations

from typing import get_args

import pytest

from ask_oom.tools.configs.documents import detect_format
from ask_oom.tools.configs.schema import ConfigFormat, fence_language, fixed_file_name, format_from_filename
from ask_oom.tools.gpus import LARGEST_GPU_BYTES, larger_gpu, lookup_gpu
from ask_oom.tools.units import GiB


@pytest.mark.parametrize("fmt", get_args(ConfigFormat))
def test_every_format_has_a_fence_and_a_file_name(fmt):
    assert fence_language(fmt) in ("yaml", "json", "bash", "python")
    assert fixed_file_name(fmt).split(".")[-1] in ("yaml", "json", "sh", "py")


def test_unknown_formats_get_no_language_and_a_text_file():
    assert fence_language(None) == "" and fence_language("toml") == ""
    assert fixed_file_name(None) == "config.fixed.txt"


@pytest.mark.parametrize("name, fmt", [("train.yaml", "yaml"), ("A.YML", "yaml"), ("ds.json", "json"), ("run.sh", "shell"),
                                       ("run.bash", "shell"), ("train.py", "python"), ("config", None), ("notes.txt", None)])
def test_format_from_filename(name, fmt):
    assert format_from_filename(name) == fmt


@pytest.mark.parametrize("name", ["train.yaml", "ds.json", "run.sh", "train.py"])
def test_the_reader_trusts_the_extension(name):
    assert detect_format("a: 1\n", name) == format_from_filename(name)


def test_a_hardware_suggestion_is_the_smallest_card_that_holds_it():
    assert larger_gpu(70 * GiB) == lookup_gpu("A100 80GB")
    assert larger_gpu(100 * GiB) == lookup_gpu("H200")
    assert larger_gpu(LARGEST_GPU_BYTES) is not None and larger_gpu(LARGEST_GPU_BYTES + 1) is None
