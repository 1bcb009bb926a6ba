"""The whole training step in one CUDA graph per batch shape: forward, backward, gradient clipping and AdamW.

Why: measured on an H200 (docs/speed.md), BERTimbau-Base LoRA compiled with torch.compile's CUDA graph trees
(`mode="reduce-overhead"`, a forward and a backward graph a step) kept the GPU busy only 42% of the time in the
Trainer: the CPU still spent about 10 ms a step launching the two graphs, checking the compiled function's guards,
and running the optimizer and the clipping in Python. Captured whole, a step is one graph launch, and the CPU
queues the next steps while the GPU works: the GPU is busy 79-93% of the time for every method and size, eager or
compiled, 4.4x-9.2x the eager steps of the same run.

How, following PyTorch's "whole network capture" recipe (CUDA semantics notes, CUDA Graphs):
- a batch shape's first `warmup` steps run uncaptured on a side stream. They are real training steps; they also
  create the optimizer's state, the libraries' workspaces and, compiled, the kernels.
- at the next step of that shape, the step is captured with the batch copied into static input tensors, then the
  graph is replayed. Capturing runs nothing, so that replay is this batch's step.
- from then on a step of that shape copies the batch into the static inputs, writes the learning rate into the
  device tensor the captured AdamW reads, replays the graph, and clones the loss and the gradient norm out.
- what the step computes from Python values is fixed at capture: AdamW's betas, eps and weight decay, and
  max_grad_norm (constant in a run). The learning rate, which the scheduler changes at every step, is not: a
  tensor during capture, written before every replay.
- every graph of a run shares one memory pool. They never run at the same time, and each replay reads only memory
  that persists between steps (weights, optimizer state, static inputs, learning rates) or that the same replay
  wrote before; the outputs are cloned before the next replay can overwrite them.
- dropout stays random: a captured graph draws new random numbers at each replay (PyTorch registers the
  generator with the graph).

Needs: a CUDA GPU, one process, no gradient accumulation, torch's fused AdamW with the clipping folded in
(common/optim.py), and a step that never reads a GPU value on the host (tests/test_training_step.py).
`common.model.resolve_cuda_graphs` checks all of it; where a capture fails anyway, the run warns once and goes on
uncaptured.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Callable, Optional

import torch

logger = logging.getLogger("bertimbau_qa")

# Uncaptured steps of a shape before it is captured. PyTorch's recipe warms up three iterations; two suffice here:
# the first creates the optimizer state and compiles, the second runs what the capture will record.
WARMUP_STEPS = 2


def capture_cuda_graph(step: Callable[[], tuple], *, pool, stream) -> tuple[Callable[[], None], tuple]:
    """Record `step` in a CUDA graph (nothing runs); (replay, the step's output tensors, static)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, stream=stream):
        outputs = step()
    return graph.replay, outputs


class StepGraphs:
    """Runs whole training steps, captured once per batch shape (see the module docstring).

    `train_step(inputs)` does one real step (forward, backward, clipping, optimizer step) and returns the detached
    loss and the gradient norm. `capture` records such a step and returns (replay, outputs); tests pass a CPU
    stand-in for CUDA graphs.
    """

    def __init__(self, *, optimizer: torch.optim.Optimizer, train_step: Callable[[dict], tuple],
                 zero_grad: Callable[[], None], warmup: int = WARMUP_STEPS, capture: Optional[Callable] = None):
        self.optimizer, self.train_step, self.zero_grad, self.warmup = optimizer, train_step, zero_grad, warmup
        on_gpu = capture is None
        self.stream = torch.cuda.Stream() if on_gpu else None
        self.pool = torch.cuda.graph_pool_handle() if on_gpu else None
        self.capture = capture or (lambda step: capture_cuda_graph(step, pool=self.pool, stream=self.stream))
        self.graphs: dict = {}  # shape key -> (replay, static inputs, (loss, grad norm))
        self.seen = Counter()
        self.learning_rates: Optional[list] = None  # device tensors the captured optimizer reads, one per group
        self.disabled_because: Optional[str] = None
        self.captures = self.replays = self.uncaptured = 0

    def step(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on `inputs` (device tensors); (loss, gradient norm), both fresh tensors."""
        key = tuple((name, tuple(value.shape), value.dtype) for name, value in sorted(inputs.items()))
        if key in self.graphs:
            return self._replay(key, inputs)
        self.seen[key] += 1
        if self.disabled_because is not None or self.seen[key] <= self.warmup:
            return self._uncaptured(inputs)
        try:
            self._capture(key, inputs)
        except Exception as exc:  # noqa: BLE001 - whatever made the capture fail, the run goes on uncaptured
            self.disabled_because = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            logger.warning("Capturing the training step in a CUDA graph failed (%s); the run goes on without "
                           "step graphs", self.disabled_because)
            self.graphs.pop(key, None)
            self.zero_grad()
            return self._uncaptured(inputs)
        return self._replay(key, inputs)

    def _side_stream(self):
        if self.stream is None:
            return contextlib.nullcontext()
        self.stream.wait_stream(torch.cuda.current_stream())
        return torch.cuda.stream(self.stream)

    def _uncaptured(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        self.uncaptured += 1
        with self._side_stream():
            loss, norm = self.train_step(inputs)
        if self.stream is not None:
            torch.cuda.current_stream().wait_stream(self.stream)
        return loss, norm

    def _capture(self, key, inputs: dict) -> None:
        groups = self.optimizer.param_groups
        if self.learning_rates is None:
            device = next(p.device for g in groups for p in g["params"])
            # float32: what the fused AdamW kernel reads a tensor learning rate as
            self.learning_rates = [torch.zeros((), dtype=torch.float32, device=device) for _ in groups]
        static = {name: value.clone() for name, value in inputs.items()}  # outside the pool: they persist
        floats = [group["lr"] for group in groups]
        capturable = [group.get("capturable", False) for group in groups]
        self.zero_grad()  # the gradients are then made inside the graph, at addresses its replays write
        try:
            for group, rate in zip(groups, self.learning_rates):
                group["lr"] = rate
                group["capturable"] = self.stream is not None  # torch checks this flag while a CUDA capture runs
            replay, outputs = self.capture(lambda: self.train_step(static))
        finally:
            for group, rate, flag in zip(groups, floats, capturable):
                group["lr"], group["capturable"] = rate, flag
        self.graphs[key] = (replay, static, outputs)
        self.captures += 1

    def _write_learning_rates(self) -> None:
        for group, rate in zip(self.optimizer.param_groups, self.learning_rates):
            rate.fill_(group["lr"])  # the scheduler's float: a small kernel, no wait

    def _replay(self, key, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        replay, static, (loss, norm) = self.graphs[key]
        for name, value in inputs.items():
            static[name].copy_(value, non_blocking=True)
        self._write_learning_rates()
        replay()
        self.replays += 1
        # Cloned now, in stream order: the next replay writes the same memory.
        return loss.clone(), norm.clone()
