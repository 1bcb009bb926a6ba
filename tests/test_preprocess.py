"""Feature creation: labels decode back to the answer text; windows, CLS labels and context ranges."""
import pytest

from common.data import SMOKE_TRAIN_FILE, SMOKE_VALIDATION_FILE, align_training_answers, load_squad_file
from common.preprocess import count_cut_questions, cut_questions, prepare_train_features, prepare_validation_features
from conftest import REAL_SAMPLE


def as_columns(examples):
    return {key: [e[key] for e in examples] for key in examples[0]}


def train_features(examples, tokenizer, max_seq_length, doc_stride):
    return prepare_train_features(as_columns(examples), tokenizer=tokenizer, max_seq_length=max_seq_length,
                                  doc_stride=doc_stride)


def assert_round_trip(examples, tokenizer, *, max_seq_length, doc_stride):
    """Every labelled window decodes, through its offsets, to exactly the aligned answer text."""
    by_id = {e["id"]: e for e in examples}
    features = train_features(examples, tokenizer, max_seq_length, doc_stride)
    # Offsets are popped by prepare_train_features; recompute them the same way to decode.
    questions, _ = cut_questions([e["question"].lstrip() for e in examples], tokenizer, max_query_length=64)
    encoded = tokenizer(questions, [e["context"] for e in examples],
                        truncation="only_second", max_length=max_seq_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    answered = set()
    for i, (start, end) in enumerate(zip(features["start_positions"], features["end_positions"])):
        example = by_id[features["example_id"][i]]
        assert len(features["input_ids"][i]) <= max_seq_length
        if start == 0 and end == 0:
            continue  # this window does not hold the answer: labelled with CLS
        assert encoded.sequence_ids(i)[start] == 1 and encoded.sequence_ids(i)[end] == 1
        offsets = encoded["offset_mapping"][i]
        decoded = example["context"][offsets[start][0]: offsets[end][1]]
        assert decoded == example["answers"]["text"][0], example["id"]
        answered.add(example["id"])
    return features, answered


def test_round_trip_on_shipped_data(smoke_tokenizer):
    examples, stats = align_training_answers(load_squad_file(SMOKE_TRAIN_FILE))
    assert stats.dropped == 0 and stats.relocated == 0  # the shipped data is clean
    features, answered = assert_round_trip(examples, smoke_tokenizer, max_seq_length=128, doc_stride=48)
    # Every answer fits in some window: each question has at least one labelled window.
    assert answered == {e["id"] for e in examples}
    assert len(features["input_ids"]) > len(examples)  # long contexts gave overflow windows


def test_round_trip_on_real_sample_with_bertimbau_vocab(real_sample, bertimbau_tokenizer):
    examples, stats = align_training_answers(load_squad_file(real_sample))
    assert stats.relocated_ignoring_case > 0 and stats.dropped > 0  # the sample's defects (docs/data.md)
    features, answered = assert_round_trip(examples, bertimbau_tokenizer, max_seq_length=384, doc_stride=128)
    assert len(answered) >= 0.99 * len(examples)
    if real_sample == REAL_SAMPLE:
        # Measured on the sample file (docs/data.md): 1.064 windows per question at 384/128, all 3,286 questions.
        all_features = train_features(load_squad_file(real_sample), bertimbau_tokenizer, 384, 128)
        assert len(all_features["input_ids"]) / 3286 == pytest.approx(1.064, abs=0.002)


def test_validation_features_keep_context_range_and_ids(smoke_tokenizer):
    examples = load_squad_file(SMOKE_VALIDATION_FILE)[:20]
    features = prepare_validation_features(as_columns(examples), tokenizer=smoke_tokenizer, max_seq_length=96,
                                           doc_stride=32, max_query_length=32)
    assert len(features["input_ids"]) > len(examples)  # 96 tokens force several windows per context
    assert set(features["example_id"]) == {e["id"] for e in examples}
    for i in range(len(features["input_ids"])):
        sequence_ids = features.sequence_ids(i)
        start, end = features["context_start"][i], features["context_end"][i]
        assert sequence_ids[start] == 1 and sequence_ids[end] == 1
        assert sequence_ids[start - 1] != 1 and (end + 1 == len(sequence_ids) or sequence_ids[end + 1] != 1)
        assert features["length"][i] == len(features["input_ids"][i])


# ----------------------------------------------------------------------------------------------------------
# Questions too long for the window (issue: a 77-token question made the tokenizer panic in a smoke run)


def question_of(tokens: int) -> str:
    """A question of exactly `tokens` tokens in the smoke vocabulary ("que" and "?" are one token each)."""
    return " ".join(["que"] * (tokens - 1)) + "?"


def long_context(smoke_tokenizer):
    context = load_squad_file(SMOKE_TRAIN_FILE)[0]["context"]
    assert len(smoke_tokenizer(context)["input_ids"]) > 96  # needs several windows at 96 tokens
    return context


@pytest.mark.parametrize("question_tokens, failure", [
    (60, None),  # 96 - 60 - 3 = 33 context tokens per window > doc_stride 32
    (61, "`stride` must be strictly less than `max_len=32`"),  # 32 = doc_stride: Rust panic
    (92, "`stride` must be strictly less than `max_len=1`"),
    (93, "Sequence to truncate too short"),  # no context token left: an ordinary Exception
])
def test_window_room_check_refuses_exactly_what_the_tokenizer_cannot_do(smoke_tokenizer, question_tokens, failure):
    """The bound of check_window_room is the tokenizer's own: context tokens per window must exceed doc_stride."""
    from common.config import ConfigError, check_window_room

    def tokenize():
        return smoke_tokenizer(question_of(question_tokens), long_context(smoke_tokenizer), truncation="only_second",
                               max_length=96, stride=32, return_overflowing_tokens=True)

    settings = dict(max_seq_length=96, doc_stride=32, max_query_length=question_tokens)
    if failure is None:
        assert len(tokenize()["input_ids"]) > 1
        check_window_room(**settings)
        return
    with pytest.raises(BaseException, match=failure) as info:  # PanicException is not an Exception
        tokenize()
    assert info.type.__name__ in ("PanicException", "Exception")
    with pytest.raises(ConfigError, match="--max_seq_length 96, --doc_stride 32 and --max_query_length"):
        check_window_room(**settings)


def test_long_questions_are_cut_to_max_query_length(smoke_tokenizer):
    long, short = "  " + question_of(77), "Qual é a capital?"
    kept, cut = cut_questions([long.lstrip(), short], smoke_tokenizer, max_query_length=64)
    assert cut == [True, False] and kept[1] == short
    assert long.lstrip().startswith(kept[0])
    assert len(smoke_tokenizer(kept[0], add_special_tokens=False)["input_ids"]) == 64

    examples = [{**load_squad_file(SMOKE_TRAIN_FILE)[0], "id": "long", "question": long},
                *load_squad_file(SMOKE_TRAIN_FILE)[1:3]]
    _, answered = assert_round_trip(examples, smoke_tokenizer, max_seq_length=128, doc_stride=48)
    assert answered == {e["id"] for e in examples}  # the cut question's answer is still labelled exactly
    columns = as_columns(examples)
    for prepare in (prepare_train_features, prepare_validation_features):
        features = prepare(columns, tokenizer=smoke_tokenizer, max_seq_length=128, doc_stride=48)
        for i, eid in enumerate(features["example_id"]):
            question_tokens = features["token_type_ids"][i].count(0) - 2  # [CLS] and the first [SEP]
            question = next(e["question"] for e in examples if e["id"] == eid)
            whole = len(smoke_tokenizer(question, add_special_tokens=False)["input_ids"])
            assert question_tokens == (64 if eid == "long" else whole)
            assert features["question_cut"][i] == (eid == "long")
            assert len(features["input_ids"][i]) <= 128
        assert count_cut_questions(features) == 1


@pytest.mark.parametrize("question_tokens, flags", [
    (77, []),  # the smoke preset's 128/48: 77 tokens left 48 context tokens = doc_stride, and the tokenizer panicked
    (63, ["--max_seq_length", "96", "--doc_stride", "32", "--max_query_length", "60"]),  # 96/32 panicked at 63
    (90, ["--max_seq_length", "128", "--doc_stride", "48"]),  # 128/48 with 90: "Sequence to truncate too short"
], ids=["smoke_77", "96_32_63", "128_48_90"])
def test_runs_with_a_question_longer_than_the_window_allows_finish(question_tokens, flags, tmp_path, capsys):
    import csv
    import json

    from common.run import main

    examples = load_squad_file(SMOKE_TRAIN_FILE)[:8]
    examples[3] = {**examples[3], "question": question_of(question_tokens)}
    data = tmp_path / "long_question.json"
    data.write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
    results = tmp_path / "runs.csv"
    status = main(model_size="base", method="lora", argv=[
        "--smoke", "--train_file", str(data), "--validation_file", str(data), "--num_epochs", "1",
        "--results_file", str(results), "--output_dir", str(tmp_path / "out"), *flags])
    stderr = capsys.readouterr().err
    assert status == 0, stderr[-3000:]
    limit = int(flags[flags.index("--max_query_length") + 1]) if "--max_query_length" in flags else 64
    assert f"questions cut to --max_query_length {limit} tokens: 1 training, 1 evaluation" in stderr
    with open(results, newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["status"] == "ok" and row["eval_examples"] == "8" and float(row["f1"]) >= 0


def test_training_labels_cover_exactly_the_answer_text_without_its_white_space(smoke_tokenizer):
    """' A cidade' was labelled '. A cidade' and 'nasceu em ' 'nasceu em 1825': a white-space edge lies between
    tokens, so the label took the neighbouring token too. Trimmed by align_training_answers, the label is exact."""
    context = "Dom Pedro II nasceu em 1825. A cidade cresceu depois disso."
    raw = [{"id": qid, "title": "", "context": context, "question": "O que aconteceu?",
            "answers": {"text": [text], "answer_start": [start]}}
           for qid, text, start in (("leading", " A cidade", 28), ("trailing", "nasceu em ", 13))]

    def labelled_text(examples):
        features = train_features(examples, smoke_tokenizer, 128, 48)
        encoded = smoke_tokenizer([e["question"] for e in examples], [context] * len(examples),
                                  return_offsets_mapping=True)
        return {eid: context[encoded["offset_mapping"][i][s][0]: encoded["offset_mapping"][i][e][1]]
                for i, (eid, s, e) in enumerate(zip(features["example_id"], features["start_positions"],
                                                    features["end_positions"]))}

    untrimmed = labelled_text(raw)
    assert untrimmed["leading"] == ". A cidade" and untrimmed["trailing"].startswith("nasceu em 18")  # the defect
    aligned, stats = align_training_answers(raw)
    assert stats.trimmed == 2
    assert labelled_text(aligned) == {"leading": "A cidade", "trailing": "nasceu em"}
