"""kb/cases.py: safe YAML, schema validation and clear one-line errors naming the file and the field."""

from __future__ import annotations

import pytest

from ask_oom.kb.cases import CaseError, cases_hash, load_cases
from ask_oom.tools.errors import InputError

GOOD = """id: {id}
title: Example case
source: https://example.org/issue/1
model: {{name: Qwen/Qwen2.5-7B, size: 7B}}
framework: llamafactory
symptom: {{error_kind: cuda_oom}}
root_causes: [{label}]
"""


def _write(folder, name, text):
    (folder / name).write_text(text, encoding="utf-8")


def test_loads_valid_cases_sorted(tmp_path):
    _write(tmp_path, "b-case.yaml", GOOD.format(id="b-case", label="batch_too_large"))
    _write(tmp_path, "a-case.yaml", GOOD.format(id="a-case", label="seq_len_too_long"))
    (tmp_path / "notes.txt").write_text("not a case")
    cases = load_cases(tmp_path)
    assert [c.id for c in cases] == ["a-case", "b-case"]


@pytest.mark.parametrize("text,needle", [
    ("id: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    (GOOD.format(id="x-case", label="no_such_label"), "root_causes"),
    (GOOD.format(id="x-case", label="batch_too_large").replace("source: https://example.org/issue/1\n", ""), "source"),
    ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
])
def test_invalid_case_is_one_line_error_naming_the_file(tmp_path, text, needle):
    _write(tmp_path, "x-case.yaml", text)
    with pytest.raises(CaseError) as err:
        load_cases(tmp_path)
    msg = str(err.value)
    assert msg.startswith("x-case.yaml") and needle in msg and "\n" not in msg
    assert isinstance(err.value, InputError)  # the CLI maps it to exit code 2


def test_id_must_match_file_name_and_be_unique(tmp_path):
    _write(tmp_path, "one-case.yaml", GOOD.format(id="other-id", label="batch_too_large"))
    with pytest.raises(CaseError, match="must match the file name"):
        load_cases(tmp_path)


def test_oversized_case_file_is_refused(tmp_path):
    _write(tmp_path, "big-case.yaml", GOOD.format(id="big-case", label="batch_too_large") + "# " + "x" * 300_000)
    with pytest.raises(CaseError, match="larger than"):
        load_cases(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(CaseError, match="no case folder"):
        load_cases(tmp_path / "missing")


def test_content_hash_follows_the_files(tmp_path):
    _write(tmp_path, "a-case.yaml", GOOD.format(id="a-case", label="seq_len_too_long"))
    h1 = cases_hash(tmp_path)
    assert cases_hash(tmp_path) == h1
    _write(tmp_path, "a-case.yaml", GOOD.format(id="a-case", label="batch_too_large"))
    assert cases_hash(tmp_path) != h1


def test_packaged_cases_load():
    cases = load_cases()
    assert len(cases) >= 5 and len({c.id for c in cases}) == len(cases)
