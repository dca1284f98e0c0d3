"""The labelled reports' word model: a fit that reads a cause from words it learned from other reports, stored and
read back alike, the shipped file kept a fresh fit of kb/reports.json, and dev reports read by a model fitted
without their project (as the benchmark measures them)."""

from __future__ import annotations

import sys
from pathlib import Path

from ask_oom.kb.paste_embedding import load_report_embeddings
from ask_oom.kb.report_words import WordModel, fit, load_words, unseen_models
from ask_oom.kb.reports import load_reports

from .test_reports import _report   # one labelled report from a line of words, as the index tests build them

REPO = Path(__file__).resolve().parents[2]


REPORTS = [
    _report("1", "vllm serve kv cache gpu_memory_utilization out of memory", "generation_kv_cache", "vllm"),
    _report("2", "generate kv cache vllm max_model_len memory", "generation_kv_cache", "sglang"),
    _report("3", "deepspeed zero3 optimizer states full fine-tuning adam", "full_ft_model_states", "ds"),
    _report("4", "optimizer states adam full fine-tuning deepspeed zero2", "full_ft_model_states", "trainer"),
    _report("5", "evaluation logits accumulate preds memory evaluation", "eval_accumulation", "tf"),
    _report("6", "evaluation preds logits accumulate eval_accumulation_steps", "eval_accumulation", "axolotl"),
]


def test_a_paste_is_read_as_the_cause_its_words_were_settled_with_elsewhere():
    model = fit(REPORTS)
    assert model.labels == ["eval_accumulation", "full_ft_model_states", "generation_kv_cache"]
    reading = model.read("RuntimeError while vllm serve: not enough memory for the kv cache")
    assert max(reading.probabilities, key=reading.probabilities.get) == "generation_kv_cache"
    assert abs(sum(reading.probabilities.values()) - 1) < 1e-9 and reading.reports == 6
    # the words quoted for a cause are the paste's words that set it apart, strongest first; none from elsewhere
    assert "vllm" in reading.words["generation_kv_cache"] and len(reading.words["generation_kv_cache"]) <= 3
    assert not {"deepspeed", "adam"} & set(reading.words["generation_kv_cache"])
    assert "vllm" not in reading.words["full_ft_model_states"]
    # words no report shares read as the causes' base rates: no cause stands out
    flat = model.read("zzz qqq xyzzy").probabilities
    assert max(flat.values()) - min(flat.values()) < 0.05


def test_two_causes_are_read_as_one_logit_and_one_cause_is_no_model():
    two = fit(REPORTS[:4])
    assert two.labels == ["full_ft_model_states", "generation_kv_cache"]
    reading = two.read("adam optimizer states deepspeed").probabilities
    assert reading["full_ft_model_states"] > 0.5 > reading["generation_kv_cache"]
    assert fit(REPORTS[:2]) == WordModel() and WordModel().read("kv cache").probabilities == {}


def test_the_stored_model_reads_as_the_fitted_one(tmp_path):
    model = fit(REPORTS)
    model.dump(tmp_path / "words.json")
    back = WordModel.from_file(tmp_path / "words.json")
    assert back.labels == model.labels and back.reports == model.reports
    for r in REPORTS:
        a, b = model.read_terms(r.terms).probabilities, back.read_terms(r.terms).probabilities
        assert max(abs(a[k] - b[k]) for k in a) < 1e-6


def test_each_report_is_read_unseen_by_a_model_fitted_without_its_project():
    models = unseen_models(REPORTS, k=3)
    assert set(models) == {r.id for r in REPORTS}
    for r in REPORTS:
        # the reports one model reads are exactly those it was not fitted on (whole projects: one report each here)
        read_alike = [s for s in REPORTS if models[s.id] is models[r.id]]
        assert models[r.id].reports + len(read_alike) == len(REPORTS)
    assert len({id(m) for m in models.values()}) == 3


def test_the_shipped_model_is_a_fresh_fit_of_the_shipped_reports():
    sys.path.insert(0, str(REPO / "evals"))
    from build_reports import WORDS_TOLERANCE, words_differ

    index, embeddings = load_reports(), load_report_embeddings()
    assert set(embeddings) == {r.id for r in index.reports}
    read = embeddings if load_words().reads_embedding else None   # a fit of the shipped kind (build_reports.py)
    assert words_differ(load_words(), fit(index.reports, embeddings=read), index, read) <= WORDS_TOLERANCE, (
        "kb/report_words.json is stale: run python evals/build_reports.py")


# three causes whose reports share every word: only their pastes' embeddings (a direction each) tell them apart
_ALIKE = [_report(f"{label}{i}", "cuda out of memory tried to allocate", label, f"p{label}{i}")
          for label in ("batch_too_large", "eval_accumulation", "generation_kv_cache") for i in range(4)]
_DIRECTION = {"batch_too_large": 0, "eval_accumulation": 1, "generation_kv_cache": 2}


def _embedding(label: str, noise: int = 0) -> list[float]:
    vector = [0.0] * 8
    vector[_DIRECTION[label]] = 1.0
    vector[3 + noise % 5] = 0.3
    return vector


def test_the_embedding_is_read_beside_the_words_and_stored_with_them(tmp_path):
    embeddings = {r.id: _embedding(r.labels[0], i) for i, r in enumerate(_ALIKE)}
    model = fit(_ALIKE, embeddings=embeddings, scale=2.0)
    assert model.reads_embedding and model.embedding_scale == 2.0 and len(model.embedding) == 3
    paste = "cuda out of memory tried to allocate 2.00 GiB"
    for label in _DIRECTION:
        reading = model.read(paste, _embedding(label, 7)).probabilities
        assert max(reading, key=reading.get) == label and reading[label] > 0.5
    # without the embedding, the words alone: they are the same for every cause
    alone = model.read(paste).probabilities
    assert max(alone.values()) - min(alone.values()) < 0.05
    # stored and read back, the embedding's weights and scale come along
    model.dump(tmp_path / "words.json")
    back = WordModel.from_file(tmp_path / "words.json")
    e = _embedding("eval_accumulation", 2)
    a, b = model.read(paste, e).probabilities, back.read(paste, e).probabilities
    assert back.embedding_scale == 2.0 and max(abs(a[k] - b[k]) for k in a) < 1e-6
    # a model fitted on words alone reads no embedding (and ignores one given)
    words_only = fit(_ALIKE)
    assert not words_only.reads_embedding and words_only.read(paste, e) == words_only.read(paste)


def test_each_unseen_model_reads_the_embeddings_of_the_reports_it_was_fitted_on():
    embeddings = {r.id: _embedding(r.labels[0], i) for i, r in enumerate(_ALIKE)}
    models = unseen_models(_ALIKE, k=4, embeddings=embeddings)
    right = 0
    for r in _ALIKE:   # no report's own project in its model: its cause read from the others' embeddings
        reading = models[r.id].read_terms(r.terms, embeddings[r.id]).probabilities
        right += max(reading, key=reading.get) == r.labels[0]
    assert all(m.reads_embedding for m in models.values()) and right == len(_ALIKE)


def test_every_cause_a_thread_accepts_is_learned_from_its_words():
    """A thread that settled "the weights, or the load itself" teaches both: its words read as either."""
    both = [_report(str(i), "loading checkpoint shards from_pretrained device_map", "weights_exceed_gpu", f"p{i}")
            for i in range(3)]
    for r in both:
        r.labels.append("model_load_oom")
    reading = fit(both + REPORTS).read("from_pretrained loading checkpoint shards").probabilities
    ranked = sorted(reading, key=reading.get, reverse=True)
    assert set(ranked[:2]) == {"weights_exceed_gpu", "model_load_oom"}
    assert abs(reading["weights_exceed_gpu"] - reading["model_load_oom"]) < 0.05
