"""Which attention kernel a run used, as its log says it: LLaMA-Factory's "Using vanilla attention implementation."
/ "Using torch SDPA ..." / "Using FlashAttention-2 ...", argument dumps (attn_implementation=eager,
flash_attn: fa2, use_flash_attention_2=True), and "FlashAttention2 is not installed" warnings.

The kernel decides whether attention scores are materialised (eager: O(seq^2) per head) or not (SDPA/flash).
"""

from __future__ import annotations

import re

# Normalised names (transformers' attn_implementation values, plus xformers and eager_or_sdpa).
_ALIASES = {
    "eager": "eager", "vanilla": "eager", "disabled": "eager", "sdpa": "sdpa", "torch sdpa": "sdpa",
    "flash_attention_2": "flash_attention_2", "fa2": "flash_attention_2", "flashattention-2": "flash_attention_2",
    "flashattention2": "flash_attention_2", "flash_attention_3": "flash_attention_3", "fa3": "flash_attention_3",
    "flashattention-3": "flash_attention_3", "flex_attention": "flex_attention", "xformers": "xformers",
}
# What the program says it uses: LLaMA-Factory (model/model_utils/attention.py) "Using {vanilla attention
# implementation | torch SDPA | FlashAttention-2} for faster training and inference."; vLLM "Using Flash Attention
# backend." / "Using XFormers backend." / "Using Torch SDPA backend."
_USING: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\bUsing vanilla attention\b", re.IGNORECASE), "eager"),
    (re.compile(r"\bUsing (?:torch )?SDPA\b", re.IGNORECASE), "sdpa"),
    (re.compile(r"\bUsing Flash ?Attention-?3\b", re.IGNORECASE), "flash_attention_3"),
    (re.compile(r"\bUsing Flash ?Attention(?:-?2)?\b", re.IGNORECASE), "flash_attention_2"),
    (re.compile(r"\bUsing xformers\b", re.IGNORECASE), "xformers"),
    (re.compile(r"\bUsing flex ?attention\b", re.IGNORECASE), "flex_attention"),
]
# argument dumps and config prints: attn_implementation=eager, "attn_implementation": "sdpa", flash_attn: fa2
_ARG = re.compile(r"""\b(_?attn_implementation|flash_attn)['"]?\s{0,2}[=:]\s{0,3}['"]?([\w-]{2,24})""")
_FA2_FLAG = re.compile(r"\buse_flash_attention_2['\"]?\s{0,2}[=:]\s{0,2}(True|true|1)\b")
# axolotl config keys (printed with the config): flash_attention / sdp_attention / xformers_attention / eager_attention
_AXOLOTL = re.compile(r"\b(flash_attention|sdp_attention|xformers_attention|eager_attention)['\"]?\s{0,2}[=:]\s{0,2}"
                      r"(true|True)\b")
_AXOLOTL_NAMES = {"flash_attention": "flash_attention_2", "sdp_attention": "sdpa", "xformers_attention": "xformers",
                  "eager_attention": "eager"}
# unsloth banner: "Bfloat16 = TRUE. FA [Xformers = 0.0.27.post2. FA2 = False]" (FA2 off: its xformers path runs)
_UNSLOTH_FA = re.compile(r"FA \[Xformers = ([^.\]\s]{1,10})[^\]]{0,40}FA2 = (True|False)\]")
# flash-attn requested but missing: the library default (SDPA or eager) runs instead
_MISSING = re.compile(r"flash[-_ ]?attn\w{0,3}|flash ?attention[-_ ]?2?", re.IGNORECASE)

STRONG, ARGUMENT, WEAK = 3, 2, 1  # what the program says it did > what it was asked to do > what was unavailable


def find_attention(line: str, low: str) -> tuple[str, int] | None:
    """(attn_implementation, strength) one line shows, or None. `low` is line.lower()."""
    if "using " in low:
        for pattern, name in _USING:
            if pattern.search(line):
                return name, STRONG
    if "attn_implementation" in low or "flash_attn" in low:
        m = _ARG.search(line)
        if m:
            name = _ALIASES.get(m.group(2).lower())
            if name:
                return name, ARGUMENT
    if "use_flash_attention_2" in low and _FA2_FLAG.search(line):
        return "flash_attention_2", ARGUMENT
    if "_attention" in low:
        m = _AXOLOTL.search(line)
        if m:
            return _AXOLOTL_NAMES[m.group(1)], ARGUMENT
    if "fa2 = " in low:
        m = _UNSLOTH_FA.search(line)
        if m:
            if m.group(2) == "True":
                return "flash_attention_2", STRONG
            if m.group(1).lower() != "none":
                return "xformers", STRONG
    if "not installed" in low or "no module named 'flash_attn'" in low:
        if _MISSING.search(line) and "xformers" not in low:
            return "eager_or_sdpa", WEAK
    return None
