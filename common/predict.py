"""Answer questions with a trained run: its output directory holds everything needed.

    python bertimbau_base/main_predict.py --model_dir outputs/<run> --question "..." --context "..."
    python bertimbau_base/main_predict.py --model_dir outputs/<run> --input dev.json --output preds.json

The run's `run_config.json` names the base model, the method (adapter or not, 4-bit or not) and the windowing;
a PEFT run's directory holds the adapter with its QA head, a full run's the whole model, `merged/` a merged
standalone model. Answers go through `common.inference`, the code that evaluated the run, so the validation
set predicted here scores exactly the F1/EM of the run's results row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Optional

from .attention import use_cudnn_attention
from .config import ConfigError, FlagParser, RunConfig
from .data import DataError, load_squad_file, read_json_records
from .faults import is_library_panic, report_bad_input
from .inference import build_eval_features, predict_answers, score_predictions
from .saved_run import load_trained_model, read_run_config
from .trainer import collate_without_length, make_trainer_class, setup_logging, training_arguments

logger = logging.getLogger("bertimbau_qa")


# ----------------------------------------------------------------------------------------------------------
# Answering with a saved run


def make_predictor(model, tokenizer, config: RunConfig, *, work_dir: str, eval_batch_size: Optional[int] = None):
    """A Trainer used only for `predict`, with the evaluation settings of the run (batch, precision, padding)."""
    from .model import resolve_precision

    config = dataclasses.replace(config, report_to="none", eval_batch_size=eval_batch_size or config.eval_batch_size)
    return make_trainer_class()(
        model=model,
        args=training_arguments(config, precision=resolve_precision(config), output_dir=Path(work_dir)),
        data_collator=collate_without_length(tokenizer),
        processing_class=tokenizer,
    )


def answer(examples: list[dict], *, model_dir: Path, eval_batch_size: Optional[int] = None,
           n_best_size: Optional[int] = None, max_answer_length: Optional[int] = None) -> dict[str, dict]:
    """{question id: {"text", "score"}} for `examples`, answered by the run saved in `model_dir`."""
    from transformers import AutoTokenizer

    config = read_run_config(model_dir)
    logger.info("Model %s: %s %s from %s", model_dir, config.model_size, config.method, config.model_name or "smoke:tiny-bert-pt")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_trained_model(model_dir, config)
    features = build_eval_features(examples, tokenizer=tokenizer, max_seq_length=config.max_seq_length,
                                   doc_stride=config.doc_stride, max_query_length=config.max_query_length,
                                   pad_to_max_length=config.pad_to_max_length, description="Tokenizing questions")
    use_cudnn_attention(False)  # answering runs eagerly (see common/attention.py)
    with tempfile.TemporaryDirectory(prefix="bertimbau-predict-") as work_dir:
        trainer = make_predictor(model, tokenizer, config, work_dir=work_dir, eval_batch_size=eval_batch_size)
        return predict_answers(
            trainer, examples=examples, features=features,
            n_best_size=n_best_size or config.n_best_size, max_answer_length=max_answer_length or config.max_answer_length,
        )


# ----------------------------------------------------------------------------------------------------------
# Questions in


def _question_records(content, path: Path) -> list[dict]:
    """Flatten nested SQuAD or flat records into {"id", "title", "context", "question"}, answers optional."""
    if isinstance(content, dict):
        content = content.get("data")
    if not isinstance(content, list) or not content:
        raise DataError(f"{path}: expected SQuAD JSON ({{'data': [...]}}), a JSON list or JSON Lines of "
                        "{'id', 'question', 'context'} records")
    if isinstance(content[0], dict) and "paragraphs" in content[0]:
        return [{**qa, "title": article.get("title", ""), "context": paragraph.get("context")}
                for article in content for paragraph in article.get("paragraphs", []) for qa in paragraph.get("qas", [])]
    return content


def load_questions(path: str | Path) -> tuple[list[dict], bool]:
    """(examples, whether every question has gold answers) from a SQuAD file or `{"id","question","context"}` lines.

    With answers everywhere the file is read by the evaluation loader itself (same checks, same examples);
    otherwise questions are taken as they are and answers ignored.
    """
    path = Path(path)
    records = _question_records(read_json_records(path), path)
    if all(isinstance(r, dict) and r.get("answers") for r in records):
        return load_squad_file(path), True
    examples, seen = [], set()
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for key in ("id", "question", "context"):
            if not isinstance(record.get(key), (str, int)) or isinstance(record.get(key), bool) or not str(record[key]).strip():
                raise DataError(f"{where}: field {key!r} missing or empty")
        qid = str(record["id"])
        if qid in seen:
            raise DataError(f"{where}: duplicate id {qid!r}; every question needs its own id")
        seen.add(qid)
        examples.append({"id": qid, "title": str(record.get("title") or ""), "context": record["context"],
                         "question": record["question"], "answers": {"text": [], "answer_start": []}})
    return examples, False


def one_question(question: str, context: str) -> list[dict]:
    if not question.strip() or not context.strip():
        raise DataError("--question and --context must both be non-empty")
    return [{"id": "question", "title": "", "context": context, "question": question,
             "answers": {"text": [], "answer_start": []}}]


# ----------------------------------------------------------------------------------------------------------
# Answers out


def write_predictions(predictions: dict[str, dict], path: Path) -> Path:
    """`.jsonl`: one {"id", "answer", "score"} per line; otherwise the official SQuAD format {id: answer}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        lines = [json.dumps({"id": qid, "answer": p["text"], "score": p["score"]}, ensure_ascii=False)
                 for qid, p in predictions.items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps({qid: p["text"] for qid, p in predictions.items()}, ensure_ascii=False, indent=1),
                        encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------
# Command line


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = FlagParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, type=Path,
                        help="Output directory of a training run (or its merged/ folder).")
    parser.add_argument("--question", help="One question (with --context).")
    parser.add_argument("--context", help="The paragraph that holds the answer (with --question).")
    parser.add_argument("--input", type=Path, help="Many questions: SQuAD JSON, flat JSON list or JSONL of "
                        "{id, question, context[, answers]}; F1/EM are printed when every question has answers.")
    parser.add_argument("--output", type=Path, help="Where predictions of --input go: .json gives {id: answer} "
                        "(official SQuAD format), .jsonl one {id, answer, score} per line. "
                        "Default: <model_dir>/predictions_<input name>.json.")
    parser.add_argument("--batch_size", type=int, help="Windows per forward pass (default: the run's eval_batch_size; "
                        "keep it to reproduce the run's scores to the last digit).")
    parser.add_argument("--n_best_size", type=int, help="Start/end candidates per window (default: the run's).")
    parser.add_argument("--max_answer_length", type=int, help="Longest answer in tokens (default: the run's).")
    parser.add_argument("--debug", action="store_true", help="Show the known-harmless library warnings that are "
                        "filtered by default, and the traceback of errors.")
    return parser


def main(*, model_size: str, argv: Optional[list[str]] = None, description: str = "") -> int:
    """Entry point of `bertimbau_*/main_predict.py`: exit status 0 on success, 2 on bad input (one-line message)."""
    args = build_parser(description).parse_args(argv)
    setup_logging(debug=args.debug)
    try:
        if (args.input is None) == (args.question is None and args.context is None):
            raise ConfigError("pass either --question and --context, or --input")
        if args.input is None and (args.question is None or args.context is None):
            raise ConfigError("--question and --context go together")
        config = read_run_config(args.model_dir)
        if config.model_size != model_size:
            logger.warning("%s is a %s run; answering with it anyway (the two main_predict.py scripts are the same)",
                           args.model_dir, config.model_size)
        examples, has_answers = load_questions(args.input) if args.input else (one_question(args.question, args.context), False)
        predictions = answer(examples, model_dir=args.model_dir, eval_batch_size=args.batch_size,
                             n_best_size=args.n_best_size, max_answer_length=args.max_answer_length)
    except (ConfigError, DataError) as exc:
        return report_bad_input(exc, debug=args.debug)
    except BaseException as exc:
        if not is_library_panic(exc):
            raise
        # A Rust library panicked (pyo3's PanicException is not an Exception); Rust has printed where already.
        print(f"error: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}", file=sys.stderr)
        return 1
    if args.input is None:
        prediction = predictions["question"]
        print(f"answer: {prediction['text']}\nscore: {prediction['score']:.4f}")
        return 0
    output = write_predictions(predictions, args.output or args.model_dir / f"predictions_{args.input.stem}.json")
    print(f"{len(predictions)} predictions written to {output}")
    if has_answers:
        scores, scores_pt = score_predictions(predictions, examples)
        # Rounded like the results row, so the two can be compared digit for digit.
        print(f"f1 {scores['f1']:.4f} exact_match {scores['exact_match']:.4f} "
              f"(Portuguese-aware: f1 {scores_pt['f1']:.4f} exact_match {scores_pt['exact_match']:.4f})")
    return 0
