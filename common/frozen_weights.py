"""Frozen weights prepared once when training starts, instead of at every step.

`frozen_weights_in`: frozen linear weights kept in autocast's dtype, instead of cast from fp32 at every step.

Why: autocast casts a linear layer's fp32 weight to bf16 every time the layer runs, and caches the cast only for
weights that train. The adapters freeze the base model, so for LoRA and DoRA every frozen weight (the feed-forward
layers, the attention output's base layer) was cast again at every step: for BERTimbau-Base LoRA 36 casts of 64M
weights in all, about 380 MB read and written per step, and on a CPU the same work in bf16. Cast once when
training starts, the layers compute exactly what they computed before (the same rounding, once instead of at
every step; tests/test_training_step.py compares losses and gradients bit for bit).

Which layers: plain `torch.nn.Linear` modules whose weight does not train and is fp32. Left alone: 4-bit layers
(bitsandbytes dequantizes them into the compute dtype itself), DoRA's base layers (DoRA also reads the base weight
for its weight norm, in fp32: a bf16 copy would change that norm), and the query/key/value base layers that
`common/fused_qkv.py` already replaces with one pre-cast weight. The fp32 weights are put back when training ends:
evaluation, saving and export see the model unchanged. It costs the bf16 copies while training, beside their fp32
originals (BERTimbau-Base LoRA: 64M weights, 128 MB; Large LoRA: 227M weights, 453 MB).

`frozen_4bit_weights_in`: the 8-bit block scales of double-quantized 4-bit weights (QLoRA, QDoRA) dequantized
once, instead of before every use of the weight, and the weights dequantized straight into the compute dtype (see
there).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def _dora_base_layers(model: torch.nn.Module) -> set[int]:
    """ids of the base layers of peft layers with a DoRA magnitude (their weight feeds DoRA's weight norm)."""
    found = set()
    for module in model.modules():
        if getattr(module, "lora_magnitude_vector", None) and hasattr(module, "get_base_layer"):
            found.add(id(module.get_base_layer()))
    return found


def _fused_qkv_base_layers(model: torch.nn.Module) -> set[int]:
    """ids of query/key/value base layers that common/fused_qkv.py computes from its own concatenated weight."""
    found = set()
    for module in model.modules():
        if getattr(module, "fused_qkv_weight", None) is not None:
            for name in ("query", "key", "value"):
                found.add(id(getattr(module, name).base_layer))
    return found


@contextlib.contextmanager
def frozen_weights_in(model: torch.nn.Module, dtype: Optional[torch.dtype]):
    """While inside, frozen fp32 `nn.Linear` weights and biases of `model` are parameters of `dtype` (what autocast
    computes in; None: nothing changes); yields how many layers. Call it inside `training_projections`."""
    if dtype is None or dtype == torch.float32:
        yield 0
        return
    skip = _dora_base_layers(model) | _fused_qkv_base_layers(model)
    swapped = []
    for module in model.modules():
        if (type(module) is not torch.nn.Linear or id(module) in skip or module.weight.requires_grad
                or module.weight.dtype != torch.float32
                or (module.bias is not None and (module.bias.requires_grad or module.bias.dtype != torch.float32))):
            continue
        originals = {"weight": module.weight, "bias": module.bias}
        for name, original in originals.items():
            if original is not None:
                with torch.no_grad():
                    # The same rounding autocast applies at every step (round to nearest even), done once.
                    setattr(module, name, torch.nn.Parameter(original.to(dtype), requires_grad=False))
        swapped.append((module, originals))
    try:
        yield len(swapped)
    finally:
        for module, originals in swapped:
            for name, original in originals.items():
                if original is not None:
                    setattr(module, name, original)


def dequantized_scales(state) -> torch.Tensor:
    """The fp32 block scales of a bitsandbytes 4-bit quantization state, computed as `dequantize_4bit` computes them
    at every use (for a double-quantized state: the 8-bit scales dequantized, plus their offset)."""
    import bitsandbytes as bnb

    with torch.no_grad():
        if not state.nested:
            return state.absmax.float()
        absmax = bnb.functional.dequantize_blockwise(state.absmax, state.state2)
        absmax += state.offset
        return absmax.float()


@contextlib.contextmanager
def frozen_4bit_weights_in(model: torch.nn.Module):
    """While inside, each double-quantized bitsandbytes 4-bit weight of `model` carries its block scales
    dequantized, in fp32, and (outside DoRA) dequantizes straight into its layer's compute dtype; yields how many
    weights.

    Why: the paper's QLoRA and QDoRA quantize the 4-bit weights' per-block scales (absmax) once more, to 8 bits
    (`bnb_4bit_use_double_quant`). bitsandbytes then dequantizes those scales again every time it dequantizes a
    weight: two small kernels (the 8-bit dequantization and the offset's addition) before every 4-bit layer's
    forward (on a GPU, where batches of over 1,536 tokens, as BERTimbau's are, take bitsandbytes' dequantize-then-
    GEMM path; a CPU does it inside one operation), every input gradient and, for QDoRA, every weight norm. And
    each input gradient dequantized the weight in the dtype it was quantized from (fp32), then cast it to the
    compute dtype (bf16): a third kernel, and for BERTimbau-Large ~2.4 GB read and written per step for nothing.
    By bitsandbytes' code that is 351 kernels per BERTimbau-Base QLoRA step with peft's layers (eagerly ~2,300 in
    all; common/fused_qkv.py stacks QLoRA's query, key and value and does the same for them), 402 for QDoRA
    (Large: 711 and 810).
    The weights are frozen, so the scales never change: dequantized once when training starts, exactly as
    bitsandbytes computes them (`dequantize_4bit`'s nested branch; its CPU inference path keeps them so too), and
    a weight dequantized into bf16 is the fp32 value rounded once, as the cast rounded it. Every layer computes
    exactly what it computed before (tests/test_training_step.py compares losses and gradients bit for bit on a
    CPU, where it also counts the operations saved). DoRA's base layers keep dequantizing into fp32: DoRA's weight
    norm reads them so. It costs 4 bytes per 64 weights while training (BERTimbau-Base 5 MB, Large 19 MB); the
    quantization states are back when training ends: saving, merging and evaluation see the model unchanged.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        yield 0
        return
    dora_bases = _dora_base_layers(model)
    swapped = []
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):  # peft's wrappers only point to their base layer's weight
            continue
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if not isinstance(weight, bnb.nn.Params4bit) or state is None or not state.nested:
            continue
        absmax = dequantized_scales(state)
        compute = module.compute_dtype
        into = compute if compute in (torch.bfloat16, torch.float16) and id(module) not in dora_bases else state.dtype
        flat = bnb.functional.QuantState(absmax=absmax, shape=state.shape, code=state.code, blocksize=state.blocksize,
                                         quant_type=state.quant_type, dtype=into)
        weight.quant_state = flat
        swapped.append((module, state, flat))
    try:
        yield len(swapped)
    finally:
        for module, state, flat in swapped:
            # The module's weight as it is now: on a CPU peft's DoRA replaces it by a copy (with the same state) at
            # every weight norm. bitsandbytes repacks a weight for its CPU inference kernel in place, with the state
            # it finds then: a weight repacked with the flat state keeps it.
            weight = module.weight
            if weight.quant_state is flat and not getattr(flat, "packing_format_for_cpu", False):
                weight.quant_state = state
