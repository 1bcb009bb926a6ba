"""The compiled training step: torch.compile with few shapes and no graph break.

Why: at the paper's batch sizes a BERTimbau step is ~3,400 (Base) or ~1,700 (Large) real tokens, and eagerly it
launches 1,200 to 7,700 small kernels. Compiled, the pointwise work is fused into fewer kernels (Base LoRA: 1,542
to 861 per step). On a GPU the step is then captured in CUDA graphs, by default the whole step in one graph
(common/step_graph.py), or with `--cuda_graphs trees` through `mode="reduce-overhead"` here (a forward and a
backward graph). A CUDA graph has fixed shapes, so batches are padded to buckets of `--bucket_width` tokens
(common/batches.py: 16 by default, 24 widths up to 384 tokens, 19 of them filled by the paper's batches); sequence
and batch dimensions are marked dynamic so that one compilation serves every bucket (unmarked, per-layer
compilation made 6 frames instead of 2 over the smoke model's 8 widths: tests/test_training_step.py) and each
bucket only records its own graph.

Scopes (`--compile_scope`), measured on an H200 at the paper's batches (docs/speed.md):
- `layers` (default): each encoder layer is compiled; all layers run the same code, so one compilation serves
  them all (12 s for BERTimbau-Large). The embeddings, the mask and the loss stay eager (a few dozen kernels).
  Inside the whole-step CUDA graph (common/step_graph.py) a layer costs no launch or guard check of its own:
  Large full fine-tuning 55.9 steps/s, against 46.9 for the eager step in the same graph.
- `model`: the whole forward and loss in one graph: Base LoRA 109.8 steps/s in the step graph, against 86.3 for
  the eager step, but after 60 s of compiling, more than it saves in the paper's 2 epochs (1.7 against 2.2 min).
  With torch.compile's own CUDA graphs (`--cuda_graphs trees`: a forward and a backward graph replay per step,
  the optimizer outside) it is the better scope: Base LoRA 92 steps/s, where `layers` paid a graph launch and
  a guard check per layer (37 steps/s).
Evaluation always runs eagerly (QATrainer.predict): its batches have other shapes.
With inductor, its batch-linear passes are on (BATCH_LINEAR_FUSION below): the query/key/value projections and their
LoRA/DoRA branches become fewer, batched GEMMs.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .patches import apply_compile_patches, prepare_4bit_layers_for_compile
from .trainer import forward_and_loss

logger = logging.getLogger("bertimbau_qa")


# Inductor's own passes (torch/_inductor/fx_passes/group_batch_fusion.py, off by default) that make independent
# linears on 2-D inputs fewer GEMMs; common/fused_qkv.py computes BERT's query/key/value on the tokens as one matrix
# while training so that they apply. `batch_linear_lhs`: linears of one input become one GEMM of concatenated
# weights (full fine-tuning's query, key and value; the frozen bases of DoRA's); `batch_linear`: linears of equal
# shapes on different inputs become one `bmm` (LoRA's and DoRA's A products of the three dropped-out inputs, then
# their B products). Forward and backward alike: for a 2-layer LoRA step, 22 GEMM kernels fewer
# (tests/test_fused_qkv.py). GEMMs this thin (tokens x 768 by 768 x 8) cost a launch's time whatever their size,
# and three 768x768 ones fill an H100's tiles in three partial waves where one 768x2304 GEMM fills two full ones.
# The same-input pass goes first, or the other would stack one input three times. Sets of 2 and up (their default
# is 5, tuned for recommendation models); the search reaches from the attention back to the A products.
BATCH_LINEAR_FUSION = {"batch_linear_lhs": {"min_fuse_set_size": 2},
                       "batch_linear": {"min_fuse_set_size": 2, "max_fuse_search_depth": 10}}


def _encoder(model) -> torch.nn.Module:
    """The encoder of a BERT-like model (its `.layer` list), through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix).encoder


def _mark_dynamic(tensor, dims) -> None:
    # maybe_: where the model's code does specialise a dimension, dynamo keeps it static instead of failing.
    for dim in dims:
        if dim < tensor.dim():
            torch._dynamo.maybe_mark_dynamic(tensor, dim)


def _mark_encoder_inputs(_module, args, kwargs):
    """Batch and sequence dimensions of the hidden states and the mask are dynamic from the first compilation."""
    hidden = args[0] if args else kwargs.get("hidden_states")
    if isinstance(hidden, torch.Tensor):
        _mark_dynamic(hidden, (0, 1))
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    if isinstance(mask, torch.Tensor):
        _mark_dynamic(mask, (0, 2, 3) if mask.dim() == 4 else (0, 1))


def compile_training_step(model, *, scope: str = "model", backend: str = "inductor",
                          cuda_graphs: bool = True) -> tuple[Callable, bool]:
    """Compile what a training step runs; (the step's forward-and-loss function, whether CUDA graphs are used).

    CUDA graphs (`mode="reduce-overhead"`) only with inductor on a CUDA GPU and when the caller allows them: with
    gradient accumulation the first micro-batch's gradients live in the graphs' memory while the next micro-batch
    replays over it, so `common/run.py` turns them off then (inductor's fused kernels stay). Other backends than
    inductor (e.g. "aot_eager") are for tests: they trace and partition the same graphs without generating kernels.
    """
    # The model may still be on the CPU here: the Trainer moves it when it is built.
    mode = "reduce-overhead" if cuda_graphs and torch.cuda.is_available() and backend == "inductor" else None
    apply_compile_patches()
    prepare_4bit_layers_for_compile(model)
    options = {"backend": backend, "dynamic": None}
    if backend == "inductor":  # torch.compile takes a mode or inductor options, not both: the mode's options here
        from torch._inductor import list_mode_options

        options["options"] = {**(list_mode_options(mode) if mode else {}),
                              "pre_grad_fusion_options": BATCH_LINEAR_FUSION}
    if scope == "layers":
        encoder = _encoder(model)
        for layer in encoder.layer:
            layer.compile(**options)  # in place: the module tree and state dict keep their names
        encoder.register_forward_pre_hook(_mark_encoder_inputs, with_kwargs=True)
        return forward_and_loss, mode == "reduce-overhead"
    if scope != "model":
        raise ValueError(f"compile scope {scope!r}: choose layers or model")
    compiled = torch.compile(forward_and_loss, **options)

    def compiled_forward_and_loss(model, inputs):
        for key, value in inputs.items():
            _mark_dynamic(value, (0, 1))
        return compiled(model, inputs)

    return compiled_forward_and_loss, mode == "reduce-overhead"


def planned_training_step(model, plan, *, scope: str, backend: str = "inductor") -> tuple[Callable, bool]:
    """(forward-and-loss function, whether torch.compile's CUDA graph trees run it) of a run's StepPlan
    (common.model.plan_training_step): compiled where the plan compiles, else the eager `forward_and_loss`; and
    SDPA's cuDNN kernels allowed only where the plan pads to few shapes (common/attention.py). Shared by
    common/run.py and the GPU benchmark's arms, so that an arm runs what a script runs."""
    from .attention import use_cudnn_attention

    use_cudnn_attention(plan.few_shapes)
    if not plan.compiled:
        return forward_and_loss, False
    return compile_training_step(model, scope=scope, backend=backend, cuda_graphs=plan.graphs == "trees")
