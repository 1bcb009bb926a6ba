"""Post-processing: hand-made logits with known answers, and the vectorized code against a plain loop."""
import numpy as np
import pytest

from common.postprocess import postprocess_qa_predictions

CONTEXT = "Lisboa é a capital de Portugal desde 1255."
# Token offsets of a made-up window: [CLS] question [SEP] context tokens [SEP]; (0, 0) for special tokens.
WORDS = [(0, 6), (7, 8), (9, 10), (11, 18), (19, 21), (22, 30), (31, 36), (37, 41), (41, 42)]
OFFSETS = [(0, 0), (0, 5), (6, 9), (0, 0)] + WORDS + [(0, 0)]  # tokens 1-2 are the question
CONTEXT_START, CONTEXT_END = 4, 4 + len(WORDS) - 1


def run_one(start, end, **kwargs):
    return postprocess_qa_predictions(
        example_ids=["q1"], contexts=[CONTEXT], feature_example_ids=["q1"],
        context_start=[CONTEXT_START], context_end=[CONTEXT_END], offset_mapping=[OFFSETS],
        start_logits=np.array([start], dtype=float), end_logits=np.array([end], dtype=float), **kwargs,
    )["q1"]


def logits_with(peaks: dict, length=len(OFFSETS), base=0.0):
    row = np.full(length, base)
    for index, value in peaks.items():
        row[index] = value
    return row


def test_picks_the_highest_scoring_span():
    # "Portugal" is token 9; "desde 1255" spans tokens 10-11.
    prediction = run_one(logits_with({9: 5.0, 10: 3.0}), logits_with({9: 4.0, 11: 6.0}))
    assert prediction["text"] == "Portugal desde 1255"  # 5 + 6 beats 5 + 4
    assert 0 < prediction["score"] <= 1


def test_never_answers_from_question_or_special_tokens():
    prediction = run_one(logits_with({1: 50.0, 0: 40.0, 4: 1.0}), logits_with({2: 50.0, 0: 40.0, 4: 1.0}))
    assert prediction["text"] == "Lisboa"


def test_respects_max_answer_length_and_order():
    start = logits_with({4: 10.0, 9: 6.0}, base=-50.0)
    end = logits_with({11: 10.0, 9: 8.0, 3: 20.0}, base=-50.0)  # token 3 is [SEP]: never an answer end
    assert run_one(start, end, max_answer_length=30)["text"] == "Lisboa é a capital de Portugal desde 1255"
    assert run_one(start, end, max_answer_length=3)["text"] == "Portugal desde 1255"
    assert run_one(start, end, max_answer_length=2)["text"] == "Portugal"


def test_no_valid_span_gives_empty_answer():
    start = logits_with({11: 10.0})
    end = logits_with({11: 10.0})
    assert run_one(start, end, max_answer_length=1)["text"] == "1255"
    only_late_starts = np.full(len(OFFSETS), -np.inf)
    only_late_starts[11] = 1.0
    only_early_ends = np.full(len(OFFSETS), -np.inf)
    only_early_ends[4] = 1.0
    assert run_one(only_late_starts, only_early_ends) == {"text": "", "score": 0.0}


def test_best_window_wins_across_windows_and_padding_is_ignored():
    # Two windows of the same example; the second is shorter and padded with -100 (as the Trainer pads).
    offsets_b = [(0, 0), (0, 5), (0, 0), (22, 30), (31, 36), (0, 0)]
    start = np.stack([logits_with({9: 2.0}), np.r_[logits_with({3: 9.0}, 6), [-100] * (len(OFFSETS) - 6)]])
    end = np.stack([logits_with({9: 2.0}), np.r_[logits_with({4: 9.0}, 6), [-100] * (len(OFFSETS) - 6)]])
    predictions = postprocess_qa_predictions(
        example_ids=["q1"], contexts=[CONTEXT], feature_example_ids=["q1", "q1"],
        context_start=[CONTEXT_START, 3], context_end=[CONTEXT_END, 4], offset_mapping=[OFFSETS, offsets_b],
        start_logits=start, end_logits=end,
    )
    assert predictions["q1"]["text"] == "Portugal desde"


def reference_loop(example_ids, contexts, feature_example_ids, context_start, context_end, offset_mapping,
                   start_logits, end_logits, n_best_size, max_answer_length):
    """The plain-Python rule, as in transformers' utils_qa.py, with n-best taken among context tokens."""
    best = {e: ("", -np.inf) for e in example_ids}
    position = {e: i for i, e in enumerate(example_ids)}
    for f, example_id in enumerate(feature_example_ids):
        context_tokens = range(context_start[f], context_end[f] + 1)
        starts = sorted(context_tokens, key=lambda i: -start_logits[f][i])[:n_best_size]
        ends = sorted(context_tokens, key=lambda i: -end_logits[f][i])[:n_best_size]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = start_logits[f][s] + end_logits[f][e]
                if score > best[example_id][1]:
                    text = contexts[position[example_id]][offset_mapping[f][s][0]: offset_mapping[f][e][1]]
                    best[example_id] = (text, score)
    return {e: text for e, (text, _) in best.items()}


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_equals_reference_loop_on_random_logits(seed):
    rng = np.random.default_rng(seed)
    example_ids, contexts, feature_ids, starts, ends, offsets = [], [], [], [], [], []
    length = 64
    for e in range(40):
        context = " ".join(f"w{e}_{i}" for i in range(80))
        example_ids.append(f"ex{e}")
        contexts.append(context)
        word_spans, pos = [], 0
        for word in context.split(" "):
            word_spans.append((pos, pos + len(word)))
            pos += len(word) + 1
        for window in range(rng.integers(1, 4)):  # 1-3 windows per example
            question_len = int(rng.integers(3, 10))
            n_context = int(rng.integers(5, length - question_len - 3))
            first_word = int(rng.integers(0, len(word_spans) - n_context))
            feature_offsets = [(0, 0)] + [(0, 3)] * question_len + [(0, 0)] + word_spans[first_word: first_word + n_context] + [(0, 0)]
            feature_ids.append(f"ex{e}")
            starts.append(question_len + 2)
            ends.append(question_len + 1 + n_context)
            offsets.append(feature_offsets)
    start_logits = rng.normal(size=(len(feature_ids), length))
    end_logits = rng.normal(size=(len(feature_ids), length))
    kwargs = dict(example_ids=example_ids, contexts=contexts, feature_example_ids=feature_ids, context_start=starts,
                  context_end=ends, offset_mapping=offsets, start_logits=start_logits, end_logits=end_logits,
                  n_best_size=20, max_answer_length=int(rng.integers(3, 31)))
    fast = {e: p["text"] for e, p in postprocess_qa_predictions(**kwargs).items()}
    assert fast == reference_loop(**kwargs)
    assert all(fast.values())  # the test really compared answers, not empty strings
