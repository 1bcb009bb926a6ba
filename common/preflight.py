"""Checks that run before any data is tokenized or any weight loaded, so a bad flag costs seconds, not a run.

Each raises ConfigError with a one-line message naming the flag, what is wrong and what to pass instead.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import ConfigError, RunConfig
from .results import ResultsFileError, check_header, read_results

EXAMPLE_MODEL = "neuralmind/bert-base-portuguese-cased"
SAVED_MODEL = (f"pass the folder of a saved model (save_pretrained: config.json, weights, tokenizer) or a Hub id "
               f"such as {EXAMPLE_MODEL}")


def load_checked_model(config: RunConfig, *, model_name: str):
    """(the model's transformers config, its tokenizer), once all checks of the model and its flags passed."""
    model_config = load_model_config(model_name)
    check_model_is_bert_like(model_config, model_name=model_name)
    check_weights_present(model_name)
    check_target_modules(model_config, config=config, model_name=model_name)
    return model_config, load_tokenizer(model_name, model_config=model_config)


def load_model_config(model_name: str):
    """The model's transformers config, or a ConfigError saying what --model_name should be."""
    from transformers import AutoConfig

    path = Path(os.path.expanduser(model_name))
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"--model_name {model_name}: directory has no config.json; {SAVED_MODEL}")
    try:
        return AutoConfig.from_pretrained(model_name)
    except (OSError, ValueError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # A Hub id is `name` or `owner/name`; anything else can only be a path.
        looks_like_path = model_name.startswith((".", "/", "~")) or model_name.count("/") > 1
        what = "no such directory" if looks_like_path and not path.exists() else (
            f"not a local directory, and not loadable from the Hub ({reason})")
        raise ConfigError(
            f"--model_name {model_name}: {what}; pass a local directory with a saved BERT-like model, or a Hub id "
            f"such as {EXAMPLE_MODEL} (offline? download it first with `hf download <id>`)"
        ) from exc


def check_model_is_bert_like(model_config, *, model_name: str) -> None:
    """Refuse models this pipeline cannot fine-tune: it needs an encoder with a span-extraction QA head.

    The pre- and post-processing assume BERT's layout (question first, [CLS] at position 0 as the label
    of windows without the answer, right padding), which decoder-only and encoder-decoder models lack.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    )

    model_type = getattr(model_config, "model_type", "")
    # An encoder has a masked-LM head; BERT has a causal-LM one too, GPT-2 or Llama only that.
    if getattr(model_config, "is_encoder_decoder", False):
        kind = "an encoder-decoder model"
    elif model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        kind = "a decoder-only language model"
    elif model_type not in MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES:
        kind = "a model without a question-answering head in transformers"
    else:
        return
    raise ConfigError(
        f"--model_name {model_name}: model type {model_type!r} is {kind}; this repository fine-tunes BERT-like "
        f"encoders for extractive QA: pass a BERT checkpoint such as {EXAMPLE_MODEL} or a local copy of one"
    )


def check_weights_present(model_name: str) -> None:
    """A local folder without weights would fail only after the data is tokenized."""
    path = Path(os.path.expanduser(model_name))
    patterns = ("*.safetensors", "*.bin", "*.index.json")
    if path.is_dir() and not any(next(path.glob(pattern), None) for pattern in patterns):
        raise ConfigError(f"--model_name {model_name}: directory has no weights; {SAVED_MODEL}")


def check_target_modules(model_config, *, config: RunConfig, model_name: str) -> None:
    """Every --target_modules name must match a module (peft only refuses a list where none matches)."""
    if not config.use_peft:
        return
    import torch
    from transformers import AutoModelForQuestionAnswering

    with torch.device("meta"):  # the module tree without allocating or reading any weight
        model = AutoModelForQuestionAnswering.from_config(model_config)
    names = [name for name, _ in model.named_modules() if name]
    unknown = [t for t in config.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        linear = dict.fromkeys(_within_layer(name) for name, module in model.named_modules()
                               if isinstance(module, torch.nn.Linear))
        raise ConfigError(
            f"--target_modules: {' '.join(unknown)} matches no module of {model_name}; its linear layers are "
            f"{' '.join(linear)} (any dotted suffix works, e.g. query or attention.output.dense)"
        )


def _within_layer(name: str) -> str:
    """'bert.encoder.layer.0.attention.self.query' -> 'attention.self.query': the same in every layer."""
    parts = name.split(".")
    numbered = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[numbered[-1] + 1:]) if numbered else name


def load_tokenizer(model_name: str, *, model_config):
    """The model's tokenizer, checked against what the QA pipeline needs and against the model's vocabulary."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
    except (OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"--model_name {model_name}: cannot load its tokenizer ({reason}); save the tokenizer beside the model "
            "(tokenizer.save_pretrained)"
        ) from exc
    check_tokenizer(tokenizer, model_name=model_name, vocab_size=getattr(model_config, "vocab_size", None))
    return tokenizer


def check_tokenizer(tokenizer, *, model_name: str, vocab_size: int | None = None) -> None:
    # transformers 5 builds a tokenizer of special tokens only for a folder without tokenizer files: every
    # word would become [UNK], and the run would train on nothing without an error.
    if vocab_size and not vocab_size // 2 <= len(tokenizer) <= vocab_size:
        raise ConfigError(
            f"--model_name {model_name}: its tokenizer has {len(tokenizer)} tokens, the model's vocabulary "
            f"{vocab_size}; the tokenizer files are missing or belong to another model: save the model's own "
            "tokenizer beside it (tokenizer.save_pretrained)"
        )
    if not tokenizer.is_fast:
        raise ConfigError(f"--model_name {model_name}: needs a fast tokenizer (offsets are required for QA)")
    if "token_type_ids" not in tokenizer.model_input_names:
        raise ConfigError(
            f"--model_name {model_name}: its tokenizer gives no token_type_ids; this repository fine-tunes BERT-like "
            f"models that mark question and context with token types, such as {EXAMPLE_MODEL}"
        )


def check_results_file(path: Path) -> None:
    """Everything the final append needs, tried now rather than after hours of training: the file parses and has
    this version's header (or an earlier version's, which the append migrates), and it can be written: opened
    for appending, and a file created beside it (the append writes a copy there and renames it into place)."""
    flag = f"--results_file {path}"
    target = path.resolve()
    if target.is_dir():
        raise ConfigError(f"{flag}: is a directory; pass a CSV file name")
    try:
        if target.exists():
            header, _ = read_results(target)
            check_header(target, header)
            with open(target, "a", encoding="utf-8"):
                pass
        folder = next(p for p in [target.parent, *target.parent.parents] if p.exists())  # append creates the rest
        if not folder.is_dir():
            raise ConfigError(f"{flag}: {folder} is not a directory")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except ResultsFileError as exc:
        raise ConfigError(f"--results_file: {exc}") from exc
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(target) else ""
        raise ConfigError(f"{flag}: cannot be written{where}: {what}; the run's row could not be saved at its end: "
                          "make it writable or pass another --results_file") from exc
