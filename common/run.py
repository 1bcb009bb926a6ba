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
from dataclasses import replace
from pathlib import Path
from typing import Optional

from .checkpoint import checkpoint_callbacks, remove_checkpoints, resume_point
from .config import ConfigError, RunConfig, parse_config
from .feature_cache import build_features
from .data import (
    SMOKE_TRAIN_FILE, SMOKE_VALIDATION_FILE, DataError, align_training_answers, load_hub_dataset, load_squad_file,
)
from .attention import use_cudnn_attention
from .batches import PackedWindows, batch_collator
from .compile import planned_training_step
from .distributed import bind_local_device, release_process_group, world_size
from .export import artifact_size_mb, merged_model_complete, write_merged_model
from .faults import recorded_row, report_bad_input, run_recording_failures
from .inference import build_eval_features, predict_answers, score_answerable, score_predictions
from .model_card import write_model_card
from .output_dir import check_not_finished, claimed_output_dir
from .preflight import check_results_file, load_checked_model
from .preprocess import count_cut_questions, prepare_train_features
from .results import data_source_label, describe_run, device_name
from .tracking import LOGS_SUBDIR, log_final_metrics, resolve_report_to, tensorboard_logging_dir
from .trainer import collate_without_length, graphs_used, make_trainer_class, setup_logging, training_arguments

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


def run_summary(config: RunConfig, *, precision: str) -> str:
    """The line a run starts with; the whole config is in its run_config.json (and in the log with --debug)."""
    batch = f"{config.batch_size}" + (f" x {config.gradient_accumulation_steps} accumulated"
                                      if config.gradient_accumulation_steps > 1 else "")
    return (f"Run {config.model_size} {config.method}: model {config.model_name or 'smoke:tiny-bert-pt'}, data "
            f"{data_source_label(config)}, lr {config.learning_rate:g}, {config.num_epochs:g} epochs, batch {batch}, "
            f"{precision}, outputs {config.resolved_output_dir()}")


def peak_memory_mb(device: str) -> float:
    """CUDA peak allocated on GPU; peak resident set size of the process on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(config: RunConfig) -> Optional[dict]:
    """Train and evaluate one configuration; append its row to the results file and return the row.

    Under `torchrun` / `accelerate launch` every process runs this (the Trainer makes it data-parallel); only
    the main process writes files and the row, and the others return None. None too for `--resume` of a run
    that finished already.
    """
    # One live run per output folder, for the whole run; a folder made for nothing is removed again.
    with claimed_output_dir(config.resolved_output_dir()) as output_dir:
        return train_and_evaluate(config, output_dir=output_dir)


def train_and_evaluate(config: RunConfig, *, output_dir: Path) -> Optional[dict]:
    """The run itself, top to bottom, in an output folder it holds."""
    import torch
    from transformers import set_seed

    from .model import (
        compile_seconds, count_parameters, ensure_smoke_model, load_model, plan_training_step, resolve_precision,
    )

    precision = resolve_precision(config)
    logger.info(run_summary(config, precision=precision))
    if config.debug:
        logger.info("Resolved config:\n%s", json.dumps(vars(config), indent=1, default=str))
    resolve_report_to(config.report_to)  # a tracker that is not installed stops the run before any work
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    set_seed(config.seed)
    finished = check_not_finished(config, output_dir)  # a finished run is never trained or recorded twice
    if finished is not None:
        logger.info("%s: this run finished already (its row is in %s); nothing to train or record", output_dir,
                    finished["results_file"])
        if config.merge and not merged_model_complete(output_dir):  # the merge was stopped after the row
            write_merged_model(output_dir)
        return None
    model_name = config.model_name or str(ensure_smoke_model())
    # Bad flags fail here, in seconds, before data is tokenized or weights are loaded; so does a results file
    # that could not take the row at the end.
    check_results_file(config.resolved_results_file())
    plan = plan_training_step(config, world_size=world_size())  # --torch_compile true without Triton stops here
    resume = resume_point(config, output_dir)
    _, tokenizer = load_checked_model(config, model_name=model_name)
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
    # Compiled, dropout is fused into the generated kernels: the hand-written CPU dropout is for eager CPU runs.
    model = load_model(replace(config, fast_cpu_dropout=config.fast_cpu_dropout and not plan.compiled),
                       model_name=model_name)
    trainable, total = count_parameters(model)
    logger.info("Method %s: %s trainable of %s parameters (%.2f%%)", config.method, f"{trainable:,}", f"{total:,}",
                100 * trainable / total)

    # --- train ---
    # Compiled or eager as planned (and cuDNN attention only where a step has few shapes: common/compile.py).
    forward_loss, cudagraphs = planned_training_step(model, plan, scope=config.compile_scope)
    logger.info("Training step: %s (%s); CUDA graphs: %s (%s)",
                f"compiled ({config.compile_scope})" if plan.compiled else "eager", plan.compile_reason,
                {"step": "the whole step, one graph per bucket", "trees": "torch.compile's forward and backward graphs",
                 "off": "none"}[plan.graphs], plan.graphs_reason)
    windows = PackedWindows.from_features(train_features, max_length=config.max_seq_length)
    with tensorboard_logging_dir(output_dir / LOGS_SUBDIR):
        trainer = make_trainer_class()(
            model=model,
            args=training_arguments(config, precision=precision, output_dir=output_dir),
            train_dataset=windows,
            data_collator=batch_collator(windows, pad_to_multiple_of=plan.pad_to_multiple_of),
            eval_data_collator=collate_without_length(tokenizer),
            processing_class=tokenizer,
            callbacks=checkpoint_callbacks(config, resume=resume),
            forward_loss=forward_loss,
            cudagraphs=cudagraphs,
            step_graphs=plan.graphs == "step",
        )
    started, compiling_before = time.perf_counter(), compile_seconds()
    train_output = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume.checkpoint else None)
    # Compiling is reported apart from training. A resumed run adds the training time and loss its checkpoint
    # recorded: time, tokens/s and loss cover all the training, not only the steps after the resume.
    compile_time = compile_seconds() - compiling_before
    train_time = time.perf_counter() - started - compile_time + resume.train_time_s
    train_loss = resume.whole_run_loss(session_loss=train_output.training_loss, global_step=trainer.state.global_step)

    # --- evaluate ---
    use_cudnn_attention(False)  # evaluation runs eagerly
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
    train_tokens = int(windows.lengths.sum()) * config.num_epochs
    row = {
        **describe_run(config, world_size=trainer.args.world_size, plan=plan),
        "cuda_graphs": graphs_used(trainer)[0],  # a failed capture (warned about in the log) trained uncaptured
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
        "compile_time_s": round(compile_time, 3),
        "eval_time_s": round(eval_time, 3),
        "train_tokens_per_s": round(train_tokens / train_time, 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_params": trainable,
        "total_params": total,
        "train_loss": None if train_loss is None else round(float(train_loss), 6),
        "artifact_size_mb": round(artifact_size_mb(output_dir), 3),
        "status": "ok",
        "error": None,
        "resumes": resume.resumes,
        "resumed_from_step": resume.step if resume.checkpoint else None,
    }
    write_model_card(output_dir, config=config, row=row)  # replaces peft's empty template
    with recorded_row(config, output_dir=output_dir, row=row) as results_file:  # nothing after it adds a row
        if not config.keep_checkpoints:
            remove_checkpoints(output_dir)  # the run is recorded: nothing will resume from them
        logger.info(
            "Summary\n  method      %s (%s)\n  F1 / EM     %.2f / %.2f   (Portuguese-aware: %.2f / %.2f)\n"
            "  answerable  F1 / EM %s over the %d of %d questions with a gold answer in their context\n"
            "  train time  %.1f s (%.0f tokens/s; %d process(es), effective batch %d; compiling %.1f s more)\n"
            "  eval time   %.1f s\n  peak memory %.0f MB (%s)\n  outputs     %s (weights %.2f MB)\n  results row %s",
            config.method, config.model_size, scores["f1"], scores["exact_match"], scores_pt["f1"],
            scores_pt["exact_match"],
            "n/a" if row["f1_answerable"] is None else f"{row['f1_answerable']:.2f} / {row['exact_match_answerable']:.2f}",
            len(eval_examples) - row["eval_unanswerable"], len(eval_examples),
            train_time, train_tokens / train_time, row["world_size"], row["effective_batch_size"], compile_time,
            eval_time, row["peak_memory_mb"], device, output_dir, row["artifact_size_mb"], results_file,
        )
        if config.merge:
            write_merged_model(output_dir)
    return row


def main(*, model_size: str, method: str, argv: Optional[list[str]] = None, description: str = "") -> int:
    """Entry point of the scripts: exit status 0 on success, 2 on bad input (one-line message, no results row),
    1 for a failed, diverged or out-of-memory run and 130/143 for an interrupted one (these leave a row with
    their status; see common/faults.py)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config = parse_config(model_size, method, argv, description=description)
    except ConfigError as exc:
        return report_bad_input(exc, debug="--debug" in argv)
    setup_logging(debug=config.debug)
    status = run_recording_failures(run, config)
    if status == 0:  # not after a failure: another rank may still wait in a collective, and ending the group would hang
        release_process_group()
    return status
