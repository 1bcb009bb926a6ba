"""GPU benchmark: the training step eager and on the fast paths, side by side, for both model sizes and all five methods.

    python -m common.bench --gpu                  # one CUDA GPU (estimated 8-10 minutes)
    python -m common.bench --gpu --time_budget_s 420  # starts no arm after 7 minutes; says which did not run
    python -m common.bench --gpu --out_dir results  # also writes results/bench_gpu.csv
    python -m common.bench --gpu --dry            # the same code paths on a CPU with a tiny model (for tests)

Each configuration (model size x method) is trained through the scripts' own Trainer set-up (common/trainer.py)
on synthetic windows whose lengths follow Portuguese SQuAD at 384/128 (random weights and token ids: nothing to
download), with the paper's batch sizes (16 Base, 8 Large) and bf16, in arms (ARMS below; `--arms` picks them):
- eager: `--torch_compile false --cuda_graphs off` (the sync-free step and packed batches, no compilation);
- graphs: the eager step captured whole in CUDA graphs, one per bucket of 16 tokens (`--torch_compile false`);
- compiled-layers / compiled-model: compiled per encoder layer (seconds) or as a whole (about a minute for
  Base), captured whole (`--cuda_graphs step`, the default);
- trees-*: torch.compile's reduce-overhead mode, forward and backward graphs (`--cuda_graphs trees`);
- throughput-*: `--throughput` (4x batch).
An arm name may end in `/N`: the same arm with batches padded to buckets of N tokens (`--bucket_width N`), e.g.
`graphs/64` against `graphs` (16).
By default every configuration gets eager and compiled-layers (the scripts' default on a GPU) side by side; the
extra arms (full fine-tuning in throughput mode; for the goals' two configurations, Base LoRA and Large full, the
step captured uncompiled, and Base LoRA with the earlier buckets of 64) run after all of those, so that a run cut
short (`--time_budget_s`, or a killed job: the CSV is written after every arm) loses extras first.
Warm-up steps first visit each bucket the measured steps use three times (compilation and CUDA-graph capture
happen there and are reported as compile/warm-up seconds), then `--timed_steps` steps in length-grouped order are
timed, then a few steps run under the profiler for CUDA kernels per step and the fraction of wall time the GPU was
busy. During the timed steps `torch.cuda.set_sync_debug_mode` counts host-device synchronisations (expected: 0)
and the row names the Python lines that made them (`sync_sites`).
"2 epochs" projects the measured real-token rate onto the full training set, beside the paper's measured time.
`BENCH_PROFILE_LOG=FILE` appends each arm's profile (busiest CPU operations and GPU kernels) to FILE.
"""
from __future__ import annotations

import csv
import gc
import math
import os
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .batches import BUCKET, PackedWindows, batch_collator, is_bucket_width, padded_length
from .config import apply_throughput, layered_defaults
from .step_graph import WARMUP_STEPS
from .trainer import graphs_that_ran

# BERTimbau shapes (12 layers/768/12 heads and 24/1024/16; vocabulary 29,794: docs/paper.md).
GPU_SHAPES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
DRY_SHAPES = {size: {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
              for size in GPU_SHAPES}
BERTIMBAU_VOCAB_SIZE = 29794
DRY_VOCAB_SIZE = 512

# Full training set in windows: the paper's 87,599 training questions x 1.064 windows per question at 384/128
# (measured on the public Portuguese SQuAD sample with the BERTimbau vocabulary).
FULL_TRAIN_FEATURES = round(87599 * 1.064)
# Window lengths (real tokens) on that sample: mean 215.5, median 202, 90th percentile 347. A log-normal with
# median 202 and sigma 0.36 has mean 215.5; capped at 384 like the windows.
LENGTH_MEDIAN, LENGTH_SIGMA = 202, 0.36

# The paper's training wall-clock for 2 epochs, seconds (its results table: full at lr 4.25e-5, PEFT at 2e-4, the
# scripts' defaults; one RTX A4500).
PAPER_TIME_2_EPOCHS_S = {
    ("base", "full"): 6004, ("base", "lora"): 1897, ("base", "qlora"): 1803, ("base", "dora"): 2423,
    ("base", "qdora"): 2523,
    ("large", "full"): 18939, ("large", "lora"): 5021, ("large", "qlora"): 4755, ("large", "dora"): 6457,
    ("large", "qdora"): 7050,
}

# Dense bf16 peak of the GPU, for model-FLOPs utilisation (vendor data sheets, without sparsity).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A4500": 94.6e12, "L4": 121e12}
# Step graphs: the uncaptured steps, then the capture (common/step_graph.py); CUDA graph trees: a warm-up run, a
# recording, then replays (three steps as well).
WARMUP_PER_BUCKET = WARMUP_STEPS + 1


def sample_lengths(n: int, *, max_seq_length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.normal(math.log(LENGTH_MEDIAN), LENGTH_SIGMA, size=n)).round().astype(int)
    return np.clip(lengths, 48, max_seq_length)


def synthetic_windows(n: int, *, vocab_size: int, max_seq_length: int, seed: int) -> PackedWindows:
    """Windows shaped like Portuguese SQuAD ones ([CLS] question [SEP] context [SEP], random ids), packed."""
    rng = np.random.default_rng(seed + 1)
    lengths = sample_lengths(n, max_seq_length=max_seq_length, seed=seed).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ids = rng.integers(5, vocab_size, size=int(lengths.sum())).astype(np.int32)
    types = np.ones(int(lengths.sum()), dtype=np.int8)
    questions = rng.integers(8, 24, size=n)
    for start, length, question in zip(starts, lengths, questions):
        ids[start], ids[start + question + 1], ids[start + length - 1] = 2, 3, 3  # [CLS], [SEP], [SEP]
        types[start:start + question + 2] = 0
    answer_starts = np.array([rng.integers(q + 2, l - 1) for q, l in zip(questions, lengths)], dtype=np.int64)
    answer_ends = np.minimum(answer_starts + rng.integers(0, 6, size=n), lengths - 2)
    return PackedWindows(input_ids=ids, token_type_ids=types, starts=starts, lengths=lengths,
                         start_positions=answer_starts, end_positions=answer_ends, max_length=max_seq_length)


def training_flops_per_token(*, shape: dict, trainable_linear: int, mean_sq_over_mean_len: float) -> float:
    """Model FLOPs per real token for one training step (forward + backward).

    Every linear weight costs 2 FLOPs per token forward and 2 backward for the activation gradient; only
    trained weights cost 2 more for the weight gradient (frozen base weights in the adapter methods don't).
    Attention scores and the weighted sum cost 4*h*s per token and layer forward, twice that backward.
    """
    h, layers, inter = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    linear = layers * (4 * h * h + 2 * h * inter) + 2 * h
    attention = layers * 4 * h * mean_sq_over_mean_len
    return 4 * linear + 2 * trainable_linear + 3 * attention


def peak_flops(device_name: str):
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def step_order(windows: PackedWindows, *, batch_size: int, warmup_steps_per_bucket: int, timed_steps: int,
               profile_steps: int, seed: int, bucket: int = BUCKET) -> tuple[list[int], int]:
    """(window order, warm-up steps): length-grouped batches as in training, each bucket they land in visited
    `warmup_steps_per_bucket` times before them.

    Only the buckets the measured steps use are warmed up: a bucket no measured batch lands in would cost its
    uncaptured steps and its capture (seconds each for the slow methods) and change nothing that is timed.
    """
    rng = np.random.default_rng(seed)
    steps = timed_steps + profile_steps
    # Length-grouped as the training sampler does: megabatches of 50 batches, sorted by length inside.
    chosen = rng.choice(len(windows), size=steps * batch_size, replace=len(windows) < steps * batch_size)
    measured = []
    for i in range(0, len(chosen), 50 * batch_size):
        mega = chosen[i:i + 50 * batch_size]
        measured += mega[np.argsort(-windows.lengths[mega], kind="stable")].tolist()
    widths = windows.padded_widths(bucket)
    used = sorted({int(widths[measured[i:i + batch_size]].max()) for i in range(0, len(measured), batch_size)})
    order = []
    for width in used:  # a batch of windows from one bucket is padded to that bucket's width
        members = np.flatnonzero(widths == width)
        order += rng.choice(members, size=(warmup_steps_per_bucket, batch_size)).ravel().tolist()
    return order + measured, len(order) // batch_size


def collation_times(windows: PackedWindows, *, batch_size: int = 16, repeats: int = 100) -> dict:
    """Milliseconds to build one batch: `DataCollatorWithPadding` on lists (the old path) against the gather."""
    from transformers import BertTokenizerFast, DataCollatorWithPadding

    from .model import SMOKE_VOCAB

    tokenizer = BertTokenizerFast(vocab=str(SMOKE_VOCAB), do_lower_case=False)  # it only pads: [PAD] is id 0
    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    rows = [windows[i] for i in range(batch_size)]
    for row in rows:
        row["attention_mask"] = [1] * row.pop("length")
    timings = {}
    for name, build in (("tokenizer_pad", lambda: pad([dict(r) for r in rows])),
                        ("packed_gather", lambda: windows.batch(range(batch_size), pad_to_multiple_of=8))):
        build()
        started = time.perf_counter()
        for _ in range(repeats):
            build()
        timings[f"collate_{name}_ms"] = round((time.perf_counter() - started) / repeats * 1000, 3)
    return timings


def host_time_per_step(*, windows_for, work_dir: Path, steps: int = 200) -> dict:
    """Milliseconds of host work per training step besides the step's own: the Trainer's loop, the batch gather,
    the copies into the graph's inputs and the learning-rate write, with a step graph whose replay does nothing.

    Why: captured whole, no step waits for the GPU, yet in the H200 measurement the GPU stood idle 13-22% of the
    time at the paper's batches. If the host needs about as long per step as the GPU, the host holds it back; if far
    less, the idle time is inside the graph (the gaps between its kernels). The tiny model of `--dry`, Base LoRA's
    Trainer set-up, every batch from one bucket: three real steps (two uncaptured and the "capture"), then replays.
    """
    from transformers import TrainerCallback

    model_dir, _ = random_model(work_dir, "base", dry=True)
    setup = arm_config(size="base", method="lora", arm="graphs", model_dir=model_dir)
    # Step graphs on any machine: the stand-in capture below needs no GPU.
    setup = setup._replace(plan=setup.plan._replace(graphs="step", few_shapes=True, pad_to_multiple_of=BUCKET))
    windows = windows_for(setup.config.max_seq_length)
    widths = windows.padded_widths(BUCKET)
    one_bucket = np.flatnonzero(widths == np.bincount(widths).argmax())
    order = np.random.default_rng(0).choice(one_bucket, size=steps * setup.config.batch_size).tolist()
    ends = []

    class Ends(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            ends.append(time.perf_counter())

    trainer = arm_trainer(setup=setup, size="base", method="lora", arm="host", windows=windows, order=order,
                          dry=True, work_dir=work_dir, callbacks=[Ends()])
    trainer.step_graph_capture = lambda step: ((lambda: None), step())  # runs the step once; replays do nothing
    trainer.train()
    skipped = 10  # the real steps and the first replays
    return {"host_ms_per_step": round(float(np.median(np.diff(ends[skipped:]))) * 1000, 3),
            "host_replays": trainer.step_graphs.replays}


class _Clock:
    """Marks, sync-debug warnings and the profiler around the step ranges of one arm (a TrainerCallback's work)."""

    def __init__(self, *, warmup_steps: int, timed_steps: int, profile_steps: int, on_gpu: bool):
        self.warmup, self.timed, self.profiled, self.on_gpu = warmup_steps, timed_steps, profile_steps, on_gpu
        self.marks, self.sync_sites, self.profiler, self._catcher, self._profiling = {}, [], None, None, False

    def sync(self):
        if self.on_gpu:
            import torch

            torch.cuda.synchronize()

    def step_end(self, step: int) -> None:
        import torch

        if step == self.warmup + self.timed:  # before the clock's own sync below
            self._stop_counting()
        if step in (self.warmup, self.warmup + self.timed, self.warmup + self.timed + self.profiled):
            self.sync()
            self.marks[step] = time.perf_counter()
        if step == self.warmup:  # the timed steps begin: count syncs
            if self.on_gpu:
                self._catcher = warnings.catch_warnings()
                self._catcher.__enter__()
                warnings.simplefilter("always")
                warnings.showwarning = self._record  # put back when the catcher exits
                torch.cuda.set_sync_debug_mode("warn")
        if step == self.warmup + self.timed:  # the timed steps end; profiling begins
            activities = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if self.on_gpu else [])
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            self._profiling = True
        if step == self.warmup + self.timed + self.profiled and self._profiling:
            self._profiling = False
            self.profiler.__exit__(None, None, None)

    def _stop_counting(self) -> None:
        if self._catcher is not None:
            import torch

            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self._catcher = None

    def close(self) -> None:
        """Whatever is still on (the arm failed part way): off."""
        self._stop_counting()
        if self._profiling:
            self._profiling = False
            self.profiler.__exit__(None, None, None)

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        """A warning during the timed steps: a synchronisation is counted with where it came from (the warning's
        own file and line are the innermost Python frame, often inside torch: the stack says more); others are
        dropped, as they were before."""
        if "synchronizing CUDA operation" in str(message):
            self.sync_sites.append(sync_site(traceback.extract_stack()[:-1]))


def sync_site(stack, *, frames: int = 3) -> str:
    """The innermost `frames` Python frames of `stack` outside the warnings machinery, innermost first:
    `file:line function < caller < ...`, file names without folders."""
    kept = [f for f in stack if not f.filename.endswith("warnings.py")][-frames:]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(kept))


def summarize_sites(sites: list[str], *, limit: int = 3) -> str:
    """'3x site; 1x other site', the most frequent first, at most `limit` of them."""
    return "; ".join(f"{count}x {site}" for site, count in Counter(sites).most_common(limit))


def profile_summary(profiler, *, steps: int, wall_s: float, on_gpu: bool) -> tuple[float, float]:
    """(device kernels per step, % of wall time the GPU was busy); on a CPU: (aten ops per step, nan)."""
    from torch.autograd import DeviceType

    events = profiler.events()
    if on_gpu:
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        busy_us = sum(e.time_range.elapsed_us() for e in kernels)
        return len(kernels) / steps, min(100.0, 100 * busy_us / 1e6 / wall_s)
    ops = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")
           and e.cpu_parent is None]
    return len(ops) / steps, float("nan")


# The arms a configuration can be measured in: (compiled, compile scope, CUDA graphs asked for, throughput mode).
ARMS = {
    "eager": (False, "", "off", False),  # the eager step, no CUDA graphs
    "graphs": (False, "", "step", False),  # the eager step captured whole in CUDA graphs: nothing to compile
    "compiled-model": (True, "model", "step", False),  # compiled as a whole (about a minute for Base), captured whole
    "compiled-layers": (True, "layers", "step", False),  # the scripts' default on a GPU: per layer, captured whole
    "trees-model": (True, "model", "trees", False),  # torch.compile's reduce-overhead mode (the earlier default)
    "trees-layers": (True, "layers", "trees", False),
    "throughput-graphs": (False, "", "step", True),
    "throughput-layers": (True, "layers", "step", True),
    "throughput-model": (True, "model", "step", True),
}
# Each configuration's arms unless --arms says otherwise: eager against the scripts' default on a GPU.
DEFAULT_ARMS = ("eager", "compiled-layers")
PREVIOUS_BUCKET = 64
# Then, after every configuration's default arms: full fine-tuning in throughput mode (its MFU goal); for the two
# configurations the goals name, the step captured without compiling (does compiling pay?), and for Base LoRA the
# default path with the earlier buckets of 64 tokens (what the default of 16 saves). Not every configuration gets
# `graphs`: one H100 session has about 10 minutes of device time for all of this.
EXTRA_ARMS = {("base", "lora"): ("graphs", f"compiled-layers/{PREVIOUS_BUCKET}"), ("large", "full"): ("graphs",)}


def split_arm(arm: str) -> tuple[str, int]:
    """("graphs/64") -> ("graphs", 64); an arm without `/N` pads to the scripts' default bucket width."""
    name, _, width = arm.partition("/")
    if name not in ARMS or (width and not (width.isdigit() and is_bucket_width(int(width)))):
        raise ValueError(f"arm {arm!r}: expected one of {', '.join(ARMS)}, optionally with /N (N a multiple of 8)")
    return name, int(width) if width else BUCKET


def computed_tokens_ratio(windows: PackedWindows, indices, *, batch_size: int, multiple: int) -> float:
    """Tokens the model computes (each batch padded to `multiple`) per real token, over batches of `indices`."""
    lengths = windows.lengths[np.asarray(indices, dtype=np.int64)]
    computed = sum(padded_length(int(lengths[i:i + batch_size].max()), multiple=multiple, cap=windows.max_length)
                   * len(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))
    return computed / int(lengths.sum())


def arms_for(size: str, method: str, arms=None) -> list[str]:
    if arms:
        return list(arms)
    extra = (["throughput-layers"] if method == "full" else []) + list(EXTRA_ARMS.get((size, method), ()))
    return [*DEFAULT_ARMS, *extra]


def run_plan(configs: list[tuple[str, str, list[str]]], *, by_priority: bool) -> list[tuple[str, str, str]]:
    """(size, method, arm) in the order they run: as given, or (`by_priority`) every configuration's default arms
    first, then the extra ones, so that a run cut short loses extras, not a configuration's eager-vs-default pair."""
    plan = [(size, method, arm) for size, method, arms in configs for arm in arms]
    if by_priority:
        plan.sort(key=lambda entry: entry[2] not in DEFAULT_ARMS)  # stable: configuration order kept in each part
    return plan


class ArmSetup(NamedTuple):
    """How the scripts would run one arm: its config and what `common/run.py` derives from it."""

    config: object  # RunConfig
    plan: object  # common.model.StepPlan: compiled or not, which CUDA graphs, how far batches are padded


def arm_config(*, size: str, method: str, arm: str, model_dir: Path) -> ArmSetup:
    """The set-up of one arm, as the scripts would run it."""
    from .model import plan_training_step

    arm_name, bucket = split_arm(arm)
    compiled, scope, graphs_asked, throughput = ARMS[arm_name]
    config = replace(layered_defaults(size, method, smoke=False), model_name=str(model_dir), logging_steps=10**6,
                     report_to="none", torch_compile=compiled, compile_scope=scope or "model", throughput=throughput,
                     cuda_graphs=graphs_asked, fast_cpu_dropout=False, bucket_width=bucket)
    config = apply_throughput(config)
    plan = plan_training_step(config, world_size=1)  # as common/run.py decides; no graphs on a CPU (--dry)
    return ArmSetup(config, plan)


def arm_trainer(*, setup: ArmSetup, size: str, method: str, arm: str, windows: PackedWindows, order: list, dry: bool,
                work_dir: Path, callbacks=(), trainer_class=None, dropout_off: bool = False):
    """The scripts' Trainer set-up (common/run.py) for one arm, training on `windows` in `order`."""
    import torch
    from transformers import BertTokenizerFast, set_seed

    from .compile import planned_training_step
    from .model import SMOKE_VOCAB, load_model, resolve_precision
    from .trainer import make_trainer_class, training_arguments

    config = setup.config
    set_seed(config.seed)  # as common/run.py: every arm starts from the same adapter weights
    model = load_model(config)
    if dropout_off:  # every dropout, BERT's and the adapters': the arms then compute the same function
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    forward_loss, cudagraphs = planned_training_step(model, setup.plan, scope=config.compile_scope,
                                                     backend="aot_eager" if dry else "inductor")
    args = training_arguments(config, precision=resolve_precision(config),
                              output_dir=work_dir / f"{size}-{method}-{arm.replace('/', '-')}")
    args.max_steps = len(order) // config.batch_size
    args.disable_tqdm, args.logging_first_step = True, False

    class InOrder(trainer_class or make_trainer_class()):
        def _get_train_sampler(self, train_dataset=None):
            return order

    tokenizer = BertTokenizerFast(vocab=str(SMOKE_VOCAB), do_lower_case=False)  # only for the Trainer's metadata
    return InOrder(model=model, args=args, train_dataset=windows, processing_class=tokenizer,
                   data_collator=batch_collator(windows, pad_to_multiple_of=setup.plan.pad_to_multiple_of),
                   forward_loss=forward_loss, cudagraphs=cudagraphs, step_graphs=setup.plan.graphs == "step",
                   callbacks=list(callbacks))


def measure_arm(*, size: str, method: str, arm: str, model_dir: Path, shape: dict, windows_for,
                warmup_per_bucket: int, timed_steps: int, profile_steps: int, dry: bool, work_dir: Path) -> dict:
    """Train one arm for its warm-up, timed and profiled steps; its row."""
    import torch
    from transformers import TrainerCallback

    from .model import compile_seconds, count_parameters, resolve_precision

    on_gpu = torch.cuda.is_available()
    setup = arm_config(size=size, method=method, arm=arm, model_dir=model_dir)
    config = setup.config
    windows = windows_for(config.max_seq_length)
    # Compiled or captured arms visit each bucket for compilation, the uncaptured steps and the capture; an eager
    # arm has nothing to prepare per shape: one visit each warms the libraries up.
    order, warmup_steps = step_order(windows, batch_size=config.batch_size,
                                     warmup_steps_per_bucket=warmup_per_bucket if setup.plan.few_shapes else 1,
                                     timed_steps=timed_steps, profile_steps=profile_steps, seed=config.seed,
                                     bucket=config.bucket_width)
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    clock = _Clock(warmup_steps=warmup_steps, timed_steps=timed_steps, profile_steps=profile_steps, on_gpu=on_gpu)

    class Marks(TrainerCallback):
        def on_train_begin(self, *_args, **_kwargs):
            clock.marks[0] = time.perf_counter()

        def on_step_end(self, _args, state, _control, **_kwargs):
            clock.step_end(state.global_step)

    trainer = arm_trainer(setup=setup, size=size, method=method, arm=arm, windows=windows, order=order, dry=dry,
                          work_dir=work_dir, callbacks=[Marks()])
    model = trainer.model
    trainable, total = count_parameters(model)
    trainable_linear = sum(p.numel() for n, p in model.named_parameters()
                           if p.requires_grad and p.dim() == 2 and "embeddings" not in n)
    precision = resolve_precision(config)
    multiple = setup.plan.pad_to_multiple_of
    compiling_before = compile_seconds()
    try:
        trainer.train()
    finally:  # a failed arm must not leave sync counting or the profiler on for the next one
        clock.close()
    marks = clock.marks
    seconds = marks[warmup_steps + timed_steps] - marks[warmup_steps]
    timed_indices = np.array(order[warmup_steps * config.batch_size:(warmup_steps + timed_steps) * config.batch_size])
    lengths = windows.lengths[timed_indices].astype(float)
    tokens_per_s = lengths.sum() / seconds
    flops = training_flops_per_token(shape=shape, trainable_linear=trainable_linear,
                                     mean_sq_over_mean_len=float((lengths ** 2).mean() / lengths.mean()))
    device = torch.cuda.get_device_name() if on_gpu else "cpu"
    peak = peak_flops(device)
    profile_log = os.environ.get("BENCH_PROFILE_LOG")  # where to append the profiled steps' busiest operations
    if profile_log:
        with open(profile_log, "a", encoding="utf-8") as handle:
            handle.write(f"\n=== {size} {method} {arm}: {profile_steps} steps\n")
            averages = clock.profiler.key_averages()
            handle.write(averages.table(sort_by="self_cpu_time_total", row_limit=25))
            if on_gpu:  # where the GPU's time goes once the CPU no longer holds it back
                handle.write(averages.table(sort_by="self_device_time_total", row_limit=30))
    kernels, busy = profile_summary(clock.profiler, steps=profile_steps, on_gpu=on_gpu,
                                    wall_s=marks[warmup_steps + timed_steps + profile_steps] - marks[warmup_steps + timed_steps])
    mean_length = LENGTH_MEDIAN * math.exp(LENGTH_SIGMA ** 2 / 2)
    projected = 2 * FULL_TRAIN_FEATURES * mean_length / tokens_per_s
    row = {
        "device": device, "model_size": size, "method": method, "arm": arm,
        "compile_scope": config.compile_scope if setup.plan.compiled else "", "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "precision": precision, "cuda_graphs": setup.plan.graphs,
        "graphs_that_ran": graphs_that_ran(trainer),
        "step_graph_captures": trainer.step_graphs.captures if trainer.step_graphs is not None else 0,
        "padded_to_multiple_of": multiple,
        "computed_tokens_per_real": round(computed_tokens_ratio(windows, timed_indices, batch_size=config.batch_size,
                                                                multiple=multiple), 3),
        "steps_per_s": round(timed_steps / seconds, 2), "real_tokens_per_s": round(tokens_per_s),
        "mfu_percent": round(100 * flops * tokens_per_s / peak, 1) if peak else "",
        "projected_2_epochs_s": round(projected, 1), "paper_2_epochs_s": PAPER_TIME_2_EPOCHS_S[(size, method)],
        "speedup_vs_paper": round(PAPER_TIME_2_EPOCHS_S[(size, method)] / projected, 1),
        "warmup_s": round(marks[warmup_steps] - marks[0], 1),
        "compile_s": round(compile_seconds() - compiling_before, 1),
        "kernels_per_step": round(kernels, 1), "gpu_busy_percent": "" if math.isnan(busy) else round(busy, 1),
        "syncs_per_step": round(len(clock.sync_sites) / timed_steps, 2) if on_gpu else "",
        "sync_sites": summarize_sites(clock.sync_sites),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if on_gpu else "",
        "trainable_params": trainable, "total_params": total,
    }
    del trainer, model
    return row


def parse_configs(specs, *, sizes, methods, arms=None) -> list[tuple[str, str, list[str]]]:
    """(size, method, arms) to measure, in order: from `--configs size:method[:arm,arm...]`, else every size x method
    with `arms` (or each configuration's default arms)."""
    if not specs:
        unknown = [a for a in arms or () if not _known_arm(a)]
        if unknown:
            raise ValueError(f"--arms {' '.join(unknown)}: choose from {', '.join(ARMS)}, each optionally with /N "
                             f"(a bucket width, a multiple of 8)")
        return [(size, method, arms_for(size, method, arms)) for size in sizes for method in methods]
    configs = []
    for spec in specs:
        size, method, *rest = spec.split(":")
        chosen = rest[0].split(",") if rest else arms_for(size, method, arms)
        unknown = [a for a in chosen if not _known_arm(a)] + ([size] if size not in GPU_SHAPES else [])
        if unknown or len(rest) > 1:
            raise ValueError(f"--configs {spec!r}: expected size:method[:arm,...] (arms: {', '.join(ARMS)}, each "
                             f"optionally with /N, a bucket width)")
        configs.append((size, method, chosen))
    return configs


# Steps of the agreement check: two bucket widths in turn, so that a step-graph arm runs each width's two
# uncaptured steps, its capture and three replays (common/step_graph.py).
AGREEMENT_STEPS = 12


def agreement_order(windows: PackedWindows, *, batch_size: int, bucket: int, steps: int, seed: int) -> list[int]:
    """Batches that alternate between the two bucket widths with the most windows, each batch inside one bucket."""
    widths = windows.padded_widths(bucket)
    values, counts = np.unique(widths, return_counts=True)
    chosen = values[np.argsort(-counts, kind="stable")[:2]]
    rng = np.random.default_rng(seed)
    order = []
    for step in range(steps):
        members = np.flatnonzero(widths == chosen[step % len(chosen)])
        order += rng.choice(members, size=batch_size, replace=len(members) < batch_size).tolist()
    return order


def agreement(*, size: str, method: str, arms: list[str], model_dir: Path, windows_for, dry: bool, work_dir: Path,
              steps: int = AGREEMENT_STEPS) -> list[dict]:
    """Each arm trained `steps` steps from the same weights on the same batches with every dropout off, so that all
    arms compute the same function; each arm's losses, gradient norms and weights against the first arm's.

    `weight_update_rel_diff` is |w_arm - w_first| / |w_first - w_start| over the trained parameters: how far the arm's
    training went elsewhere, relative to how far training went. Naming the first arm twice (`eager,eager,...`)
    measures what two runs of the same arm differ by (on a GPU, atomics in some backward kernels), the floor the
    other arms compare with.
    """
    import torch

    from .model import resolve_precision
    from .trainer import make_trainer_class

    class Recording(make_trainer_class()):
        """Keeps every step's loss and gradient norm on the device (cloned: a replayed graph rewrites its outputs)."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            self.recorded["loss"].append(loss.detach().float().clone())
            return loss

        def _clip_grad_norm(self, model):
            norm = super()._clip_grad_norm(model)
            self.recorded["grad_norm"].append(torch.as_tensor(norm).detach().float().clone())
            return norm

    reference = None
    rows = []
    order = None
    for arm in arms:
        setup = arm_config(size=size, method=method, arm=arm, model_dir=model_dir)
        config = replace(setup.config, lora_dropout=0.0)
        setup = setup._replace(config=config)
        windows = windows_for(config.max_seq_length)
        if order is None:  # the first arm's batches for every arm
            order = agreement_order(windows, batch_size=config.batch_size, bucket=config.bucket_width, steps=steps,
                                    seed=config.seed)
        trainer = arm_trainer(setup=setup, size=size, method=method, arm=arm, windows=windows, order=order, dry=dry,
                              work_dir=work_dir, trainer_class=Recording, dropout_off=True)
        trainer.recorded = {"loss": [], "grad_norm": []}
        start = _trained_weights(trainer.model)
        trainer.train()
        result = {"loss": torch.stack(trainer.recorded["loss"]).cpu(),
                  "grad_norm": torch.stack(trainer.recorded["grad_norm"]).cpu(), "start": start,
                  "end": _trained_weights(trainer.model)}
        graphs = graphs_that_ran(trainer)
        del trainer
        if reference is None:
            reference = result
        row = {"model_size": size, "method": method, "arm": arm, "reference_arm": arms[0],
               "precision": resolve_precision(config), "cuda_graphs": graphs, "steps": len(result["loss"]),
               "loss_first": round(float(result["loss"][0]), 6), "loss_last": round(float(result["loss"][-1]), 6)}
        row.update(compare_training(result, reference))
        rows.append(row)
        release_arm()
    return rows


def release_arm() -> None:
    """Frees the finished arm's compiled graphs and CUDA-graph memory before the next arm."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _trained_weights(model) -> dict:
    return {n: p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def compare_training(result: dict, reference: dict) -> dict:
    """How far one arm's training is from the reference arm's (see `agreement`)."""
    if result["loss"].shape != reference["loss"].shape or result["start"].keys() != reference["start"].keys():
        return {"start_max_abs_diff": float("nan"), "loss_max_abs_diff": float("nan"),
                "grad_norm_max_rel_diff": float("nan"), "weight_update_rel_diff": float("nan")}
    start = max(float((result["start"][n] - reference["start"][n]).abs().max()) for n in reference["start"])
    moved = sum(float((reference["end"][n] - reference["start"][n]).pow(2).sum()) for n in reference["start"])
    apart = sum(float((result["end"][n] - reference["end"][n]).pow(2).sum()) for n in reference["start"])
    norms = reference["grad_norm"].clamp_min(1e-12)
    return {"start_max_abs_diff": start,
            "loss_max_abs_diff": float((result["loss"] - reference["loss"]).abs().max()),
            "grad_norm_max_rel_diff": float(((result["grad_norm"] - reference["grad_norm"]).abs() / norms).max()),
            "weight_update_rel_diff": math.sqrt(apart / moved) if moved > 0 else float("nan")}


def windows_source(*, dry: bool, count: int):
    """A function max_seq_length -> `count` synthetic windows (made once per length), in the bench's vocabulary."""
    vocab_size = DRY_VOCAB_SIZE if dry else BERTIMBAU_VOCAB_SIZE
    cache = {}

    def windows_for(max_seq_length: int) -> PackedWindows:
        if max_seq_length not in cache:
            cache[max_seq_length] = synthetic_windows(count, vocab_size=vocab_size, max_seq_length=max_seq_length,
                                                      seed=0)
        return cache[max_seq_length]

    return windows_for


def random_model(directory: Path, size: str, *, dry: bool) -> tuple[Path, dict]:
    """(folder of a randomly initialised BERT QA model of `size`'s shape, seed 0, written once there; the shape)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    shape = {**(DRY_SHAPES if dry else GPU_SHAPES)[size], "max_position_embeddings": 512}
    model_dir = directory / size
    if not model_dir.exists():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            vocab_size = DRY_VOCAB_SIZE if dry else BERTIMBAU_VOCAB_SIZE
            BertForQuestionAnswering(BertConfig(vocab_size=vocab_size, **shape)).save_pretrained(model_dir)
    return model_dir, shape


def agreement_table(*, sizes=("base", "large"), methods=("full", "lora", "qlora", "dora", "qdora"), configs=None,
                    arms=None, dry: bool = False, out_csv: Path | None = None) -> list[dict]:
    """`agreement` for every configuration (`parse_configs`; default arms: eager twice, graphs, compiled-layers)."""
    import torch

    windows_for, rows = windows_source(dry=dry, count=2_000), []
    print(f"[agreement] {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}: {AGREEMENT_STEPS} "
          f"steps per arm from the same weights on the same batches, every dropout off", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size, method, config_arms in parse_configs(configs, sizes=sizes, methods=methods,
                                                       arms=arms or ("eager", "eager", "graphs", "compiled-layers")):
            model_dir, _ = random_model(tmp, size, dry=dry)
            try:
                found = agreement(size=size, method=method, arms=config_arms, model_dir=model_dir,
                                  windows_for=windows_for, dry=dry, work_dir=tmp)
            except Exception as exc:  # one failing configuration must not lose the others' numbers
                print(f"[agreement] {size} {method}: FAILED {type(exc).__name__}: {exc}", flush=True)
                found = [{"model_size": size, "method": method, "error": repr(exc)[:300]}]
            for row in found:
                if "error" not in row:
                    print(f"[agreement] {size:5s} {method:5s} {row['arm']:17s} graphs {row['cuda_graphs']:5s} "
                          f"{row['precision']}  loss {row['loss_first']:.4f} -> {row['loss_last']:.4f}  "
                          f"vs {row['reference_arm']}: loss max |diff| {row['loss_max_abs_diff']:.2e}  grad norm "
                          f"max rel diff {row['grad_norm_max_rel_diff']:.2e}  weight update rel diff "
                          f"{row['weight_update_rel_diff']:.2e}", flush=True)
            rows += found
            write_rows(out_csv, rows)
    return rows


def _known_arm(arm: str) -> bool:
    try:
        split_arm(arm)
    except ValueError:
        return False
    return True


def gpu_table(*, sizes=("base", "large"), methods=("full", "lora", "qlora", "dora", "qdora"), configs=None,
              warmup_per_bucket: int = WARMUP_PER_BUCKET, timed_steps: int = 40, profile_steps: int = 5, arms=None,
              dry: bool = False, out_csv: Path | None = None, time_budget_s: float | None = None) -> list[dict]:
    """The arms of every configuration (`parse_configs`, in `run_plan`'s order); the rows.

    With `time_budget_s`, no arm starts once that many seconds have passed (the first always runs); the arms left
    out are printed. A device lent for minutes then ends with a clean summary instead of a killed job.
    """
    import torch

    rows = []
    windows_for = windows_source(dry=dry, count=2_000 if dry else 20_000)

    from importlib import metadata

    began = time.perf_counter()
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "peft", "bitsandbytes"))
    print(f"[bench] {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; {versions}; CUDA "
          f"{torch.version.cuda}", flush=True)
    timings = collation_times(windows_for(384))
    print(f"[bench] collation of 16 windows: DataCollatorWithPadding {timings['collate_tokenizer_pad_ms']} ms, "
          f"packed gather {timings['collate_packed_gather_ms']} ms", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            host = host_time_per_step(windows_for=windows_source(dry=True, count=2_000), work_dir=Path(tmp))
        timings["host_ms_per_step"] = host["host_ms_per_step"]
        print(f"[bench] host work per step besides the step (Trainer loop, batch, copies; a replay that does "
              f"nothing): {timings['host_ms_per_step']} ms", flush=True)
    except Exception as exc:  # a side measurement: the arms still run
        print(f"[bench] host work per step: FAILED {type(exc).__name__}: {exc}", flush=True)
    plan = run_plan(parse_configs(configs, sizes=sizes, methods=methods, arms=arms),
                    by_priority=not configs and not arms)
    not_run = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for index, (size, method, arm) in enumerate(plan):
            if index and time_budget_s is not None and time.perf_counter() - began > time_budget_s:
                not_run = plan[index:]
                break
            model_dir, shape = random_model(tmp, size, dry=dry)  # written once per size
            try:
                row = measure_arm(size=size, method=method, arm=arm, model_dir=model_dir,
                                  shape=shape, windows_for=windows_for, warmup_per_bucket=warmup_per_bucket,
                                  timed_steps=timed_steps, profile_steps=profile_steps, dry=dry, work_dir=tmp)
            except Exception as exc:  # one failing configuration must not lose the others' numbers
                print(f"[bench] {size} {method} {arm}: FAILED {type(exc).__name__}: {exc}", flush=True)
                row = {"model_size": size, "method": method, "arm": arm, "error": repr(exc)[:300]}
            rows.append({**row, **timings})
            if out_csv is not None:  # after every arm: a run stopped early keeps what it measured
                write_rows(out_csv, rows)
            if "error" not in row:
                print(f"[bench] {size:5s} {method:5s} {arm:17s} graphs {row['graphs_that_ran']:5s} "
                      f"({row['step_graph_captures']} captured) "
                      f"pad x{row['padded_to_multiple_of']} ({row['computed_tokens_per_real']} tok/real) "
                      f"{row['steps_per_s']:7.2f} steps/s {row['real_tokens_per_s']:>9,} tok/s "
                      f"MFU {row['mfu_percent'] or '-'}%  2 ep ~{row['projected_2_epochs_s'] / 60:.1f} min  "
                      f"warm-up {row['warmup_s']} s (compile {row['compile_s']} s)  "
                      f"{row['kernels_per_step']} kernels/step  busy {row['gpu_busy_percent']}%  "
                      f"syncs/step {row['syncs_per_step']}{' at ' + row['sync_sites'] if row['sync_sites'] else ''}"
                      f"  peak {row['peak_memory_mb']} MB", flush=True)
            release_arm()
    print_side_by_side(rows)
    print(f"[bench] {len(rows)} arms in {time.perf_counter() - began:.0f} s", flush=True)
    if not_run:
        print(f"[bench] time budget of {time_budget_s:g} s spent: not run: "
              f"{', '.join(f'{size} {method} {arm}' for size, method, arm in not_run)}", flush=True)
    if out_csv is not None:
        print(f"[bench] rows written to {out_csv}")
    return rows


def print_side_by_side(rows: list[dict]) -> None:
    """One line per size x method: eager against the fastest other arm at the paper's batch size."""
    measured = [r for r in rows if "error" not in r]
    print("[bench] size  method   eager steps/s -> fastest arm (x)   MFU   2 epochs (+ compile)")
    for size, method in dict.fromkeys((r["model_size"], r["method"]) for r in measured):
        arms = [r for r in measured if (r["model_size"], r["method"]) == (size, method)]
        eager = next((r for r in arms if r["arm"] == "eager"), None)
        others = [r for r in arms if r["arm"] != "eager" and not ARMS[split_arm(r["arm"])[0]][3]]
        if eager and others:
            best = max(others, key=lambda r: r["steps_per_s"])
            print(f"[bench] {size:5s} {method:5s}  {eager['steps_per_s']:8.2f} -> {best['steps_per_s']:8.2f} {best['arm']} "
                  f"({best['steps_per_s'] / eager['steps_per_s']:.1f}x)   {eager['mfu_percent']}% -> "
                  f"{best['mfu_percent']}%   {eager['projected_2_epochs_s'] / 60:.1f} -> "
                  f"{best['projected_2_epochs_s'] / 60:.1f} min (+ {best['compile_s']} s)", flush=True)


def write_rows(path: Path | None, rows: list[dict]) -> None:
    """The rows as CSV (columns in order of first appearance: a failed row has fewer); nothing without a path."""
    if path is None:  # no --out_dir: the numbers are printed only, and no tracked file changes
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames = list(dict.fromkeys(key for row in rows for key in row))  # a failed row has fewer columns
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
