"""The single source of truth for a run: one typed dataclass, layered presets, and the command line.

Layers, later wins: field defaults -> model-size preset -> method -> smoke preset -> command line.
Methods and model sizes are data (dicts of field values), never code branches.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, get_args, get_origin, get_type_hints

from .batches import is_bucket_width

REPO_ROOT = Path(__file__).resolve().parents[1]

# The paper's target modules: attention query, key, value and the attention output projection
# (`attention.output.dense` in HF BERT; the suffix match keeps the FFN's `output.dense` out).
PAPER_TARGET_MODULES = ["query", "key", "value", "attention.output.dense"]

# Model-size presets (docs/paper.md "Setup reported by the paper"): model id and per-device batch size
# (16 Base / 8 Large).
MODEL_PRESETS: dict[str, dict] = {
    "base": {"model_name": "neuralmind/bert-base-portuguese-cased", "batch_size": 16},
    "large": {"model_name": "neuralmind/bert-large-portuguese-cased", "batch_size": 8},
}

# Methods are field values only. Learning rates are the paper's: 4.25e-5 ("standard" BERT) for full
# fine-tuning, 2e-4 ("high", tuned for PEFT) for the adapters (docs/paper.md; the author's README calls 2e-4
# "critical" for PEFT).
METHODS: dict[str, dict] = {
    "full": {"use_peft": False, "use_dora": False, "quantize_4bit": False, "learning_rate": 4.25e-5},
    "lora": {"use_peft": True, "use_dora": False, "quantize_4bit": False, "learning_rate": 2e-4},
    "qlora": {"use_peft": True, "use_dora": False, "quantize_4bit": True, "learning_rate": 2e-4},
    "dora": {"use_peft": True, "use_dora": True, "quantize_4bit": False, "learning_rate": 2e-4},
    "qdora": {"use_peft": True, "use_dora": True, "quantize_4bit": True, "learning_rate": 2e-4},
}

# Smoke mode: a tiny BERT built locally and the shipped Portuguese data, so the whole pipeline runs
# offline on a laptop CPU in well under two minutes. Shorter windows than 384 keep it fast while still
# producing overflow windows (stride < length), so the multi-window code paths run too.
SMOKE_PRESET: dict = {
    "model_name": "",  # empty: the tiny BERT that common/model.py builds locally
    "max_seq_length": 128,
    "doc_stride": 48,
    "batch_size": 16,
    "num_epochs": 2.0,
    "learning_rate_scale": 5.0,  # a from-scratch tiny model needs a larger step than a pre-trained BERT
    # The tiny model's matrices are too small for bf16 to pay: autocast's casts cost more than they save
    # (a smoke run trained in 2.3-3.4 s in fp32 against 3.9-4.2 s in bf16 on an AMX CPU).
    "precision": "fp32",
    # One CPU thread: the tiny model's matrices are too small to split well, and a second thread that has to
    # wait for a busy core stalls every step. Measured on 2 cores (LoRA smoke run, training seconds): idle 2.0 s
    # with 1 thread against 1.4 s with 2; with one core busy 1.9 s against 4.3 s (and 3 s against 80 s seen on a
    # heavily loaded machine).
    "num_threads": 1,
}


# Throughput mode (`--throughput`, not the paper's recipe): 4x the batch, so a GPU step holds enough tokens to
# keep the GPU busy, with the learning rate scaled by sqrt(4) = 2, the square-root rule for Adam-type optimisers
# (Malladi et al., 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"). Fewer, bigger steps
# do not train exactly like the paper's: its accuracy is not the paper's claim, and the row says which ran.
THROUGHPUT_BATCH_FACTOR = 4


def cache_dir() -> Path:
    """Where built artefacts (the smoke model, tokenized features) are kept between runs."""
    return Path(os.environ.get("BERTIMBAU_QA_CACHE", Path.home() / ".cache" / "bertimbau_peft_qa"))


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag and the bad value."""


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class RunConfig:
    # --- what runs (set by the script; --method/--model_size exist for tools like the grid runner) ---
    model_size: str = _help("Model-size preset: base or large.", default="base")
    method: str = _help("Fine-tuning method: full, lora, qlora, dora or qdora.", default="full")
    model_name: str = _help(
        "Hub model id or local directory of a BERT-like model (in smoke mode empty means the tiny local BERT).", default=""
    )

    # --- data ---
    dataset: str = _help(
        "Hub dataset with SQuAD columns (id, title, context, question, answers), used when no files are given. "
        "Default: the Google-Translate Portuguese SQuAD v1.1 (not the paper's reviewed translation: pass that "
        "one with --train_file/--validation_file).",
        default="nunorc/squad_v1_pt",
    )
    dataset_revision: Optional[str] = _help(
        "Hub revision of --dataset; default tries the main branch, then the Hub's parquet conversion.",
        default=None,
    )
    train_file: Optional[str] = _help("Training data: nested SQuAD v1.1 JSON, flat JSON list or JSONL.", default=None)
    validation_file: Optional[str] = _help("Evaluation data, same formats as --train_file.", default=None)
    max_train_samples: Optional[int] = _help("Debug: keep only this many training examples (and features).", default=None)
    max_eval_samples: Optional[int] = _help("Debug: keep only this many evaluation examples.", default=None)
    max_seq_length: int = _help("Tokens per window, question included (paper: 384).", default=384)
    doc_stride: int = _help("Overlap in tokens between consecutive windows of a long context.", default=128)
    max_query_length: int = _help(
        "Longest question in tokens; longer questions are cut to it (original BERT's SQuAD recipe: 64), so that "
        "every window keeps more than --doc_stride context tokens.", default=64)

    # --- optimisation (paper: AdamW, weight decay 0.01, gradient clipping 1.0) ---
    learning_rate: float = _help("Peak learning rate (paper: 4.25e-5 full, 2e-4 PEFT).", default=4.25e-5)
    num_epochs: float = _help("Training epochs (paper: 2 and 3).", default=2.0)
    batch_size: int = _help("Per-device training batch size (paper: 16 Base, 8 Large).", default=16)
    gradient_accumulation_steps: int = _help("Batches accumulated per optimizer step.", default=1)
    eval_batch_size: int = _help("Per-device evaluation batch size (windows are sorted by length, so big batches pad little).", default=128)
    weight_decay: float = _help("AdamW weight decay (paper: 0.01).", default=0.01)
    max_grad_norm: float = _help("Gradient clipping norm (paper: 1.0).", default=1.0)
    warmup_ratio: float = _help("Fraction of steps for linear warm-up (the paper reports none).", default=0.0)
    seed: int = _help("Random seed for initialisation, dropout and data order.", default=42)

    # --- PEFT (paper: r 16, alpha 32, dropout 0.1 on q, k, v and attention output) ---
    use_peft: bool = _help("Train LoRA/DoRA adapters instead of all weights (set by the method).", default=False)
    use_dora: bool = _help("Weight-decomposed LoRA (set by the method).", default=False)
    quantize_4bit: bool = _help("Load base weights in 4-bit NF4 with double quantization (set by the method).", default=False)
    lora_r: int = _help("LoRA rank.", default=16)
    lora_alpha: int = _help("LoRA alpha (scaling = alpha / r).", default=32)
    lora_dropout: float = _help("Dropout on the LoRA branch.", default=0.1)
    target_modules: list[str] = _help(
        "Module-name suffixes that get adapters.", default_factory=lambda: list(PAPER_TARGET_MODULES)
    )

    # --- post-processing (transformers' QA example defaults) ---
    n_best_size: int = _help("Start and end candidates considered per window.", default=20)
    max_answer_length: int = _help("Longest answer in tokens.", default=30)

    # --- speed and precision (defaults: the fast path; each switch restores the paper's slower way) ---
    precision: str = _help(
        "auto (bf16 where the GPU supports it, else fp16 on GPU; on CPU bf16 where it has AMX or AVX512-BF16, else "
        "fp32), bf16, fp16 or fp32.", default="auto")
    pad_to_max_length: bool = _help("Pad every window to --max_seq_length (default: pad each batch to its longest).", default=False)
    group_by_length: bool = _help("Batch windows of similar length together (less padding).", default=True)
    attn_implementation: str = _help("Attention kernel: sdpa (fused) or eager.", default="sdpa")
    optim: str = _help("Optimizer (HF Trainer name); the fused AdamW updates all tensors in one kernel.", default="adamw_torch_fused")
    gradient_checkpointing: bool = _help("Trade compute for memory (off: the paper's GPUs fit without it).", default=False)
    fast_cpu_dropout: bool = _help(
        "On CPU, draw dropout masks ~10x faster than PyTorch's (common/cpu_dropout.py; drop probability rounded to "
        "a multiple of 1/65536). GPUs always use native dropout.", default=True)
    throughput: bool = _help(
        f"Throughput mode, not the paper's recipe: {THROUGHPUT_BATCH_FACTOR}x --batch_size and the learning rate x "
        f"sqrt({THROUGHPUT_BATCH_FACTOR}), for the fastest good model on a big GPU; recorded in the results row.",
        default=False)
    torch_compile: Optional[bool] = _help(
        "Compile the training step's forward and loss with torch.compile (batches padded to buckets of --bucket_width "
        "tokens). Default: on with a CUDA GPU in a single process where Triton works (Linux wheels bring it; compute "
        "capability 7.0+), off on CPU; `--torch_compile false` turns it off.",
        default=None)
    compile_scope: str = _help(
        "What --torch_compile compiles: layers (each encoder layer; one compilation serves all of them, about 10-25 "
        "s) or model (the whole forward and loss in one graph, about a minute to compile Base). Inside a step graph "
        "(--cuda_graphs step) a layer costs no launch of its own: BERTimbau-Large full fine-tuning ran 55.9 steps/s "
        "per layer after 12 s of compiling; with --cuda_graphs trees, model is 2.5x faster for Base LoRA.",
        default="layers")
    cuda_graphs: str = _help(
        "CUDA graphs on a GPU: step (the whole training step, forward, backward, clipping and AdamW, captured in one "
        "graph per bucket of --bucket_width tokens, compiled or not), trees (torch.compile's reduce-overhead mode: "
        "forward and backward graphs, the optimizer outside; needs --torch_compile) or off. step applies in a single process "
        "without gradient accumulation, with the fused AdamW and bf16/fp32; elsewhere the run says why not.",
        default="step")
    bucket_width: int = _help(
        "Compiled or captured steps: each batch padded to a multiple of N tokens (a multiple of 8), one CUDA graph per "
        "width. 16 computes 1.05 tokens per real token on Portuguese SQuAD in 19 shapes, 64 computes 1.15 in 5 "
        "(common/batches.py); padding is masked out of the loss, so only the speed changes.", default=16)
    feature_cache: bool = _help("Reuse tokenized windows cached on disk by an earlier run with the same data, tokenizer and windowing.", default=True)
    dataloader_num_workers: int = _help("Worker processes for the data loader.", default=0)
    num_threads: int = _help("CPU threads for torch (0: torch's default, one per core; smoke runs use 1).", default=0)

    # --- outputs ---
    output_dir: Optional[str] = _help("Where the model, predictions.json and logs go (default outputs/<run name>).", default=None)
    results_file: Optional[str] = _help(
        "CSV that gets one row per run (default results/runs.csv; results/smoke_runs.csv in smoke mode).", default=None
    )
    smoke: bool = _help("Offline smoke run: tiny local BERT and the shipped data (or your files).", default=False)
    logging_steps: int = _help("Log the training loss every N optimizer steps.", default=50)
    report_to: str = _help(
        "Trackers for loss, learning rate and final F1/EM: auto (tensorboard if installed, logs in <output_dir>/logs), "
        "none, or a comma-separated list of tensorboard, wandb, mlflow.",
        default="auto",
    )
    merge: bool = _help(
        "Also write a standalone model with the adapter merged in to <output_dir>/merged (LoRA/DoRA: same weights; "
        "QLoRA/QDoRA: merged into a bfloat16 copy of the dequantized base, not bit-identical).",
        default=False,
    )

    # --- faults (common/checkpoint.py, common/faults.py) ---
    save_steps: int = _help(
        "Save a resumable checkpoint every N optimizer steps and at each epoch end (0: no checkpoints).", default=0
    )
    resume: bool = _help("Continue from the last complete checkpoint in --output_dir (a fresh run if there is none).",
                         default=False)
    keep_checkpoints: bool = _help(
        "Keep the checkpoints in --output_dir after the run finished (default: deleted once its row is written).",
        default=False)
    debug: bool = _help(
        "Show the full traceback of errors (bad input included), the whole resolved config at start, and the "
        "known-harmless library warnings that are filtered by default.", default=False)

    @property
    def run_name(self) -> str:
        return (f"{self.model_size}_{self.method}_lr{self.learning_rate:g}_ep{self.num_epochs:g}_seed{self.seed}"
                + ("_throughput" if self.throughput else "") + ("_smoke" if self.smoke else ""))

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else REPO_ROOT / "outputs" / self.run_name

    def resolved_results_file(self) -> Path:
        if self.results_file:
            return Path(self.results_file)
        return REPO_ROOT / "results" / ("smoke_runs.csv" if self.smoke else "runs.csv")


# [CLS] question [SEP] context [SEP]: what a BERT tokenizer adds to a question-context pair.
BERT_PAIR_SPECIAL_TOKENS = 3


def check_window_room(*, max_seq_length: int, doc_stride: int, max_query_length: int,
                      special_tokens: int = BERT_PAIR_SPECIAL_TOKENS) -> None:
    """Refuse windows that cannot hold more than `doc_stride` context tokens next to the longest question.

    The tokenizer cuts a long context into windows of `max_seq_length - question - special_tokens` context
    tokens that overlap by `doc_stride`; with `doc_stride` or fewer of them it panics (Rust `stride must be
    strictly less than max_len`, pyo3's PanicException, which is not an Exception) and with none at all it
    raises "Sequence to truncate too short". Questions are cut to `max_query_length` tokens first, so this
    bound holds for every question.
    """
    room = max_seq_length - max_query_length - special_tokens
    if room <= doc_stride:
        raise ConfigError(
            f"--max_seq_length {max_seq_length}, --doc_stride {doc_stride} and --max_query_length {max_query_length} "
            f"leave {room} context tokens per window ({special_tokens} go to special tokens), which must be more than "
            f"--doc_stride: lower --doc_stride or --max_query_length, or raise --max_seq_length"
        )


def validate(config: RunConfig) -> RunConfig:
    """Refuse settings that cannot work, naming the flag and value."""
    checks = [
        (config.model_size in MODEL_PRESETS, f"--model_size {config.model_size!r}: choose one of {sorted(MODEL_PRESETS)}"),
        (config.method in METHODS, f"--method {config.method!r}: choose one of {list(METHODS)}"),
        (math.isfinite(config.learning_rate) and config.learning_rate > 0, f"--learning_rate {config.learning_rate}: must be a positive number"),
        (config.num_epochs > 0, f"--num_epochs {config.num_epochs}: must be > 0"),
        (config.batch_size >= 1, f"--batch_size {config.batch_size}: must be >= 1"),
        (config.eval_batch_size >= 1, f"--eval_batch_size {config.eval_batch_size}: must be >= 1"),
        (config.gradient_accumulation_steps >= 1, f"--gradient_accumulation_steps {config.gradient_accumulation_steps}: must be >= 1"),
        (config.max_seq_length >= 32, f"--max_seq_length {config.max_seq_length}: must be >= 32"),
        (0 < config.doc_stride < config.max_seq_length, f"--doc_stride {config.doc_stride}: must be > 0 and < --max_seq_length ({config.max_seq_length})"),
        (config.max_query_length >= 1, f"--max_query_length {config.max_query_length}: must be >= 1"),
        (config.weight_decay >= 0, f"--weight_decay {config.weight_decay}: must be >= 0"),
        (config.max_grad_norm > 0, f"--max_grad_norm {config.max_grad_norm}: must be > 0"),
        (0 <= config.warmup_ratio < 1, f"--warmup_ratio {config.warmup_ratio}: must be in [0, 1)"),
        (config.lora_r >= 1, f"--lora_r {config.lora_r}: must be >= 1"),
        (config.lora_alpha > 0, f"--lora_alpha {config.lora_alpha}: must be > 0"),
        (0 <= config.lora_dropout < 1, f"--lora_dropout {config.lora_dropout}: must be in [0, 1)"),
        (len(config.target_modules) > 0, "--target_modules: name at least one module"),
        (config.n_best_size >= 1, f"--n_best_size {config.n_best_size}: must be >= 1"),
        (config.max_answer_length >= 1, f"--max_answer_length {config.max_answer_length}: must be >= 1"),
        (config.precision in ("auto", "bf16", "fp16", "fp32"), f"--precision {config.precision!r}: choose auto, bf16, fp16 or fp32"),
        (config.compile_scope in ("layers", "model"), f"--compile_scope {config.compile_scope!r}: choose layers or model"),
        (config.cuda_graphs in ("step", "trees", "off"), f"--cuda_graphs {config.cuda_graphs!r}: choose step, trees or off"),
        (is_bucket_width(config.bucket_width),
         f"--bucket_width {config.bucket_width}: must be a multiple of 8 (tensor-core tiles), at least 8"),
        (config.attn_implementation in ("sdpa", "eager"), f"--attn_implementation {config.attn_implementation!r}: choose sdpa or eager"),
        (config.max_train_samples is None or config.max_train_samples >= 1, f"--max_train_samples {config.max_train_samples}: must be >= 1"),
        (config.max_eval_samples is None or config.max_eval_samples >= 1, f"--max_eval_samples {config.max_eval_samples}: must be >= 1"),
        (config.num_threads >= 0, f"--num_threads {config.num_threads}: must be >= 0 (0: torch's default)"),
        (config.save_steps >= 0, f"--save_steps {config.save_steps}: must be >= 0 (0: no checkpoints)"),
        ((config.train_file is None) == (config.validation_file is None),
         "--train_file and --validation_file go together (or pass neither to use --dataset)"),
        # Here, not only when the data is read: that comes after the model check, which can spend half a minute
        # retrying the Hub when offline.
        (config.train_file is None or Path(config.train_file).exists(),
         f"--train_file {config.train_file}: file not found; check the path"),
        (config.validation_file is None or Path(config.validation_file).exists(),
         f"--validation_file {config.validation_file}: file not found; check the path"),
        (not (config.quantize_4bit and not config.use_peft), "4-bit quantization needs an adapter method (qlora or qdora)"),
        (not (config.use_dora and not config.use_peft), "DoRA needs use_peft"),
        (not (config.merge and not config.use_peft), "--merge: full fine-tuning already saves a standalone model; merge is for adapter methods"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_window_room(max_seq_length=config.max_seq_length, doc_stride=config.doc_stride,
                      max_query_length=config.max_query_length)
    return config


def _arg_type(tp):
    """The argparse type for a dataclass field type (Optional[X] -> X)."""
    if get_origin(tp) is not None and type(None) in get_args(tp):
        tp = next(a for a in get_args(tp) if a is not type(None))
    return tp


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "y"):
        return True
    if lowered in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help, and the script's docstring (with its example commands) kept as written."""


def suggest_flag(flag: str, known: list[str]) -> str:
    """`--learning-rate: did you mean --learning_rate?` for a flag the parser does not know."""
    name = flag.split("=", 1)[0]
    # Dashes for underscores is the usual slip; otherwise the closest known flag by spelling, if any is close.
    candidates = [f for f in known if f == "--" + name.lstrip("-").replace("-", "_")] or difflib.get_close_matches(
        name, known, n=1, cutoff=0.75)
    return f"{name}: did you mean {candidates[0]}?" if candidates else f"{name}: no such flag"


class FlagParser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (with the closest flag for a typo), not the whole usage."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = [option for action in self._actions for option in action.option_strings]
        # Checked before parsing, so a typo is named even when argparse would first miss a required flag.
        flags = [a.split("=", 1)[0] for a in args[: args.index("--") if "--" in args else len(args)]
                 if a.startswith("--")]
        unknown = [f for f in flags if not any(option.startswith(f) for option in known)]  # prefixes are allowed
        if unknown:
            self.error("; ".join(suggest_flag(f, known) for f in unknown))
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unexpected argument(s) {' '.join(extras)}")
        return namespace

    def error(self, message):
        self.exit(2, f"error: {message} (--help lists every flag)\n")


def build_parser(defaults: RunConfig, *, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser whose defaults are the layered config.

    Written here rather than with HfArgumentParser because its defaults come from the dataclass field
    defaults, and ours come from the layered presets; the help strings still come from the dataclass.
    """
    parser = FlagParser(description=description, formatter_class=_HelpFormatter)
    hints = get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        tp = _arg_type(hints[f.name])
        default = getattr(defaults, f.name)
        kwargs = {"default": default, "help": f.metadata["help"], "dest": f.name}
        if tp is bool:
            # `--smoke` alone means true; `--use_dora false` is also accepted.
            parser.add_argument(f"--{f.name}", type=_parse_bool, nargs="?", const=True, **kwargs)
        elif get_origin(tp) is list:
            parser.add_argument(f"--{f.name}", type=str, nargs="+", **kwargs)
        else:
            parser.add_argument(f"--{f.name}", type=tp, **kwargs)
    return parser


def layered_defaults(model_size: str, method: str, *, smoke: bool) -> RunConfig:
    if model_size not in MODEL_PRESETS:
        raise ConfigError(f"model size {model_size!r}: choose one of {sorted(MODEL_PRESETS)}")
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: choose one of {list(METHODS)}")
    values = {"model_size": model_size, "method": method, **MODEL_PRESETS[model_size], **METHODS[method]}
    if smoke:
        smoke_values = dict(SMOKE_PRESET)
        values["learning_rate"] *= smoke_values.pop("learning_rate_scale")
        values.update(smoke_values, smoke=True)
    return RunConfig(**values)


def parse_config(model_size: str, method: str, argv: Optional[list[str]] = None, *, description: str = "") -> RunConfig:
    """Resolve the config of one run from the layers and the command line."""
    # Pre-parse the flags that pick the lower layers, so `--help` shows the defaults the run will use.
    pre = FlagParser(add_help=False)
    pre.add_argument("--smoke", type=_parse_bool, nargs="?", const=True, default=False)
    pre.add_argument("--method", default=method)
    pre.add_argument("--model_size", default=model_size)
    known, _ = pre.parse_known_args(argv)
    defaults = layered_defaults(known.model_size, known.method, smoke=known.smoke)
    namespace = build_parser(defaults, description=description).parse_args(argv)
    return validate(apply_throughput(RunConfig(**vars(namespace))))


def apply_throughput(config: RunConfig) -> RunConfig:
    """Throughput mode's batch and learning rate (see THROUGHPUT_BATCH_FACTOR); the config unchanged without it."""
    if not config.throughput:
        return config
    return dataclasses.replace(config, batch_size=config.batch_size * THROUGHPUT_BATCH_FACTOR,
                               learning_rate=config.learning_rate * math.sqrt(THROUGHPUT_BATCH_FACTOR))
