"""A real snapshot from torch's allocator: a tiny Llama training step recorded with _record_memory_history, an OOM
on purpose, dumped with _dump_snapshot and read back with load_snapshot (the only test of the real format)."""

from __future__ import annotations

import pytest
import torch

from ask_oom.tools.snapshot import load_snapshot, reconcile, render_markdown

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_real_snapshot_of_a_tiny_llama_step(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    model = transformers.LlamaForCausalLM(config)          # built on the CPU: no download
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    total = torch.cuda.get_device_properties(0).total_memory
    path = tmp_path / "rank0.pickle"
    torch.cuda.memory._record_memory_history(max_entries=100000)
    try:
        model = model.to("cuda")                            # weights: allocated under Module._apply
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(0, config.vocab_size, (2, 128), device="cuda")
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()                                          # optimizer states: torch.optim Adam._init_group
        del out
        with pytest.raises(torch.OutOfMemoryError):         # the history records an `oom` action
            torch.empty(2 * total, dtype=torch.uint8, device="cuda")
        torch.cuda.memory._dump_snapshot(str(path))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)

    summary = load_snapshot(path.read_bytes(), name=path.name, rank=0, device_total_bytes=total)
    assert summary.frames_recorded
    assert summary.at == "oom"
    assert summary.requested_bytes is not None and summary.requested_bytes >= 2 * total
    assert summary.device_free_bytes is not None and 0 <= summary.device_free_bytes <= total
    assert summary.held("weights") >= param_bytes
    assert summary.held("optimizer_states") >= 2 * param_bytes
    assert sum(c.bytes for c in summary.components) == summary.reserved_bytes
    assert summary.allocated_bytes <= summary.reserved_bytes
    assert summary.n_blocks > 0 and summary.top_sites
    md = render_markdown(reconcile([summary], None))
    assert "weights" in md
    print(summary.model_dump_json(indent=1, exclude={"allocator_settings"}))   # shows the real sites in -s runs
