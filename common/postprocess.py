"""Model logits -> one answer text per question, across all of its windows.

Same answer rule as transformers' `utils_qa.postprocess_qa_predictions` (n-best 20 starts x 20 ends per
window, spans of at most 30 tokens, highest start+end logit wins), written here with numpy over all
windows at once: the reference loops over 400 candidate pairs per window in Python, which takes seconds
per evaluation on the full validation set. One deliberate difference: the n-best starts and ends are
taken among context tokens only (run_qa takes them among all tokens and then discards question tokens,
which can leave a window with no candidate at all).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _best_span_per_feature(
    start_logits: np.ndarray, end_logits: np.ndarray, context_start: np.ndarray, context_end: np.ndarray,
    *, n_best_size: int, max_answer_length: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every window: best start token, end token, its score, and the log-sum-exp of all valid scores."""
    num_features, length = start_logits.shape
    positions = np.arange(length)
    in_context = (positions >= context_start[:, None]) & (positions <= context_end[:, None])
    starts = np.where(in_context, start_logits, -np.inf)
    ends = np.where(in_context, end_logits, -np.inf)
    k = min(n_best_size, length)
    start_idx = np.argpartition(-starts, k - 1, axis=1)[:, :k]
    end_idx = np.argpartition(-ends, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(starts, start_idx, 1)[:, :, None] + np.take_along_axis(ends, end_idx, 1)[:, None, :]
    span = end_idx[:, None, :] - start_idx[:, :, None]
    valid = (span >= 0) & (span < max_answer_length) & np.isfinite(scores)
    scores = np.where(valid, scores, -np.inf).reshape(num_features, k * k)
    best = scores.argmax(axis=1)
    rows = np.arange(num_features)
    best_score = scores[rows, best]
    with np.errstate(invalid="ignore", divide="ignore"):  # windows without any valid span give -inf, handled by the caller
        shift = np.where(np.isfinite(best_score), best_score, 0.0)
        log_total = np.log(np.exp(scores - shift[:, None]).sum(axis=1)) + shift
    return start_idx[rows, best // k], end_idx[rows, best % k], best_score, log_total


def postprocess_qa_predictions(
    *,
    example_ids: Sequence[str],
    contexts: Sequence[str],
    feature_example_ids: Sequence[str],
    context_start: Sequence[int],
    context_end: Sequence[int],
    offset_mapping: Sequence,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, dict]:
    """Return {example id: {"text": answer, "score": probability of that span among the n-best}}.

    `start_logits`/`end_logits` are (features, length) arrays; rows may be padded past a window's length
    with any value (padding is outside the context range and never chosen). `offset_mapping` is indexed
    only at the chosen windows, so a lazy column works. An example whose windows hold no valid span gets
    the empty answer with score 0.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    if start_logits.shape != end_logits.shape or start_logits.shape[0] != len(feature_example_ids):
        raise ValueError(
            f"logits {start_logits.shape}/{end_logits.shape} do not match {len(feature_example_ids)} features"
        )
    best_start, best_end, best_score, log_total = _best_span_per_feature(
        start_logits, end_logits, np.asarray(context_start), np.asarray(context_end),
        n_best_size=n_best_size, max_answer_length=max_answer_length,
    )
    position = {example_id: i for i, example_id in enumerate(example_ids)}
    example_of_feature = np.array([position[e] for e in feature_example_ids], dtype=np.int64)
    # Best window per example: sort windows by (example, -score) and keep each example's first.
    order = np.lexsort((-best_score, example_of_feature))
    first = np.ones(len(order), dtype=bool)
    first[1:] = example_of_feature[order][1:] != example_of_feature[order][:-1]
    chosen = order[first]
    # Probability of the chosen span among all valid spans of all windows of that example.
    example_log_total = np.full(len(example_ids), -np.inf)
    np.logaddexp.at(example_log_total, example_of_feature, log_total)

    predictions = {example_id: {"text": "", "score": 0.0} for example_id in example_ids}
    for f in chosen:
        if not np.isfinite(best_score[f]):
            continue
        e = example_of_feature[f]
        offsets = offset_mapping[int(f)]
        text = contexts[e][offsets[best_start[f]][0] : offsets[best_end[f]][1]]
        score = float(np.exp(best_score[f] - example_log_total[e]))
        predictions[example_ids[e]] = {"text": text, "score": score}
    return predictions
