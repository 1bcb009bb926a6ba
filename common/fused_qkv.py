"""One GEMM for the frozen query, key and value projections while LoRA trains.

Why: LoRA freezes the base weights, and BERT's attention computes its query, key and value projections as three
GEMMs on the same input. At the paper's batch (~3,450 real tokens for Base) one 768x768 GEMM fills about 0.6 of a
wave of an H100's tiles, so three of them run three partial waves where one 768x2304 GEMM runs two full ones;
backward, the input's gradient is one GEMM instead of three GEMMs and two additions. The concatenated weight is
made once, in the dtype autocast computes in (bf16 on current GPUs), so the three casts of each frozen weight at
every step go too; eagerly a Base step launches about a dozen kernels fewer per layer.

The numbers stay those of peft's layers: each projection is the same dot products (the base weights, then the
LoRA branch added, in peft's order); dropout masks are drawn in the same order (tests/test_fused_qkv.py). Only
the GEMM's blocking may change the last bits of a sum.

Where it applies: peft LoRA on query, key and value (the paper's target modules), weights frozen, adapters
unmerged, during training only (evaluation, saving and export see the model unchanged). DoRA computes its base
output inside peft's variant and 4-bit bases are not plain weights: they keep peft's path. The attention forward
below is transformers' own `BertSelfAttention.forward` with the three projections replaced, pinned to the source it
was written against (a changed transformers keeps its own forward, with a warning).
"""
from __future__ import annotations

import contextlib
import logging
from importlib import metadata

import torch
from transformers.models.bert.modeling_bert import ALL_ATTENTION_FUNCTIONS, BertSelfAttention, eager_attention_forward

from .patches import source_hash

logger = logging.getLogger("bertimbau_qa")

TRANSFORMERS_TESTED = ("5.24.0",)
BERT_SELF_ATTENTION_FORWARD_SHA256 = "e444e7233b5a9365"  # transformers.models.bert.modeling_bert.BertSelfAttention.forward


def _plain_lora(module) -> bool:
    """A peft LoRA Linear whose output is its frozen base Linear plus one vanilla LoRA branch."""
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:
        return False
    return (isinstance(module, LoraLinear) and not module.merged and not module.disable_adapters
            and len(module.active_adapters) == 1 and module.active_adapters[0] in module.lora_A
            and module.active_adapters[0] not in getattr(module, "lora_variant", {}) and not module.fan_in_fan_out
            and type(module.base_layer) is torch.nn.Linear
            and not any(p.requires_grad for p in module.base_layer.parameters()))


def _fusable(attention) -> bool:
    """Query, key and value are plain LoRA layers, all three with a bias or none (BERT's have one each)."""
    projections = [getattr(attention, name, None) for name in ("query", "key", "value")]
    return all(_plain_lora(p) for p in projections) and len({p.base_layer.bias is None for p in projections}) == 1


def _lora_branch(module, x: torch.Tensor) -> torch.Tensor:
    """What peft's LoRA Linear adds to its base layer's output (peft/tuners/lora/layer.py, Linear.forward).

    Computed on the tokens as one 2-D matrix, which is what `linear` does inside anyway (the same GEMM, the same
    numbers): compiled, inductor's batch-linear pass (common/compile.py) only recognises 2-D linears, and then
    turns query's, key's and value's LoRA A (and B) products into one batched GEMM each.
    """
    adapter = module.active_adapters[0]
    lora_A, lora_B = module.lora_A[adapter], module.lora_B[adapter]
    x = module._cast_input_dtype(x, lora_A.weight.dtype)
    tokens = x.reshape(-1, x.shape[-1])
    branch = lora_B(lora_A(module.lora_dropout[adapter](tokens))) * module.scaling[adapter]
    return branch.view(*x.shape[:-1], branch.shape[-1])


def _fused_self_attention_forward(self, weight, bias, hidden_states, attention_mask=None, cache=None, **kwargs):
    """transformers 5.24's BertSelfAttention.forward, the three projections computed as one GEMM."""
    if cache is not None:  # a decoder's key/value cache: not BERT QA; transformers' own forward
        return type(self).forward(self, hidden_states, attention_mask=attention_mask, cache=cache, **kwargs)
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.attention_head_size)
    projected = torch.nn.functional.linear(hidden_states, weight, bias).split(self.all_head_size, dim=-1)
    query_layer, key_layer, value_layer = (  # in peft's order: base output, then the LoRA branch added
        (base + _lora_branch(module, hidden_states)).view(*hidden_shape).transpose(1, 2)
        for base, module in zip(projected, (self.query, self.key, self.value)))
    attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                eager_attention_forward)
    attn_output, attn_weights = attention_interface(
        self, query_layer, key_layer, value_layer, attention_mask,
        dropout=0.0 if not self.training else self.dropout.p, scaling=self.scaling, **kwargs)
    attn_output = attn_output.reshape(*input_shape, -1).contiguous()
    return attn_output, attn_weights


def forward_source_matches() -> bool:
    return source_hash(BertSelfAttention.forward) == BERT_SELF_ATTENTION_FORWARD_SHA256


@contextlib.contextmanager
def fused_frozen_qkv(model: torch.nn.Module, *, dtype: torch.dtype | None = None):
    """While inside, every BERT self-attention whose query, key and value are plain LoRA layers computes the three
    frozen projections as one GEMM; yields how many layers do. `dtype`: what autocast computes in during training
    (None: the weights' own dtype)."""
    layers = [m for m in model.modules() if isinstance(m, BertSelfAttention) and _fusable(m)]
    if layers and not forward_source_matches():
        logger.warning("transformers %s: BertSelfAttention.forward is not the source the fused query/key/value "
                       "projection was written against (transformers %s); LoRA keeps three projections",
                       metadata.version("transformers"), ", ".join(TRANSFORMERS_TESTED))
        layers = []
    for layer in layers:
        bases = [getattr(layer, name).base_layer for name in ("query", "key", "value")]
        target = dtype or bases[0].weight.dtype
        with torch.no_grad():  # frozen: made once; autocast would cast each weight to `target` at every step
            weight = torch.cat([b.weight for b in bases]).to(target)
            bias = None if bases[0].bias is None else torch.cat([b.bias for b in bases]).to(target)
        for tensor in (weight, bias):
            if tensor is not None:
                # Like a parameter for CUDA graphs: replayed in place, not copied into the graph's inputs each step.
                torch._dynamo.mark_static_address(tensor)

        def forward(*args, _layer=layer, _weight=weight, _bias=bias, **kwargs):
            return _fused_self_attention_forward(_layer, _weight, _bias, *args, **kwargs)

        layer.forward = forward  # an instance attribute: the class and its state dict stay as they are
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward
