"""Feature creation: labels decode back to the answer text; windows, CLS labels and context ranges."""
import pytest

from common.data import SMOKE_TRAIN_FILE, SMOKE_VALIDATION_FILE, align_training_answers, load_squad_file
from common.preprocess import prepare_train_features, prepare_validation_features
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
    encoded = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
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
                                           doc_stride=32)
    assert len(features["input_ids"]) > len(examples)  # 96 tokens force several windows per context
    assert set(features["example_id"]) == {e["id"] for e in examples}
    for i in range(len(features["input_ids"])):
        sequence_ids = features.sequence_ids(i)
        start, end = features["context_start"][i], features["context_end"][i]
        assert sequence_ids[start] == 1 and sequence_ids[end] == 1
        assert sequence_ids[start - 1] != 1 and (end + 1 == len(sequence_ids) or sequence_ids[end + 1] != 1)
        assert features["length"][i] == len(features["input_ids"][i])
