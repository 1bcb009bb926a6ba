"""Small, version-pinned changes to peft, bitsandbytes and accelerate: layers that compile without graph breaks,
and a training step without a needless search of the file system.

Each patch names the library versions it was checked against and the hash of the source it replaces; it is
applied only when the installed function is that exact source, so a library update that changes it turns the
patch off (with a warning) instead of silently replacing new code. tests/test_training_step.py fails when an installed
library's source no longer matches, which is the signal to re-check the patch.

1. peft's `dequantize_module_weight` (DoRA computes the weight norm through it at every step) asks
   `type(module.weight).__module__.startswith("torchao.")`, which torch.compile cannot trace (a graph break in
   every DoRA layer, 18 for the smoke model), and on a CPU re-assigns `module.weight` at every call (27 for QDoRA).
   The replacement keeps the two cases this repository has: a plain weight, and a bitsandbytes 4-bit weight.
2. bitsandbytes' `Linear4bit.forward` casts its bias and records its compute type on its first call, which
   changes module state while compiling (25 breaks on QLoRA's first step). Doing both before compiling leaves
   nothing to change.
3. peft's DoRA computes the product of its LoRA matrices B·A at every forward as `lora_B(lora_A(eye)).T`: an
   identity matrix made, cast to the compute dtype and multiplied, to stay correct under FSDP, where the matrices
   are sharded outside their modules' forward. This repository trains DoRA in one process or with DDP, where
   `lora_B.weight @ lora_A.weight` is the same dot products: while training (`dora_weight_product`, not under
   FSDP) it is computed so, three kernels fewer per DoRA layer and step (the eye, its cast, a GEMM), 144 for
   BERTimbau-Base's 48 DoRA layers; the product only feeds the weight norm, which DoRA detaches, so nothing
   changes in backward. Equal to peft's up to the order of an r-term sum (tests/test_training_step.py).
4. accelerate's `AcceleratedOptimizer.step` asks `is_lomo_available()` twice per optimizer step, and each call
   searches sys.path for the `lomo_optim` package (importlib's find_spec): 0.26 ms per step on 2 CPU cores, about
   a tenth of what the Trainer does per step outside the model, and on a GPU that CPU time is time the GPU waits
   for its next graph. Whether a package is installed does not change during a run, so it is asked once.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
from importlib import metadata

import torch

logger = logging.getLogger("bertimbau_qa")

# The sources the patches were written against: sha256 (first 16 hex digits) of inspect.getsource.
PEFT_TESTED = ("0.21.2",)
PEFT_DEQUANTIZE_SHA256 = "745bb18021ab7aff"  # peft.utils.integrations.dequantize_module_weight
BNB_TESTED = ("0.50.2",)
BNB_LINEAR4BIT_FORWARD_SHA256 = "d52cf63457717cc7"  # bitsandbytes.nn.Linear4bit.forward: the first-call set-up
PEFT_DORA_LORA_WEIGHT_SHA256 = "23e26cd9de45a513"  # peft.tuners.lora.dora.DoraLinearLayer.get_lora_weight
ACCELERATE_TESTED = ("1.15.0",)
ACCELERATE_LOMO_CHECK_SHA256 = "59adadfd3cac2db3"  # accelerate.utils.imports.is_lomo_available


def source_hash(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def dequantize_module_weight(module: torch.nn.Module):
    """peft's helper for the weights this repository uses: a plain weight, or a bitsandbytes 4-bit one."""
    weight = module.weight
    bnb = _bitsandbytes()
    if bnb is not None and isinstance(weight, bnb.nn.Params4bit):  # isinstance: dynamo cannot read __class__ here
        # The parameter itself, not `.data`: bitsandbytes' own Linear4bit.forward passes it so, which compiles;
        # `.data` of this tensor subclass recurses in its __torch_function__ under torch.compile.
        return bnb.functional.dequantize_4bit(weight, weight.quant_state)
    return weight


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        return None
    return bitsandbytes


_applied = False


def apply_compile_patches() -> bool:
    """Install the peft replacement where peft's DoRA code looks it up; True if installed."""
    global _applied
    if _applied:
        return True
    try:
        import peft.tuners.lora.dora as dora
        import peft.tuners.lora.layer as layer
        import peft.tuners.lora.variants as variants
        from peft.utils import integrations
    except ImportError:
        return False
    found = source_hash(integrations.dequantize_module_weight)
    if found != PEFT_DEQUANTIZE_SHA256:
        logger.warning("peft %s: dequantize_module_weight is not the source this repository patched (peft %s); "
                       "DoRA layers will compile with graph breaks", metadata.version("peft"),
                       ", ".join(PEFT_TESTED))
        return False
    for module in (dora, layer, variants):
        if getattr(module, "dequantize_module_weight", None) is integrations.dequantize_module_weight:
            module.dequantize_module_weight = dequantize_module_weight
    _applied = True
    return True


def prepare_4bit_layers_for_compile(model: torch.nn.Module) -> int:
    """Do what bitsandbytes' Linear4bit does on its first call (bias cast, compute type) now; how many layers."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    if source_hash(Linear4bit.forward) != BNB_LINEAR4BIT_FORWARD_SHA256:
        logger.warning("bitsandbytes %s: Linear4bit.forward is not the source this repository prepared for "
                       "(bitsandbytes %s); 4-bit layers may compile with graph breaks",
                       metadata.version("bitsandbytes"), ", ".join(BNB_TESTED))
        return 0
    prepared = 0
    for module in model.modules():
        if isinstance(module, Linear4bit) and module.compute_dtype is not None:
            if module.bias is not None and module.bias.dtype != module.compute_dtype:
                module.bias.data = module.bias.data.to(module.compute_dtype)
            module.compute_type_is_set = True
            prepared += 1
    return prepared


def ask_for_lomo_once() -> bool:
    """accelerate's optimizer step asks whether `lomo_optim` is installed with the answer of its first call; True
    if in place. Left alone (False) when accelerate's function is not the source checked here."""
    try:
        import accelerate.optimizer as accelerate_optimizer
        from accelerate.utils import imports
    except ImportError:
        return False
    current = accelerate_optimizer.is_lomo_available
    if getattr(current, "asked_once", False):
        return True
    if current is not imports.is_lomo_available or source_hash(current) != ACCELERATE_LOMO_CHECK_SHA256:
        return False  # a speed-up only: a changed accelerate keeps its own behaviour

    @functools.cache
    def is_lomo_available() -> bool:
        return current()

    is_lomo_available.asked_once = True
    accelerate_optimizer.is_lomo_available = is_lomo_available
    return True


def _lora_weight_product(self, lora_A, lora_B, adapter_name=None):
    """B·A, the matrix peft's `lora_B(lora_A(eye)).T` computes, as one matrix product (see the module docstring)."""
    return lora_B.weight @ lora_A.weight


@contextlib.contextmanager
def dora_weight_product(model: torch.nn.Module):
    """While inside, the DoRA layers of `model` compute B·A as one matrix product; yields whether they do (False
    without DoRA layers, and when peft's function is not the source checked here: then peft's own, with a warning)."""
    try:
        from peft.tuners.lora import dora
    except ImportError:
        yield False
        return
    if not any(isinstance(m, dora.DoraLinearLayer) for m in model.modules()):
        yield False
        return
    current = dora.DoraLinearLayer.get_lora_weight
    if source_hash(current) != PEFT_DORA_LORA_WEIGHT_SHA256:
        logger.warning("peft %s: DoraLinearLayer.get_lora_weight is not the source this repository replaced (peft %s); "
                       "DoRA keeps computing B·A through an identity matrix", metadata.version("peft"),
                       ", ".join(PEFT_TESTED))
        yield False
        return
    # Through peft's own decorator: its eval-mode cache (ENABLE_DORA_CACHING) keeps working.
    dora.DoraLinearLayer.get_lora_weight = dora.cache_decorator("lora-weight")(_lora_weight_product)
    try:
        yield True
    finally:
        dora.DoraLinearLayer.get_lora_weight = current
