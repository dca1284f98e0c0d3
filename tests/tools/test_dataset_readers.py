"""Dataset readers: JSON, JSONL, Parquet, LLaMA-Factory dataset_info.json directories (alpaca / sharegpt, images)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ask_oom.tools.dataset import profile_dataset
from ask_oom.tools.dataset.readers import ReadStats, read_samples
from ask_oom.tools.errors import InputError


def _read(path, **kw):
    stats = ReadStats()
    return list(read_samples(path, stats, **kw)), stats


def test_json_list_alpaca_with_history_and_system(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([
        {"id": 7, "instruction": "Say hi", "input": "to Bob", "output": "Hi Bob", "system": "be kind",
         "history": [["q1", "a1"], ["q2", "a2"]]},
        {"instruction": "second", "output": "two"},
    ]))
    samples, stats = _read(f)
    assert [s.index for s in samples] == [0, 1]
    first = samples[0]
    assert first.id == "7"
    assert first.text == "be kind\nq1\na1\nq2\na2\nSay hi\nto Bob\nHi Bob"
    assert first.turns == 1 + 4 + 2  # system, two history pairs, the prompt and the answer
    assert samples[1].id is None and samples[1].turns == 2
    assert stats.bad_records == 0


def test_truncated_json_is_one_clear_error(tmp_path):
    f = tmp_path / "cut.json"
    f.write_text(json.dumps([{"instruction": "x", "output": "y"}] * 3)[:-7])
    with pytest.raises(InputError, match="not valid JSON.*truncated"):
        _read(f)


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path):
    f = tmp_path / "lines.json"
    f.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    samples, _ = _read(f)
    assert [s.text for s in samples] == ["a\nb", "c\nd"]


def test_jsonl_bad_lines_are_counted_not_fatal(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "broken\n\n[1, 2]\n{"instruction": "c", "output": "d"}\n')
    samples, stats = _read(f)
    assert len(samples) == 2
    assert stats.bad_records == 2 and stats.records == 4
    assert any("line 2" in b for b in stats.bad_lines)
    prof = profile_dataset(f)
    assert prof.samples == 2 and prof.bad_records == 2
    assert any("could not be used" in n for n in prof.notes)


def test_jsonl_all_bad_is_an_error(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text("{nope\n{also nope\n")
    with pytest.raises(InputError, match="all 2 records are malformed"):
        _read(f)


def test_parquet_reads_only_needed_columns_and_embedded_images(tmp_path, monkeypatch):
    asked = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("columns"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    buf = io.BytesIO()
    Image.new("RGB", (321, 123)).save(buf, format="PNG")
    table = pa.table({
        "messages": [[{"role": "user", "content": "<image>what is it"}, {"role": "assistant", "content": "a box"}]] * 3,
        "images": [[{"bytes": buf.getvalue(), "path": None}]] * 3,
        "huge_unused": ["x" * 1000] * 3,
    })
    f = tmp_path / "d.parquet"
    pq.write_table(table, f)
    samples, _ = _read(f)
    assert len(samples) == 3
    assert samples[0].text == "what is it\na box"  # <image> placeholder removed: it becomes the image tokens
    assert isinstance(samples[0].images[0], bytes)
    assert asked == [["images", "messages"]]  # huge_unused is never read
    prof = profile_dataset(f, model_family="qwen2_vl")
    assert prof.worst[0].image_sizes == [(321, 123)]
    assert prof.images_missing == 0


def _lf_dir(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (800, 600)).save(tmp_path / "img" / "a.png")
    (tmp_path / "alp.json").write_text(json.dumps([
        {"q": "describe", "a": "a cat", "pics": ["img/a.png"]},
        {"q": "again", "a": "a dog", "pics": []},
    ]))
    with (tmp_path / "sg.jsonl").open("w") as fh:
        fh.write(json.dumps({"uid": "s1", "sys": "sys prompt", "msgs": [
            {"role": "user", "content": "<image><video>look"}, {"role": "assistant", "content": "ok"}],
            "images": ["img/a.png"], "videos": [["img/a.png", "img/a.png", "img/a.png"]]}) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "alp": {"file_name": "alp.json", "columns": {"prompt": "q", "response": "a", "images": "pics"}},
        "sg": {"file_name": "sg.jsonl", "formatting": "sharegpt",
               "columns": {"messages": "msgs", "system": "sys", "images": "images", "videos": "videos"},
               "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
        "remote": {"hf_hub_url": "someone/data"},
    }))
    return tmp_path


def test_llamafactory_dir_alpaca_and_sharegpt_with_images(tmp_path):
    root = _lf_dir(tmp_path)
    samples, stats = _read(root)
    assert stats.datasets == ["alp", "sg"]
    assert any("remote" in n and "not profiled" in n for n in stats.notes)
    assert [s.source for s in samples] == ["alp", "alp", "sg"]
    assert samples[0].images == ("img/a.png",) and samples[1].images == ()
    sg = samples[2]
    assert sg.id == "s1" and sg.text == "sys prompt\nlook\nok" and sg.turns == 3
    assert sg.videos == (("img/a.png",) * 3,)
    assert sg.media_dir == str(root)


def test_dataset_names_select_entries(tmp_path):
    root = _lf_dir(tmp_path)
    samples, stats = _read(root, dataset_names="sg")
    assert stats.datasets == ["sg"] and len(samples) == 1
    with pytest.raises(InputError, match="'nope' is not in"):
        _read(root, dataset_names=["alp", "nope"])


def test_missing_file_and_bad_formatting_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        _read(tmp_path / "none.jsonl")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"x": {"file_name": "x.json", "formatting": "openai"}}))
    with pytest.raises(InputError, match="formatting 'openai'"):
        _read(tmp_path)
