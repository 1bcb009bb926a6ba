"""What a run leaves to share: the size of its saved weights, and (`--merge`) a merged standalone model.

Every run saves a loadable artefact (common/run.py): for PEFT methods the adapter with the trained QA head
(`adapter_model.safetensors`, a few MB), for full fine-tuning the whole model. `--merge` adds `merged/`: the
adapter folded into the base weights, an ordinary `BertForQuestionAnswering` checkpoint that loads without
peft or bitsandbytes.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

logger = logging.getLogger("bertimbau_qa")
MERGED_SUBDIR = "merged"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def artifact_size_mb(model_dir: Path) -> float:
    """MB (2**20 bytes) of the weight files in `model_dir` (not its subfolders): adapter + QA head, or the model.

    The tokenizer and configs are left out (the same few hundred KB for every method), and so is the Trainer's
    `training_args.bin`, which holds no weights.
    """
    files = [p for p in model_dir.iterdir()
             if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name != "training_args.bin"]
    return sum(p.stat().st_size for p in files) / 2**20


def merged_model_complete(model_dir: Path) -> bool:
    """`write_merged_model` copies the run config last: with it, merged/ is whole."""
    from .saved_run import RUN_CONFIG

    return (model_dir / MERGED_SUBDIR / RUN_CONFIG).is_file()


def write_merged_model(model_dir: Path) -> Path:
    """Merge the adapter saved in `model_dir` into its base and save the result to `model_dir/merged`.

    LoRA/DoRA: base + B A * alpha / r in the base's precision (float32), the same function as the adapter up to
    float rounding. QLoRA/QDoRA: the adapter was trained on the 4-bit NF4 base, so it is merged into the NF4
    weights dequantized to float32 and the result saved in bfloat16: a model that needs no bitsandbytes, but not
    bit-identical to the 4-bit model with its adapter (bfloat16 rounding of every weight, and the 4-bit kernels
    computed differently), so a few answers may differ.
    """
    import torch
    from transformers import AutoTokenizer

    from .saved_run import RUN_CONFIG, load_trained_model, read_run_config

    config = read_run_config(model_dir)
    model = load_trained_model(model_dir, config, dequantize_base=True)
    merged = model.merge_and_unload()
    if config.quantize_4bit:
        merged = merged.to(torch.bfloat16)
        logger.warning("%s: %s adapter merged into a bfloat16 copy of the dequantized 4-bit base; not bit-identical "
                       "to the 4-bit model with its adapter (a few answers may differ)", model_dir, config.method)
    target = model_dir / MERGED_SUBDIR
    merged.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(target))
    # Windowing and post-processing settings travel with the model, so main_predict.py can load merged/ too.
    shutil.copyfile(model_dir / RUN_CONFIG, target / RUN_CONFIG)
    logger.info("Merged model (%.1f MB) written to %s", artifact_size_mb(target), target)
    return target
