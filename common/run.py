"""One fine-tuning run, top to bottom: config -> data -> features -> model -> train -> evaluate -> results.

Every `bertimbau_*/main*.py` script calls `main(model_size=..., method=...)`; nothing here depends on
which script called it.
"""
from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Optional

from .checkpoint import checkpoint_callbacks, resume_point
from .config import ConfigError, RunConfig, parse_config
from .feature_cache import build_features
from .data import (
    SMOKE_TRAIN_FILE, SMOKE_VALIDATION_FILE, DataError, align_training_answers, load_hub_dataset, load_squad_file,
)
from .distributed import bind_local_device
from .export import artifact_size_mb, write_merged_model
from .faults import report_bad_input, run_recording_failures
from .inference import build_eval_features, predict_answers, score_answerable, score_predictions
from .model_card import write_model_card
from .preflight import check_results_file, load_checked_model
from .preprocess import MODEL_INPUTS, count_cut_questions, prepare_train_features
from .results import append_result, data_source_label, describe_run, device_name
from .tracking import LOGS_SUBDIR, log_final_metrics, resolve_report_to, tensorboard_logging_dir
from .trainer import LABELS, collate_without_length, make_trainer_class, setup_logging, training_arguments

logger = logging.getLogger("bertimbau_qa")


def load_examples(config: RunConfig) -> tuple[list[dict], list[dict], str]:
    """(training examples, evaluation examples, a label saying where they came from)."""
    if config.train_file:
        train = load_squad_file(config.train_file)
        evaluation = load_squad_file(config.validation_file)
    elif config.smoke:
        train, evaluation = load_squad_file(SMOKE_TRAIN_FILE), load_squad_file(SMOKE_VALIDATION_FILE)
    else:
        splits = load_hub_dataset(config.dataset, revision=config.dataset_revision)
        train, evaluation = splits["train"], splits["validation"]
    if config.max_train_samples:
        train = train[: config.max_train_samples]
    if config.max_eval_samples:
        evaluation = evaluation[: config.max_eval_samples]
    return train, evaluation, data_source_label(config)


def peak_memory_mb(device: str) -> float:
    """CUDA peak allocated on GPU; peak resident set size of the process on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(config: RunConfig) -> Optional[dict]:
    """Train and evaluate one configuration; append its row to the results file and return the row.

    Under `torchrun` / `accelerate launch` every process runs this (the Trainer makes it data-parallel); only
    the main process writes files and the row, and the others return None.
    """
    import torch
    from transformers import set_seed

    from .model import count_parameters, ensure_smoke_model, load_model, resolve_precision

    logger.info("Resolved config:\n%s", json.dumps(vars(config), indent=1, default=str))
    resolve_report_to(config.report_to)  # a tracker that is not installed stops the run before any work
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    set_seed(config.seed)
    output_dir = config.resolved_output_dir()
    output_dir.mkdir(parents=True, exist_ok=True)
    model_name = config.model_name or str(ensure_smoke_model())
    # Bad flags fail here, in seconds, before data is tokenized or weights are loaded.
    check_results_file(config.resolved_results_file())
    resume_from, prior_train_time = resume_point(config, output_dir)
    _, tokenizer = load_checked_model(config, model_name=model_name)
    precision = resolve_precision(config)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left outside autocast
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats()

    # --- data ---
    train_examples, eval_examples, data_source = load_examples(config)
    train_examples, alignment = align_training_answers(train_examples)
    logger.info("Data %s: %s", data_source, alignment.summary())
    if not train_examples:
        raise DataError(
            f"{config.train_file or data_source}: no training answer occurs in its context ({alignment.dropped} "
            "dropped), nothing to train on; check that answer texts are copied from their contexts"
        )
    windowing = {"tokenizer": tokenizer, "max_seq_length": config.max_seq_length, "doc_stride": config.doc_stride,
                 "max_query_length": config.max_query_length, "pad_to_max_length": config.pad_to_max_length,
                 "use_cache": config.feature_cache}
    train_features, train_hit = build_features(train_examples, prepare_train_features, **windowing,
                                               description="Tokenizing training set")
    if config.max_train_samples:  # one example can give several windows: cap the features too (as run_qa)
        train_features = train_features.select(range(min(config.max_train_samples, len(train_features))))
    eval_features = build_eval_features(eval_examples, **windowing)
    logger.info("%d training examples -> %d features%s; %d evaluation examples -> %d features; questions cut to "
                "--max_query_length %d tokens: %d training, %d evaluation", len(train_examples), len(train_features),
                " (from cache)" if train_hit else "", len(eval_examples), len(eval_features), config.max_query_length,
                count_cut_questions(train_features), count_cut_questions(eval_features))

    # --- model ---
    bind_local_device()
    model = load_model(config, model_name=model_name)
    trainable, total = count_parameters(model)
    logger.info("Method %s: %s trainable of %s parameters (%.2f%%)", config.method, f"{trainable:,}", f"{total:,}",
                100 * trainable / total)

    # --- train ---
    with tensorboard_logging_dir(output_dir / LOGS_SUBDIR):
        trainer = make_trainer_class()(
            model=model,
            args=training_arguments(config, precision=precision, output_dir=output_dir),
            train_dataset=train_features.select_columns([*MODEL_INPUTS, *LABELS, "length"]),
            data_collator=collate_without_length(tokenizer),
            processing_class=tokenizer,
            callbacks=checkpoint_callbacks(config, prior_train_time=prior_train_time),
        )
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # A resumed run adds the training time its checkpoint recorded: time and tokens/s cover all the training.
    train_time = time.perf_counter() - started + prior_train_time

    # --- evaluate ---
    started = time.perf_counter()
    predictions = predict_answers(trainer, examples=eval_examples, features=eval_features,
                                  n_best_size=config.n_best_size, max_answer_length=config.max_answer_length)
    eval_time = time.perf_counter() - started
    scores, scores_pt = score_predictions(predictions, eval_examples)
    log_final_metrics(trainer, scores=scores, scores_pt=scores_pt)

    # --- save ---
    trainer.save_model(str(output_dir))  # PEFT: adapter + QA head only; full: the whole model (main process writes)
    if not trainer.is_world_process_zero():
        return None
    (output_dir / "predictions.json").write_text(
        json.dumps({qid: p["text"] for qid, p in predictions.items()}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    (output_dir / "run_config.json").write_text(json.dumps(vars(config), indent=1, default=str), encoding="utf-8")

    device = device_name()
    train_tokens = sum(train_features["length"]) * config.num_epochs
    row = {
        **describe_run(config, world_size=trainer.args.world_size),
        "train_examples": len(train_examples),
        "train_features": len(train_features),
        "train_answers_dropped": alignment.dropped,
        "eval_examples": len(eval_examples),
        "eval_features": len(eval_features),
        "f1": round(scores["f1"], 4),
        "exact_match": round(scores["exact_match"], 4),
        "f1_pt": round(scores_pt["f1"], 4),
        "exact_match_pt": round(scores_pt["exact_match"], 4),
        **score_answerable(predictions, eval_examples),
        "train_time_s": round(train_time, 3),
        "eval_time_s": round(eval_time, 3),
        "train_tokens_per_s": round(train_tokens / train_time, 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_params": trainable,
        "total_params": total,
        "train_loss": round(float(train_output.training_loss), 6),
        "artifact_size_mb": round(artifact_size_mb(output_dir), 3),
        "status": "ok",
        "error": None,
    }
    write_model_card(output_dir, config=config, row=row)  # replaces peft's empty template
    results_file = append_result(config.resolved_results_file(), row)
    logger.info(
        "Summary\n  method      %s (%s)\n  F1 / EM     %.2f / %.2f   (Portuguese-aware: %.2f / %.2f)\n"
        "  answerable  F1 / EM %s over the %d of %d questions with a gold answer in their context\n"
        "  train time  %.1f s (%.0f tokens/s; %d process(es), effective batch %d)\n  eval time   %.1f s\n"
        "  peak memory %.0f MB (%s)\n  outputs     %s (weights %.2f MB)\n  results row %s",
        config.method, config.model_size, scores["f1"], scores["exact_match"], scores_pt["f1"],
        scores_pt["exact_match"],
        "n/a" if row["f1_answerable"] is None else f"{row['f1_answerable']:.2f} / {row['exact_match_answerable']:.2f}",
        len(eval_examples) - row["eval_unanswerable"], len(eval_examples),
        train_time, train_tokens / train_time, row["world_size"], row["effective_batch_size"],
        eval_time, row["peak_memory_mb"], device, output_dir, row["artifact_size_mb"], results_file,
    )
    if config.merge:  # after the row: a failed merge must not lose the run's results
        write_merged_model(output_dir)
    return row


def main(*, model_size: str, method: str, argv: Optional[list[str]] = None, description: str = "") -> int:
    """Entry point of the scripts: exit status 0 on success, 2 on bad input (one-line message, no results row),
    1 for a failed, diverged or out-of-memory run and 130/143 for an interrupted one (these leave a row with
    their status; see common/faults.py)."""
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config = parse_config(model_size, method, argv, description=description)
    except ConfigError as exc:
        return report_bad_input(exc, debug="--debug" in argv)
    return run_recording_failures(run, config)
