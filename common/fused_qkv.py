"""BERT's query, key and value projections while training: one GEMM for LoRA's and QLoRA's frozen ones, and on the
tokens as one matrix for every method, so that the compiler can batch them.

Why one GEMM: LoRA freezes the base weights, and BERT's attention computes its query, key and value projections
as three GEMMs on the same input. At the paper's batch (~3,450 real tokens for Base) one 768x768 GEMM fills about
0.6 of a wave of an H100's tiles, so three of them run three partial waves where one 768x2304 GEMM runs two full
ones; backward, the input's gradient is one GEMM instead of three GEMMs and two additions. The concatenated weight
is made once, in the dtype autocast computes in (bf16 on current GPUs), so the three casts of each frozen weight at
every step go too; eagerly a Base step launches about a dozen kernels fewer per layer. The numbers stay those of
peft's layers: each projection is the same dot products (the base weights, then the LoRA branch added, in peft's
order); dropout masks are drawn in the same order (tests/test_fused_qkv.py). Only the GEMM's blocking may change
the last bits of a sum. It applies to peft LoRA on query, key and value (the paper's target modules), weights
frozen, adapters unmerged. DoRA computes its base output inside peft's variant: it keeps peft's layers.

QLoRA the same way: the three 4-bit weights stacked as one (their packed values and block scales one after the
other, made once), so that bitsandbytes dequantizes and multiplies once where it did three times, forward and
backward. The stacked weight's scales are dequantized once and it dequantizes straight into the compute dtype, as
common/frozen_weights.py does for the other 4-bit layers; the forward's numbers are peft's (up to GEMM blocking),
and peft's copy of each 4-bit output ("defensively", peft/tuners/lora/bnb.py) is not needed. Per BERTimbau layer on
a GPU, eagerly (bitsandbytes' dequantize-then-GEMM path): forward 4 kernels fewer (2 dequantizations, 2 GEMMs)
besides peft's 3 copies, backward 4 fewer (2 dequantizations, 2 GEMMs) besides the double quantization's scales.

Why the tokens as one matrix: `linear` on a (batch, length, hidden) input computes on the (batch x length, hidden)
matrix anyway, so eagerly the loss is the same to the bit; backward, the layer input's gradient adds the same four
terms (query, key, value, the residual) in another order, equal to rounding (tests/test_fused_qkv.py). Compiled,
inductor's batch-linear passes (common/compile.py) only recognise linears on 2-D inputs: they then make the three
projections of full fine-tuning one GEMM of concatenated weights, and the LoRA/DoRA branches' A and B products (and
QLoRA's) batched GEMMs, forward and backward.

Both only while training (`QATrainer.train`): evaluation, saving and export see the model unchanged. The attention
forward below is transformers' own `BertSelfAttention.forward` with the three projections replaced, pinned to the
source it was written against (a changed transformers keeps its own forward, with a warning).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from importlib import metadata
from typing import Optional

import torch
from transformers.models.bert.modeling_bert import ALL_ATTENTION_FUNCTIONS, BertSelfAttention, eager_attention_forward

from .frozen_weights import dequantized_scales
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


def _plain_4bit_lora(module) -> bool:
    """A peft QLoRA layer: a frozen bitsandbytes 4-bit base Linear plus one vanilla LoRA branch."""
    try:
        import bitsandbytes as bnb
        from peft.tuners.lora.bnb import Linear4bit as Lora4bit
    except ImportError:
        return False
    base = getattr(module, "base_layer", None)
    state = getattr(getattr(base, "weight", None), "quant_state", None)
    return (isinstance(module, Lora4bit) and not module.merged and not module.disable_adapters
            and len(module.active_adapters) == 1 and module.active_adapters[0] in module.lora_A
            and module.active_adapters[0] not in getattr(module, "lora_variant", {}) and not module.fan_in_fan_out
            and type(base) is bnb.nn.Linear4bit and isinstance(base.weight, bnb.nn.Params4bit) and state is not None
            and base.compute_dtype is not None and base.in_features % state.blocksize == 0
            and not any(p.requires_grad for p in base.parameters()))


def _fusable(attention) -> Optional[str]:
    """"lora" or "lora4bit" when query, key and value are plain LoRA layers of one kind, all three with a bias or
    none (BERT's have one each) and, for 4-bit bases, quantized alike; else None."""
    projections = [getattr(attention, name, None) for name in ("query", "key", "value")]
    if len({p.base_layer.bias is None for p in projections if hasattr(p, "base_layer")}) != 1:
        return None
    if all(_plain_lora(p) for p in projections):
        return "lora"
    if all(_plain_4bit_lora(p) for p in projections):
        states = [p.base_layer.weight.quant_state for p in projections]
        alike = {(s.blocksize, s.quant_type, s.nested, p.base_layer.compute_dtype) for s, p in zip(states, projections)}
        if len(alike) == 1 and all(torch.equal(s.code, states[0].code) for s in states):
            return "lora4bit"
    return None


def _lora_branch(module, tokens: torch.Tensor) -> torch.Tensor:
    """What peft's LoRA Linear adds to its base layer's output (peft/tuners/lora/layer.py, Linear.forward)."""
    adapter = module.active_adapters[0]
    lora_A, lora_B = module.lora_A[adapter], module.lora_B[adapter]
    tokens = module._cast_input_dtype(tokens, lora_A.weight.dtype)
    return lora_B(lora_A(module.lora_dropout[adapter](tokens))) * module.scaling[adapter]


def _fused_projections(self, tokens):
    """Query, key and value of plain LoRA layers: the frozen ones as one GEMM, each LoRA branch added in peft's
    order (base output, then the branch)."""
    projected = torch.nn.functional.linear(tokens, self.fused_qkv_weight, self.fused_qkv_bias).split(
        self.all_head_size, dim=-1)
    return [base + _lora_branch(module, tokens) for base, module in zip(projected, (self.query, self.key, self.value))]


def _fused_4bit_projections(self, tokens):
    """Query, key and value of QLoRA layers: the three 4-bit bases as one 4-bit weight, dequantized and multiplied
    once, then each LoRA branch added as peft's QLoRA layer adds it (peft/tuners/lora/bnb.py, Linear4bit.forward)."""
    import bitsandbytes as bnb

    base = self.query.base_layer  # all three compute alike (_fusable)
    # bitsandbytes' Linear4bit.forward: the input in the compute dtype, the output back in the input's dtype.
    projected = bnb.matmul_4bit(tokens.to(base.compute_dtype), self.fused_qkv_weight, bias=self.fused_qkv_bias,
                                quant_state=self.fused_qkv_state).to(tokens.dtype)
    autocast = torch.is_autocast_enabled()  # peft casts the branch's input and output only without autocast
    outputs = []
    # peft clones each base output "defensively" before adding to it; a split of the fused output is not a view
    # that is written to, so nothing needs the copy (the same values).
    for part, module in zip(projected.split(self.all_head_size, dim=-1), (self.query, self.key, self.value)):
        adapter = module.active_adapters[0]
        lora_A, lora_B = module.lora_A[adapter], module.lora_B[adapter]
        x = tokens if autocast else module._cast_input_dtype(tokens, lora_A.weight.dtype)
        branch = lora_B(lora_A(module.lora_dropout[adapter](x))) * module.scaling[adapter]
        outputs.append(part + (branch if autocast else branch.to(part.dtype)))
    return outputs


def _own_projections(self, tokens):
    """Query, key and value through the layers themselves (full fine-tuning, DoRA, QLoRA, QDoRA)."""
    return [self.query(tokens), self.key(tokens), self.value(tokens)]


def _self_attention_forward(self, hidden_states, attention_mask=None, cache=None, **kwargs):
    """transformers 5.24's BertSelfAttention.forward, the projections computed on the tokens as one matrix."""
    if cache is not None:  # a decoder's key/value cache: not BERT QA; transformers' own forward
        return BertSelfAttention.forward(self, hidden_states, attention_mask=attention_mask, cache=cache, **kwargs)
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.attention_head_size)
    tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
    query_layer, key_layer, value_layer = (
        projected.view(*hidden_shape).transpose(1, 2) for projected in self.training_projections(tokens))
    attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                eager_attention_forward)
    attn_output, attn_weights = attention_interface(
        self, query_layer, key_layer, value_layer, attention_mask,
        dropout=0.0 if not self.training else self.dropout.p, scaling=self.scaling, **kwargs)
    attn_output = attn_output.reshape(*input_shape, -1).contiguous()
    return attn_output, attn_weights


@functools.lru_cache(maxsize=None)
def _training_class(cls: type, fused: Optional[str]) -> type:
    """`cls` with the forward above; one class per kind of layer, shared by all layers of that kind.

    Why a class and not a per-layer `layer.forward = partial(...)`: torch.compile guards on the identity of an
    instance's forward, so with `--compile_scope layers` every layer would be compiled again (and past the
    compiler's limit of 8, the remaining layers of BERTimbau-Large ran eagerly). All layers of one class share
    one compilation; the fused weights are buffers, which the compiler takes as inputs.
    """
    projections = {"lora": _fused_projections, "lora4bit": _fused_4bit_projections, None: _own_projections}[fused]
    return type(f"Training{cls.__name__}", (cls,), {"forward": _self_attention_forward,
                                                     "training_projections": projections,
                                                     "__module__": __name__})


def forward_source_matches() -> bool:
    return source_hash(BertSelfAttention.forward) == BERT_SELF_ATTENTION_FORWARD_SHA256


@contextlib.contextmanager
def training_projections(model: torch.nn.Module, *, dtype: torch.dtype | None = None):
    """While inside, every BERT self-attention computes its projections on the tokens as one matrix, and those whose
    query, key and value are plain LoRA layers compute the three frozen projections as one GEMM; yields how many
    layers do the latter. `dtype`: what autocast computes in during training (None: the weights' own dtype)."""
    layers = [m for m in model.modules() if isinstance(m, BertSelfAttention)]
    if layers and not forward_source_matches():
        logger.warning("transformers %s: BertSelfAttention.forward is not the source the training projections were "
                       "written against (transformers %s); attention keeps transformers' forward (LoRA keeps three "
                       "projections)", metadata.version("transformers"), ", ".join(TRANSFORMERS_TESTED))
        layers = []
    fused = 0
    original_classes = [layer.__class__ for layer in layers]
    for layer, original_class in zip(layers, original_classes):
        kind = _fusable(layer)
        if kind:
            bases = [getattr(layer, name).base_layer for name in ("query", "key", "value")]
            if kind == "lora":
                target = dtype or bases[0].weight.dtype
                with torch.no_grad():  # frozen: made once; autocast would cast each weight to `target` at every step
                    weight = torch.cat([b.weight for b in bases]).to(target)
                    bias = None if bases[0].bias is None else torch.cat([b.bias for b in bases]).to(target)
            else:
                weight, bias, layer.fused_qkv_state = _concatenated_4bit(bases)
            for tensor in (weight, bias):
                if tensor is not None:
                    # Like a parameter for CUDA graphs: replayed in place, not copied into the graph's inputs each step.
                    torch._dynamo.mark_static_address(tensor)
            # Not persistent: the state dict (checkpoints saved while training) stays as it is.
            layer.register_buffer("fused_qkv_weight", weight, persistent=False)
            layer.register_buffer("fused_qkv_bias", bias, persistent=False)
            fused += 1
        layer.__class__ = _training_class(original_class, kind)
    try:
        yield fused
    finally:
        for layer, original_class in zip(layers, original_classes):
            layer.__class__ = original_class
            for name in ("fused_qkv_weight", "fused_qkv_bias"):
                layer._buffers.pop(name, None)
            layer.__dict__.pop("fused_qkv_state", None)


def _concatenated_4bit(bases) -> tuple:
    """(packed 4-bit weight, bias, quantization state) of three bitsandbytes 4-bit layers stacked as one.

    A 4-bit weight is its rows' values packed two to a byte in row order, with one scale per block of `blocksize`
    values; the rows hold whole blocks (in_features % blocksize == 0, checked in _fusable), so the three packed
    weights one after the other, with their scales one after the other, are the stacked weight. The scales are
    dequantized to fp32 here, as bitsandbytes does for a double-quantized weight at every use, and the weight
    dequantizes straight into the compute dtype (see common/frozen_weights.py: the same values, rounded once).
    """
    import bitsandbytes as bnb

    states = [b.weight.quant_state for b in bases]
    scales = [dequantized_scales(state) for state in states]
    with torch.no_grad():
        weight = torch.cat([b.weight.data.reshape(-1) for b in bases]).reshape(-1, 1)
        bias = None if bases[0].bias is None else torch.cat([b.bias.to(b.compute_dtype) for b in bases])
    first = states[0]
    state = bnb.functional.QuantState(absmax=torch.cat(scales), shape=torch.Size((sum(s.shape[0] for s in states),
                                      first.shape[1])), code=first.code, blocksize=first.blocksize,
                                      quant_type=first.quant_type, dtype=bases[0].compute_dtype)
    return weight, bias, state
