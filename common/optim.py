"""Gradient clipping folded into torch's fused AdamW step.

Why not `clip_grad_norm_` then `AdamW.step` (what the Trainer does): clipping multiplies every gradient in place,
one more pass over all of them (for BERTimbau-Large full fine-tuning 1.3 GB read and written per step) and a few
more kernel launches, before AdamW reads them again. torch's fused AdamW already divides each gradient by a
`grad_scale` tensor as it reads it: it is how `torch.amp.GradScaler` unscales fp16 gradients inside the step.
Passing 1 / (clip coefficient) there clips in the same kernel. The gradient norm and the coefficient are
computed exactly as `clip_grad_norm_` computes them (torch's own `get_total_norm`), so the only difference is
rounding: g / (1/c) instead of g * c changes the last bits of a clipped gradient (tests/test_optim.py), and
nothing at all when the norm is under the threshold (c = 1).

Used when the optimizer is the fused AdamW (`--optim adamw_torch_fused`, the default) and no fp16 loss scaler
owns `grad_scale`; DeepSpeed and FSDP clip their sharded gradients themselves. `--optim adamw_torch` goes back to
the Trainer's separate clipping.
"""
from __future__ import annotations

import torch


class AdamWWithFoldedClipping(torch.optim.AdamW):
    """torch's AdamW (fused) whose next step applies the clipping that `clip_before_step` computed."""

    # Set when the step already ran inside a whole training step (common/step_graph.py): the Trainer's own call of
    # `step()` that follows then does nothing.
    step_already_taken = False

    def clip_before_step(self, max_norm: float) -> torch.Tensor:
        """The gradients' total 2-norm (what `clip_grad_norm_` returns); the next `step` clips them to max_norm.

        Nothing here waits for the GPU: the coefficient stays a device tensor that the fused kernel reads.
        """
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        total_norm = torch.nn.utils.get_total_norm(grads, 2.0, error_if_nonfinite=False, foreach=True)
        # clip_grad_norm_'s coefficient, to the digit: max_norm / (norm + 1e-6), at most 1.
        coefficient = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
        self.grad_scale = coefficient.float().reciprocal()
        return total_norm

    @torch.no_grad()
    def step(self, closure=None):
        if self.step_already_taken:
            self.step_already_taken = False
            return None
        try:
            return super().step(closure)
        finally:
            self.grad_scale = None  # one clip per step: a step without clip_before_step does not clip


def is_fused_adamw(optimizer_cls, optimizer_kwargs: dict) -> bool:
    """Whether the Trainer's choice of optimizer is torch's fused AdamW, the one this class extends."""
    return optimizer_cls is torch.optim.AdamW and bool(optimizer_kwargs.get("fused"))
