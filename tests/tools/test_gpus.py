"""GPU names as people write them resolve to the memory torch reports (tools/gpus.py)."""

from __future__ import annotations

import pytest

from ask_oom.tools.gpus import REPORTED_SHARE, lookup_gpu
from ask_oom.tools.units import GiB


@pytest.mark.parametrize("name, card, gib", [
    ("A100 80GB", "A100-80GB", 79.15), ("A100-SXM4-40GB", "A100-40GB", 39.39), ("V100 32GB", "V100-32GB", 31.74),
    ("A10G 24GB", "A10-24GB", 22.19),          # the "10g" of the model name is no size
    ("a10g", "A10-24GB", 22.19), ("RTX 3080", "RTX-3080-10GB", 9.77),
])
def test_catalogued_cards_and_their_sized_variants(name, card, gib):
    spec = lookup_gpu(name)
    assert spec is not None and spec.name == card and abs(spec.memory_bytes / GiB - gib) < 0.01


def test_a_size_the_catalogue_does_not_sell_is_the_cards_memory_as_written():
    """An RTX 3080 16GB (a laptop part) is not the catalogued 10 GB desktop card: its size as written, at the share
    of the nominal size the catalogued 3080 reports."""
    spec = lookup_gpu("RTX 3080 16GB")
    assert spec is not None and spec.name == "RTX-3080-16GB"
    assert abs(spec.memory_bytes / GiB - 16 * 9.77 / 10) < 0.01


def test_an_unlisted_card_with_its_size_in_the_name_is_that_size():
    spec = lookup_gpu("RTX 4070 Ti 12GB")
    assert spec is not None and abs(spec.memory_bytes / GiB - 12 * REPORTED_SHARE) < 0.01
    assert 0.97 < REPORTED_SHARE < 1.0                       # what torch reports of a card's nominal size
    assert lookup_gpu("Qwen 7B 16GB") is None                # a size alone does not make a text a card
