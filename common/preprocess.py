"""Question + context -> model features with overflow windows (after transformers' run_qa.py).

A context longer than `max_seq_length` is cut into windows that overlap by `doc_stride` tokens; one
question can therefore give several features. Features are left unpadded: the collator pads each batch
to its own longest feature (dynamic padding), which saves the ~44% of work that padding every feature
to 384 wastes on Portuguese SQuAD (docs/data.md: 215.5 real tokens per window on average).
"""
from __future__ import annotations

from typing import Any

from .config import check_window_room

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def cut_questions(questions: list[str], tokenizer, *, max_query_length: int) -> tuple[list[str], list[bool]]:
    """Questions cut to at most `max_query_length` tokens (original BERT's `max_query_length`), and which were cut.

    Cut in text, at the end of the last token kept, so the pair tokenization below still sees plain strings
    and its offsets still point into the original question. WordPiece tokenizes a prefix that ends on a
    token boundary into the same first tokens; the re-check covers tokenizers where that does not hold.
    """
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    kept, cut = [], []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        keep = min(len(offsets), max_query_length)
        while len(offsets) > max_query_length:
            question = question[: offsets[keep - 1][1]]
            if keep == 1 or len(tokenizer(question, add_special_tokens=False)["input_ids"]) <= max_query_length:
                break
            keep -= 1
        kept.append(question)
        cut.append(len(offsets) > max_query_length)
    return kept, cut


def _tokenize(examples: dict, tokenizer, *, max_seq_length: int, doc_stride: int, max_query_length: int,
              pad_to_max_length: bool) -> Any:
    # Checked here too, with this tokenizer's own count of special tokens: every caller (training, evaluation,
    # prediction with an older run's settings, benchmarks) gets a one-line error instead of a Rust panic.
    check_window_room(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length,
                      special_tokens=tokenizer.num_special_tokens_to_add(pair=True))
    # Leading white space in questions wastes window room (run_qa does the same).
    questions, cut = cut_questions([q.lstrip() for q in examples["question"]], tokenizer,
                                   max_query_length=max_query_length)
    tokenized = tokenizer(
        questions,
        examples["context"],
        truncation="only_second",  # BERT pads on the right: question first, context second
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )
    # Per window: was its question cut? (count_cut_questions reads it back, from cached features too.)
    tokenized["question_cut"] = [cut[i] for i in tokenized["overflow_to_sample_mapping"]]
    return tokenized


def count_cut_questions(features) -> int:
    """How many questions of these features were cut to --max_query_length tokens."""
    return len({eid for eid, cut in zip(features["example_id"], features["question_cut"]) if cut})


def _context_span(sequence_ids: list) -> tuple[int, int]:
    """First and last token index of the context (sequence id 1) in one window."""
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def prepare_train_features(
    examples: dict, *, tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int = 64,
    pad_to_max_length: bool = False,
) -> dict:
    """Batched `datasets.map` function: token-level start/end labels for the first answer.

    A window that does not contain the whole answer is labelled with the CLS token (index 0), as in BERT's
    SQuAD recipe.
    """
    tokenized = _tokenize(examples, tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
                          max_query_length=max_query_length, pad_to_max_length=pad_to_max_length)
    sample_map = tokenized.pop("overflow_to_sample_mapping")
    offsets_all = tokenized.pop("offset_mapping")
    starts, ends, lengths, example_ids = [], [], [], []
    for i, offsets in enumerate(offsets_all):
        example_index = sample_map[i]
        answers = examples["answers"][example_index]
        answer_start = answers["answer_start"][0]
        answer_end = answer_start + len(answers["text"][0])
        context_start, context_end = _context_span(tokenized.sequence_ids(i))
        if offsets[context_start][0] > answer_start or offsets[context_end][1] < answer_end:
            starts.append(0)
            ends.append(0)
        else:
            token_start = context_start
            while token_start <= context_end and offsets[token_start][0] <= answer_start:
                token_start += 1
            token_end = context_end
            while token_end >= context_start and offsets[token_end][1] >= answer_end:
                token_end -= 1
            starts.append(token_start - 1)
            ends.append(token_end + 1)
        lengths.append(sum(tokenized["attention_mask"][i]))
        example_ids.append(examples["id"][example_index])
    tokenized["start_positions"] = starts
    tokenized["end_positions"] = ends
    # Real (unpadded) token counts: the length-grouped sampler reads them instead of re-measuring.
    tokenized["length"] = lengths
    tokenized["example_id"] = example_ids
    return tokenized


def prepare_validation_features(
    examples: dict, *, tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int = 64,
    pad_to_max_length: bool = False,
) -> dict:
    """Batched `datasets.map` function: evaluation windows keeping what post-processing needs.

    Each feature keeps its example id, its character offsets, and the token range of its context, so that
    post-processing can restrict answers to context tokens without re-tokenizing.
    """
    tokenized = _tokenize(examples, tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
                          max_query_length=max_query_length, pad_to_max_length=pad_to_max_length)
    sample_map = tokenized.pop("overflow_to_sample_mapping")
    example_ids, context_starts, context_ends, lengths = [], [], [], []
    for i in range(len(tokenized["input_ids"])):
        context_start, context_end = _context_span(tokenized.sequence_ids(i))
        example_ids.append(examples["id"][sample_map[i]])
        context_starts.append(context_start)
        context_ends.append(context_end)
        lengths.append(sum(tokenized["attention_mask"][i]))
    tokenized["example_id"] = example_ids
    tokenized["context_start"] = context_starts
    tokenized["context_end"] = context_ends
    tokenized["length"] = lengths
    return tokenized
