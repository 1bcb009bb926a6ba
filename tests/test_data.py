"""Loading SQuAD data in its three layouts, answer re-location on the real sample, and clear errors."""
import json

import pytest

from common.data import (
    SMOKE_TRAIN_FILE, SMOKE_VALIDATION_FILE, DataError, align_training_answers, load_squad_file,
)
from conftest import REAL_SAMPLE

NESTED = {"version": "v1.1", "data": [{"title": "Lisboa", "paragraphs": [{
    "context": "Lisboa é a capital de Portugal.",
    "qas": [{"id": "q1", "question": "Qual é a capital?", "answers": [{"text": "Lisboa", "answer_start": 0}]}],
}]}]}
FLAT = [{"id": "q1", "title": "Lisboa", "context": "Lisboa é a capital de Portugal.", "question": "Qual é a capital?",
         "answers": {"text": ["Lisboa"], "answer_start": [0]}}]


@pytest.mark.parametrize("name, content", [
    ("nested.json", json.dumps(NESTED)),
    ("flat.json", json.dumps(FLAT)),
    ("flat_data.json", json.dumps({"data": FLAT})),
    ("flat.jsonl", "\n".join(json.dumps(r) for r in FLAT) + "\n"),
])
def test_layouts_load_to_the_same_examples(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert load_squad_file(path) == FLAT


def test_shipped_data_is_clean_and_sized_as_promised():
    train, validation = load_squad_file(SMOKE_TRAIN_FILE), load_squad_file(SMOKE_VALIDATION_FILE)
    assert len(train) + len(validation) >= 150
    paragraphs = {e["context"] for e in train} | {e["context"] for e in validation}
    assert len(paragraphs) >= 40
    assert not {e["title"] for e in train} & {e["title"] for e in validation}
    for example in train + validation:
        for text, start in zip(example["answers"]["text"], example["answers"]["answer_start"]):
            assert example["context"][start: start + len(text)] == text


def test_real_sample_alignment_counts(real_sample):
    examples = load_squad_file(real_sample)
    aligned, stats = align_training_answers(examples)
    assert stats.kept + stats.relocated + stats.relocated_ignoring_case + stats.dropped == len(examples)
    assert len(aligned) == len(examples) - stats.dropped
    assert stats.relocated_ignoring_case > 0 and stats.dropped > 0  # the sample's known defects
    if real_sample == REAL_SAMPLE:  # the numbers measured on the sample file (docs/data.md)
        # 1,176 answers are not at their answer_start; 198 occur with other letter case, 978 nowhere.
        # Whole-word matching also rejects the 62 answers recorded inside a longer word ("o edifício" in
        # "do edifício"); the few of those that occur as whole words elsewhere are re-located.
        assert len(examples) == 3286
        assert (stats.kept, stats.relocated, stats.relocated_ignoring_case, stats.dropped) == (2048, 9, 187, 1042)
    for example in aligned:
        text, start = example["answers"]["text"][0], example["answers"]["answer_start"][0]
        assert example["context"][start: start + len(text)] == text


def test_relocation_prefers_the_nearest_whole_word_and_ignores_case_last():
    context = "O observador viu o observador. Observadores."
    example = {"id": "x", "title": "", "context": context, "question": "q?",
               "answers": {"text": ["o observador"], "answer_start": [25]}}
    [aligned], stats = align_training_answers([example])
    assert aligned["answers"] == {"text": ["o observador"], "answer_start": [17]} and stats.relocated == 1
    example["answers"] = {"text": ["OBSERVADOR VIU"], "answer_start": [0]}
    [aligned], stats = align_training_answers([example])
    assert aligned["answers"] == {"text": ["observador viu"], "answer_start": [2]}
    assert stats.relocated_ignoring_case == 1


@pytest.mark.parametrize("content, message", [
    (b"", "file is empty"),
    (b"\xff\xfe{", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (json.dumps({"version": "v1.1"}).encode(), "must have a 'data' list"),
    (json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}).encode(), "missing field 'context'"),
    (json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q",
                "answers": [{"text": "abc", "answer_start": "0"}]}]}]}]}).encode(), "'answer_start' must be int"),
    (json.dumps(FLAT + FLAT).encode(), "duplicate id"),
    (json.dumps([{**FLAT[0], "answers": {"text": [], "answer_start": []}}]).encode(), "SQuAD v1.1"),
    (json.dumps([{**FLAT[0], "is_impossible": True}]).encode(), "SQuAD v2"),
    (json.dumps([{**FLAT[0], "answers": {"text": ["x"], "answer_start": [500]}}]).encode(), "outside the context"),
    (json.dumps([{**FLAT[0], "question": "  "}]).encode(), "empty question"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_squad_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_squad_file(tmp_path / "nope.json")


EDGE_CONTEXT = "Dom Pedro II nasceu em 1825. A cidade cresceu depois disso."


@pytest.mark.parametrize("text, start, trimmed_text, trimmed_start", [
    (" A cidade", 28, "A cidade", 29),
    ("nasceu em ", 13, "nasceu em", 13),
    (" 1825. ", 22, "1825.", 23),
    ("Dom Pedro", 0, "Dom Pedro", 0),
])
def test_answer_edges_are_trimmed_and_counted(text, start, trimmed_text, trimmed_start):
    assert EDGE_CONTEXT[start: start + len(text)] == text  # the gold offsets are right, only the edges are wide
    example = {"id": "x", "title": "", "context": EDGE_CONTEXT, "question": "q?",
               "answers": {"text": [text], "answer_start": [start]}}
    [aligned], stats = align_training_answers([example])
    assert aligned["answers"] == {"text": [trimmed_text], "answer_start": [trimmed_start]}
    assert stats.kept == 1 and stats.trimmed == (text != trimmed_text)
    assert f"{stats.trimmed} had white space around their text, trimmed" in stats.summary()
