"""A finished run's output directory, read back: its config and its trained model.

A building block shared by prediction (`common/predict.py`) and export (`common/export.py`), below both, so
neither has to import the other or the training orchestrator.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import ConfigError, RunConfig

RUN_CONFIG = "run_config.json"
ADAPTER_CONFIG = "adapter_config.json"


def read_run_config(model_dir: Path) -> RunConfig:
    """The config a run saved; fields this version does not know are ignored (a newer run's extras)."""
    path = model_dir / RUN_CONFIG
    if not path.exists():
        raise ConfigError(f"--model_dir {model_dir}: no {RUN_CONFIG}; pass the output directory of a training run "
                          "(or its merged/ folder)")
    values = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{key: value for key, value in values.items() if key in known})


def base_model_name(config: RunConfig) -> str:
    """The base model a run started from; in smoke mode the tiny BERT, rebuilt identically if not cached."""
    from .model import ensure_smoke_model

    return config.model_name or str(ensure_smoke_model())


def load_trained_model(model_dir: Path, config: RunConfig, *, dequantize_base: bool = False):
    """The model a run trained, in eval mode: the full model, or the base with the saved adapter and QA head.

    The base is loaded by `common.model.load_model` exactly as for training (QLoRA/QDoRA: re-quantized to 4-bit
    NF4 with the same settings, which gives the same 4-bit weights), then the adapter goes on top.
    `dequantize_base` replaces the 4-bit layers by float32 ones holding the dequantized NF4 weights, for merging.
    """
    import torch

    from .model import load_model

    if (model_dir / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        base_config = dataclasses.replace(config, use_peft=False, gradient_checkpointing=False)
        base = load_model(base_config, model_name=base_model_name(config))
        if dequantize_base and config.quantize_4bit:
            base = base.dequantize(dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        from transformers import AutoModelForQuestionAnswering

        model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir), attn_implementation="sdpa")
    return model.eval()
