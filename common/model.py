"""Models for every method, built from config fields (no per-method code branches).

full  = the pre-trained model, all weights trained
lora  = + LoRA adapters (peft); dora = + use_dora
qlora = base weights in 4-bit NF4 (bitsandbytes) + LoRA; qdora = + use_dora
In every adapter method the QA head (`qa_outputs`, randomly initialised) is trained and saved with the
adapter (peft `modules_to_save`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from .attention import use_sdpa_without_host_sync
from .config import ConfigError, RunConfig, cache_dir
from .data import SMOKE_DATA_DIR

QA_HEAD = "qa_outputs"

# The tiny BERT of smoke mode: small enough that a whole run takes seconds on a CPU, with the shape of
# BERTimbau otherwise (WordPiece, absolute positions, token types). Widths are multiples of 64, the
# bitsandbytes 4-bit block size.
SMOKE_MODEL_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
}
SMOKE_VOCAB = SMOKE_DATA_DIR / "vocab.txt"


def ensure_tiny_model(*, vocab_file: Path = SMOKE_VOCAB, shape: Optional[dict] = None) -> Path:
    """Build (once) a randomly initialised small BERT QA model and its tokenizer in a local directory.

    It is saved like a Hub checkpoint, so smoke runs and benchmarks load it through the same
    `from_pretrained` path (quantization included) as the real models. Seeded: every build is identical.
    """
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

    shape = shape or SMOKE_MODEL_SHAPE
    key = hashlib.sha256(Path(vocab_file).read_bytes() + repr(sorted(shape.items())).encode()).hexdigest()[:12]
    target = cache_dir() / f"tiny-bert-pt-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tiny-bert-"))
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=False, strip_accents=False)
    config = BertConfig(vocab_size=len(tokenizer), **shape)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertForQuestionAnswering(config)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)  # atomic: concurrent runs never see a half-written model
    except OSError:  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_smoke_model() -> Path:
    """The tiny BERT of smoke mode (shipped vocabulary, SMOKE_MODEL_SHAPE)."""
    return ensure_tiny_model()


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: CPUs whose matrix instructions take bfloat16 (Sapphire Rapids and later, Zen 4)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers, torch >= 2.3
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(config: RunConfig) -> str:
    """bf16 where the GPU supports it, fp16 on older GPUs; on CPU bf16 autocast where the CPU computes bf16
    natively, else fp32."""
    if config.precision != "auto":
        return config.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # Measured on a 2-core AMX Xeon, the CPU benchmark's model through common.run (seed 42, fast dropout): bf16
    # autocast trains at 6,976 real tokens/s against 4,433 in fp32, with the same F1 (45.08 against 44.94).
    return "bf16" if cpu_has_native_bf16() else "fp32"


def triton_missing() -> Optional[str]:
    """Why torch.compile cannot generate kernels for this CUDA GPU, or None (no GPU, or Triton works).

    Inductor writes a GPU's kernels in Triton, which PyTorch's Linux CUDA wheels bring along but its Windows wheels
    do not, and which needs compute capability 7.0 (Volta) or later. Without it the first compiled step fails deep
    inside inductor; asked here, the default falls back to the eager step (still captured in CUDA graphs, which need
    no Triton) and an explicit --torch_compile true is refused before any work.
    """
    if not torch.cuda.is_available():
        return None
    try:
        from torch.utils._triton import has_triton  # what inductor itself asks; private, so guarded
    except ImportError:
        return None  # a torch without it: leave the decision to inductor
    if has_triton():
        return None
    major, minor = torch.cuda.get_device_capability()
    if major < 7:
        return f"this GPU's compute capability {major}.{minor} is below the 7.0 that Triton needs"
    return "Triton is not installed (on Windows: pip install triton-windows)"


def resolve_compile(config: RunConfig, *, world_size: int) -> tuple[bool, str]:
    """(compile or not, why) for a run: an explicit --torch_compile wins; by default on a CUDA GPU in one process.

    Raises ConfigError for --torch_compile true on a CUDA GPU that torch.compile cannot generate kernels for.
    """
    if config.torch_compile is not None:
        missing = triton_missing() if config.torch_compile else None
        if missing:
            raise ConfigError(f"--torch_compile true: torch.compile needs Triton on a GPU, and {missing}; pass "
                              "--torch_compile false (the step is still captured in CUDA graphs)")
        return bool(config.torch_compile), "--torch_compile " + str(config.torch_compile).lower()
    if not torch.cuda.is_available():
        return False, "no CUDA GPU; on a CPU compiling costs more than it saves for these models"
    missing = triton_missing()
    if missing:
        return False, f"torch.compile needs Triton on a GPU, and {missing}"
    if world_size > 1:
        return False, "several processes (DDP): not measured compiled, so left eager"
    if config.gradient_checkpointing:
        return False, "--gradient_checkpointing: recomputation and CUDA graphs not measured together"
    return True, "a CUDA GPU in a single process"


def resolve_cuda_graphs(config: RunConfig, *, world_size: int) -> tuple[str, str]:
    """(step, trees or off; why): which CUDA graphs a run's training steps are captured in (common/step_graph.py)."""
    if config.cuda_graphs == "off":
        return "off", "--cuda_graphs off"
    if not torch.cuda.is_available():
        return "off", "no CUDA GPU"
    if world_size > 1:
        return "off", "several processes (DDP): not measured with CUDA graphs"
    if config.gradient_accumulation_steps > 1:
        # A micro-batch's gradients would have to outlive the replay of the next one, which reuses their memory.
        return "off", "--gradient_accumulation_steps > 1"
    if config.gradient_checkpointing:
        return "off", "--gradient_checkpointing: recomputation and CUDA graphs not measured together"
    if config.cuda_graphs == "trees":
        compiled, why = resolve_compile(config, world_size=world_size)
        if not compiled:  # the trees are torch.compile's: say why it is off (a flag, or no Triton)
            return "off", f"--cuda_graphs trees needs torch.compile, which is off: {why}"
        return "trees", "--cuda_graphs trees"
    if resolve_precision(config) == "fp16":
        return "off", "fp16: its loss scaler reads on the host whether gradients overflowed (--cuda_graphs trees works)"
    if config.optim != "adamw_torch_fused":
        return "off", f"--optim {config.optim}: whole-step graphs capture torch's fused AdamW (adamw_torch_fused)"
    return "step", "a CUDA GPU in a single process"


class StepPlan(NamedTuple):
    """How a run's training steps run: what `common/run.py` does, and the GPU benchmark's arms as the scripts would."""

    compiled: bool
    compile_reason: str
    graphs: str  # step, trees or off (resolve_cuda_graphs)
    graphs_reason: str
    few_shapes: bool  # compiled or captured: batches padded to buckets, cuDNN attention paid once
    pad_to_multiple_of: int


def plan_training_step(config: RunConfig, *, world_size: int) -> StepPlan:
    """Compiled or not, which CUDA graphs, and how far batches are padded (raises ConfigError like resolve_compile)."""
    from .batches import pad_multiple

    compiled, compile_reason = resolve_compile(config, world_size=world_size)
    graphs, graphs_reason = resolve_cuda_graphs(config, world_size=world_size)
    # A compiled or captured step is specialised to its shapes: each batch is padded to a bucket so that an epoch
    # sees few of them.
    few_shapes = compiled or graphs != "off"
    return StepPlan(compiled, compile_reason, graphs, graphs_reason, few_shapes,
                    pad_multiple(few_shapes=few_shapes, on_gpu=torch.cuda.is_available(), bucket=config.bucket_width))


def compile_seconds() -> float:
    """Seconds spent compiling so far in this process (dynamo, AOT autograd and the backend; forward and backward)."""
    from torch._dynamo.utils import calculate_time_spent

    return float(calculate_time_spent().get("total_wall_time", 0.0))


def quantization_config(config: RunConfig):
    """The paper's QLoRA/QDoRA base: 4-bit NF4, double quantization, bfloat16 compute."""
    if not config.quantize_4bit:
        return None
    from transformers import BitsAndBytesConfig

    compute_dtype = torch.float16 if resolve_precision(config) == "fp16" else torch.bfloat16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        # The fresh QA head must stay trainable in full precision; quantized, peft cannot train it.
        llm_int8_skip_modules=[QA_HEAD],
    )


def adapter_config(config: RunConfig):
    """LoRA (or DoRA) on the target modules; the QA head is trained and saved in full."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        # No task type on purpose: peft's QUESTION_ANS wrapper (PeftModelForQuestionAnswering, up to at least
        # 0.21) does not pass `token_type_ids` on to the model, so BERT would see every token as segment A and
        # could not tell question from context, unlike full fine-tuning and unlike the merged model. The plain
        # PeftModel passes every input through; the QA head is kept trainable by `modules_to_save` below.
        task_type=None,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        use_dora=config.use_dora,
        modules_to_save=[QA_HEAD],
    )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a 4-bit weight packs two values per byte, so it counts double."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":
            n *= 2 * param.element_size()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def load_model(config: RunConfig, *, model_name: Optional[str] = None) -> torch.nn.Module:
    """The model of a run: pre-trained weights, optionally 4-bit, optionally wrapped with adapters."""
    from transformers import AutoModelForQuestionAnswering

    name = model_name or config.model_name
    quant = quantization_config(config)
    kwargs = {"attn_implementation": config.attn_implementation}
    if quant is not None:
        kwargs["quantization_config"] = quant
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForQuestionAnswering.from_pretrained(name, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        # peft turns gradient checkpointing on by default here; it costs ~30% speed and the paper's
        # models fit without it, so it follows the config instead.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    peft_config = adapter_config(config)
    if peft_config is not None:
        from peft import get_peft_model

        if config.gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, peft_config)
    use_sdpa_without_host_sync(model)  # the same SDPA, without a GPU sync per forward for its mask
    if config.fast_cpu_dropout and not torch.cuda.is_available():  # GPUs keep their fused native dropout
        from .cpu_dropout import enable_fast_cpu_dropout

        enable_fast_cpu_dropout(model)
    return model
