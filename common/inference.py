"""Examples -> answers with a trained model: the one code path shared by evaluation and prediction.

`common/run.py` evaluates with it right after training and `common/predict.py` answers with a saved run, so
predicting a run's validation set from its output directory gives exactly the F1/EM of its results row:
same windows (same tokenizer, `max_seq_length`, `doc_stride`), same feature order (longest first, so the
batches and their padding are the same), same `Trainer.predict` batching and precision, same post-processing.
"""
from __future__ import annotations

from . import squad_metric
from .data import is_answerable
from .feature_cache import build_features
from .postprocess import postprocess_qa_predictions
from .preprocess import MODEL_INPUTS, prepare_validation_features


def build_eval_features(examples: list[dict], *, tokenizer, max_seq_length: int, doc_stride: int,
                        max_query_length: int = 64, pad_to_max_length: bool = False, use_cache: bool = True,
                        description: str = "Tokenizing evaluation set"):
    """Evaluation windows of `examples` (a `datasets.Dataset`, through the on-disk feature cache), longest first.

    Longest first: each batch is padded to similar lengths, and an out-of-memory shows at once.
    """
    features, _ = build_features(examples, prepare_validation_features, tokenizer=tokenizer,
                                 max_seq_length=max_seq_length, doc_stride=doc_stride,
                                 max_query_length=max_query_length, pad_to_max_length=pad_to_max_length,
                                 use_cache=use_cache, description=description)
    return features.sort("length", reverse=True)


def predict_answers(trainer, *, examples: list[dict], features, n_best_size: int, max_answer_length: int) -> dict:
    """{question id: {"text", "score"}} for `examples`, from the windows `features` of `build_eval_features`.

    Under DDP (`torchrun`, `accelerate launch`) every process runs this: `Trainer.predict` shards the windows
    in order across processes, and accelerate's `gather_for_metrics` returns all of them to every process in
    the original order, with the duplicates that even out the last batch dropped; logits of different
    widths are padded with -100 past a window's end, which post-processing never reads (it keeps to each
    window's context tokens). `postprocess_qa_predictions` refuses logits whose row count differs from the
    number of windows, so a lost or duplicated window cannot pass silently.
    """
    outputs = trainer.predict(features.select_columns(list(MODEL_INPUTS)))
    start_logits, end_logits = outputs.predictions[:2]
    return postprocess_qa_predictions(
        example_ids=[e["id"] for e in examples],
        contexts=[e["context"] for e in examples],
        feature_example_ids=features["example_id"],
        context_start=features["context_start"],
        context_end=features["context_end"],
        offset_mapping=features["offset_mapping"],
        start_logits=start_logits,
        end_logits=end_logits,
        n_best_size=n_best_size,
        max_answer_length=max_answer_length,
    )


def score_predictions(predictions: dict[str, dict], examples: list[dict]) -> tuple[dict, dict]:
    """(official SQuAD v1.1 scores, Portuguese-aware scores), as in the results row."""
    formatted = [{"id": qid, "prediction_text": p["text"]} for qid, p in predictions.items()]
    references = [{"id": e["id"], "answers": e["answers"]} for e in examples]
    return (squad_metric.compute(predictions=formatted, references=references),
            squad_metric.compute_portuguese(predictions=formatted, references=references))


def score_answerable(predictions: dict[str, dict], examples: list[dict]) -> dict:
    """The row's answerable block: how many questions have no gold answer in their context (`is_answerable`:
    the rule that keeps training answers), and the official F1/EM over the others (empty when there are none).

    Machine-translated evaluation sets hold many questions whose answer was translated apart from its context
    (165 of the 488 held-out questions of the public sample): no extractive model can match them, and they pull
    the all-question F1/EM down by the same amount for every method. The official scores stay the headline.
    """
    answerable = [e for e in examples if is_answerable(e)]
    scores = score_predictions({e["id"]: predictions[e["id"]] for e in answerable}, answerable)[0] if answerable \
        else {"f1": None, "exact_match": None}
    return {"eval_unanswerable": len(examples) - len(answerable),
            "f1_answerable": None if scores["f1"] is None else round(scores["f1"], 4),
            "exact_match_answerable": None if scores["exact_match"] is None else round(scores["exact_match"], 4)}
