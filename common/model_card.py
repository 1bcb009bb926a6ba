"""The model card (README.md in a run's output directory): data, method, hyper-parameters, scores, how to load.

Written from the run's results row and config after the model is saved, so it replaces the empty template
that peft's `save_pretrained` leaves there; the YAML header is the Hugging Face Hub's model-card metadata.
"""
from __future__ import annotations

from pathlib import Path

from .config import RunConfig

METHOD_TEXT = {
    "full": "full fine-tuning (every weight trained)",
    "lora": "LoRA (low-rank adapters; base weights frozen)",
    "qlora": "QLoRA (LoRA on a frozen base quantized to 4-bit NF4 with double quantization)",
    "dora": "DoRA (weight-decomposed low-rank adapters; base weights frozen)",
    "qdora": "QDoRA (DoRA on a frozen base quantized to 4-bit NF4 with double quantization)",
}


def _load_snippet(config: RunConfig, base: str) -> str:
    if not config.use_peft:
        return ("from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n\n"
                "model = AutoModelForQuestionAnswering.from_pretrained(\"<this folder>\")\n"
                "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>\")")
    quant = (",\n    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\",\n"
             "        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16,\n"
             "        llm_int8_skip_modules=[\"qa_outputs\"])") if config.quantize_4bit else ""
    imports = "import torch\nfrom transformers import AutoModelForQuestionAnswering, AutoTokenizer, BitsAndBytesConfig" \
        if config.quantize_4bit else "from transformers import AutoModelForQuestionAnswering, AutoTokenizer"
    return (f"{imports}\nfrom peft import PeftModel\n\n"
            f"base = AutoModelForQuestionAnswering.from_pretrained(\n    \"{base}\"{quant})\n"
            "model = PeftModel.from_pretrained(base, \"<this folder>\")  # adapter + trained QA head\n"
            "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>\")")


def render_model_card(*, config: RunConfig, row: dict) -> str:
    """Markdown with Hub metadata, built only from the run's config and results row."""
    base = config.model_name or "smoke:tiny-bert-pt (a tiny randomly initialised BERT built locally)"
    effective = row["effective_batch_size"]
    hyper = [
        ("learning rate", f"{config.learning_rate:g} (linear decay, warm-up ratio {config.warmup_ratio:g})"),
        ("epochs", f"{config.num_epochs:g}"),
        ("batch", f"{config.batch_size} per device x {config.gradient_accumulation_steps} accumulation x "
                  f"{row['world_size']} processes = {effective}"),
        ("optimiser", f"AdamW, weight decay {config.weight_decay:g}, gradient clipping {config.max_grad_norm:g}"),
        ("windows", f"max_seq_length {config.max_seq_length}, doc_stride {config.doc_stride}"),
        ("post-processing", f"n-best {config.n_best_size}, max answer length {config.max_answer_length} tokens"),
        ("seed", str(config.seed)),
        ("precision", row["precision"]),
    ]
    if config.use_peft:
        hyper[3:3] = [("adapter", f"r {config.lora_r}, alpha {config.lora_alpha}, dropout {config.lora_dropout:g} on "
                                  f"{', '.join(config.target_modules)}; QA head trained in full")]
    scores = [
        ("F1 (official SQuAD v1.1)", row["f1"]), ("exact match (official)", row["exact_match"]),
        ("F1 (Portuguese-aware)", row["f1_pt"]), ("exact match (Portuguese-aware)", row["exact_match_pt"]),
    ]
    lines = [
        "---",
        "language: pt",
        f"library_name: {'peft' if config.use_peft else 'transformers'}",
        *([f"base_model: {config.model_name}"] if config.model_name else []),
        "pipeline_tag: question-answering",
        f"tags: [question-answering, squad, bertimbau, {config.method}]",
        "---",
        "",
        f"# BERTimbau-{config.model_size.capitalize()} {config.method} for Portuguese extractive question answering",
        "",
        f"Fine-tuned from `{base}` with {METHOD_TEXT[config.method]}, by this repository's "
        f"`bertimbau_{config.model_size}/main{'' if config.method == 'full' else '_' + config.method}.py`"
        + (" (smoke run: a pipeline check, not a usable model)." if config.smoke else "."),
        "",
        "## Data",
        "",
        f"- source: `{row['data_source']}` (SQuAD v1.1 format, Portuguese)",
        f"- training: {row['train_examples']} questions ({row['train_features']} windows; "
        f"{row['train_answers_dropped']} dropped because their answer is not in the context)",
        f"- evaluation: {row['eval_examples']} questions ({row['eval_features']} windows)",
        "",
        "## Hyper-parameters",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in hyper],
        "",
        "## Scores on the evaluation set",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.2f} |" for name, value in scores],
        "",
        f"Trainable parameters: {row['trainable_params']:,} of {row['total_params']:,}; saved weights "
        f"{row['artifact_size_mb']:.2f} MB; training {row['train_time_s']:.0f} s on {row['device']}.",
        "",
        "## Use",
        "",
        "```bash",
        f"python bertimbau_{config.model_size}/main_predict.py --model_dir <this folder> "
        "--question \"Qual é a capital de Portugal?\" --context \"Lisboa é a capital de Portugal.\"",
        "```",
        "",
        "```python",
        _load_snippet(config, config.model_name or "<the smoke model folder>"),
        "```",
        "",
        "## Provenance",
        "",
        f"git commit `{row['git_commit']}` (uncommitted changes: {row['git_dirty'] or 'unknown'}); {row['versions']}; "
        f"finished {row['timestamp']}. The resolved configuration is in `run_config.json`.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(output_dir: Path, *, config: RunConfig, row: dict) -> Path:
    path = output_dir / "README.md"
    path.write_text(render_model_card(config=config, row=row), encoding="utf-8")
    return path
