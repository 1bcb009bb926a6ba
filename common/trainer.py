"""The HF Trainer as every run, prediction and benchmark uses it: QA loss, collator, arguments, logging set-up.

A building block below the entry points (`run`, `predict`, `bench`): it imports only the foundations (config,
checkpoint settings, faults, tracking), so nothing that trains or predicts has to import the orchestrator.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
from pathlib import Path
from typing import Optional

from .checkpoint import checkpoint_arguments
from .config import RunConfig
from .distributed import quiet_replicas
from .faults import LossWatch
from .preprocess import MODEL_INPUTS
from .quiet import quiet_library_noise
from .tracking import resolve_report_to

logger = logging.getLogger("bertimbau_qa")
LABELS = ("start_positions", "end_positions")


def setup_logging(*, debug: bool = False) -> None:
    """Where every script starts: our log format, transformers' messages through it, the known-harmless library
    messages filtered (`--debug` shows them)."""
    quiet_library_noise(not debug)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO, force=True)
    import transformers

    transformers.logging.set_verbosity_warning()
    # Through the root handler: transformers' own one keeps the stderr of its first use, which in-process
    # callers (tests, notebooks) may have closed since.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    # huggingface_hub and datasets add a handler of their own and also pass their records on to ours, so each of
    # their messages (the Hub's retries when offline, for one) would print twice.
    for module in ("datasets", "huggingface_hub"):  # imported for the handler each adds at import
        try:
            importlib.import_module(module)
        except ImportError:  # datasets is not needed to train on packed windows (e.g. the GPU benchmark)
            pass
    for name in ("huggingface_hub", "datasets"):
        library_logger = logging.getLogger(name)
        for handler in list(library_logger.handlers):
            library_logger.removeHandler(handler)
    quiet_replicas()  # under torchrun / accelerate launch only the main process logs




def collate_without_length(tokenizer, *, pad_to_multiple_of: Optional[int] | str = "auto"):
    """Dynamic padding per batch; `length` is only for the length-grouped sampler, not the model.

    "auto" pads to a multiple of 8 on a GPU (tensor cores take shapes in multiples of 8) and not at all on a
    CPU, where every extra position is only extra work.
    """
    import torch
    from transformers import DataCollatorWithPadding

    if pad_to_multiple_of == "auto":
        pad_to_multiple_of = 8 if torch.cuda.is_available() else None
    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def collate(features: list[dict]) -> dict:
        return pad([{k: v for k, v in feature.items() if k != "length"} for feature in features])

    return collate




def qa_loss(*, start_logits, end_logits, start_positions, end_positions, attention_mask):
    """BERT's QA loss (mean of start and end cross-entropy over positions) with padding masked out.

    `BertForQuestionAnswering` lets padded positions compete in the softmax, so its loss depends on how
    far a batch is padded; masking them makes the loss of a window the same under dynamic padding and
    under padding to 384, and no training signal is spent pushing down logits of padding.
    """
    import torch

    def one_side(logits, positions):
        logits = logits.float().masked_fill(attention_mask == 0, torch.finfo(torch.float32).min)
        return torch.nn.functional.cross_entropy(logits, positions.clamp(0, logits.size(1) - 1))

    return (one_side(start_logits, start_positions) + one_side(end_logits, end_positions)) / 2




def forward_and_loss(model, inputs: dict):
    """The training step's forward: the model on a batch, then the masked QA loss. One function, so that the
    compiled path (common/compile.py) and the eager path compute exactly the same thing."""
    return loss_of_outputs(model(**{key: inputs[key] for key in MODEL_INPUTS}), inputs)


def loss_of_outputs(outputs, inputs: dict):
    """The masked QA loss of a model's outputs on a batch that holds the labels."""
    return qa_loss(start_logits=outputs.start_logits, end_logits=outputs.end_logits,
                   attention_mask=inputs["attention_mask"], **{key: inputs[key] for key in LABELS})


@contextlib.contextmanager
def step_bookkeeping_without_module_walks(model):
    """While training, make the Trainer's per-step `model.train()` and `model.zero_grad()` cost nothing.

    The Trainer calls both at every step; each walks the whole module tree in Python (~700 modules with adapters,
    a few milliseconds per step together, which on a GPU is as long as the step's own work). Here `train(mode)`
    returns at once when the model is already in that mode (eval() goes through it too, so the recorded mode
    stays true), and `zero_grad()` clears only the parameters that can have a gradient. Both are instance
    attributes for the duration of training only.
    """
    original_train = model.train
    trained = [p for p in model.parameters() if p.requires_grad]
    state = {"mode": None}

    def train(mode: bool = True):
        if state["mode"] is not mode:
            state["mode"] = mode
            original_train(mode)
        return model

    def zero_grad(set_to_none: bool = True):
        for parameter in trained:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.detach_().zero_()

    model.train, model.zero_grad = train, zero_grad
    try:
        yield
    finally:
        del model.train, model.zero_grad  # back to the class's methods


def make_trainer_class():
    """The HF Trainer with the padding-masked QA loss, a training step that never waits for the GPU, and
    evaluation in feature order (built lazily: importing transformers is slow)."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    from .frozen_weights import frozen_4bit_weights_in, frozen_weights_in
    from .fused_qkv import training_projections
    from .optim import AdamWWithFoldedClipping, is_fused_adamw
    from .patches import ask_for_lomo_once, dora_weight_product
    from .sampler import EpochSampler

    ask_for_lomo_once()  # accelerate's optimizer step would search sys.path twice per step (common/patches.py)

    class QATrainer(Trainer):
        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: the Trainer divides it for accumulation

        def __init__(self, *args, forward_loss=forward_and_loss, cudagraphs: bool = False, eval_data_collator=None,
                     step_graphs: bool = False, step_graph_capture=None, **kwargs):
            super().__init__(*args, **kwargs)
            # Training batches come from packed windows (common/batches.py); evaluation windows are a
            # `datasets.Dataset` with their own collator.
            self.eval_data_collator = eval_data_collator or self.data_collator
            self.forward_loss = forward_loss  # forward_and_loss, or its compiled form
            self.cudagraphs = cudagraphs  # torch.compile's CUDA graph trees (--cuda_graphs trees)
            # The whole step in one CUDA graph per shape (--cuda_graphs step, common/step_graph.py); the capture
            # function is for tests, which pass a CPU stand-in for CUDA graphs.
            self.step_graphs_enabled, self.step_graph_capture = step_graphs, step_graph_capture
            self.step_graphs = None
            self._step_grad_norm = None
            self.loss_watch = LossWatch(learning_rate=self.args.learning_rate)
            self._flop_parameters = None
            self._trained_parameters = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:  # not used by training; kept for the Trainer's API
                outputs = model(**{key: inputs[key] for key in MODEL_INPUTS})
                return loss_of_outputs(outputs, inputs), outputs
            if self.cudagraphs:
                import torch

                # A new iteration for CUDA graph trees: the previous step's graph outputs may be reused.
                torch.compiler.cudagraph_mark_step_begin()
            return self.forward_loss(model, inputs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.step_graphs_enabled:
                return self._whole_training_step(model, inputs)
            loss = super().training_step(model, inputs, num_items_in_batch)
            # Checked on the device, read at logging steps, checkpoints and the end (see LossWatch): the Trainer
            # would log a NaN loss as the average of the earlier ones and go on.
            self.loss_watch.observe(loss, step=self.state.global_step + 1)
            return loss

        def _whole_training_step(self, model, inputs):
            """Forward, backward, clipping and the optimizer step at once, captured per shape (common/step_graph.py);
            the Trainer's own clipping and optimizer step that follow then only hand on what this step did."""
            from .step_graph import StepGraphs

            model.train()
            inputs = self._prepare_inputs(inputs)
            if self.step_graphs is None:  # the first step of this training
                if not isinstance(self._inner_optimizer(), AdamWWithFoldedClipping) or self.args.gradient_accumulation_steps != 1:
                    raise RuntimeError("step graphs need the fused AdamW with folded clipping and no gradient accumulation")
                self.step_graphs = StepGraphs(optimizer=self._inner_optimizer(),
                                              train_step=lambda batch: self._one_whole_step(model, batch),
                                              zero_grad=lambda: model.zero_grad(set_to_none=True),
                                              capture=self.step_graph_capture)
            loss, self._step_grad_norm = self.step_graphs.step(inputs)
            self._inner_optimizer().step_already_taken = True  # the Trainer's optimizer.step() next: nothing to do
            self.loss_watch.observe(loss, step=self.state.global_step + 1)
            return loss

        def _one_whole_step(self, model, inputs):
            with self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            loss.backward()
            optimizer = self._inner_optimizer()
            norm = optimizer.clip_before_step(self.args.max_grad_norm)
            optimizer.step()
            return loss.detach(), norm

        def _inner_optimizer(self):
            return getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate wraps ours

        def log(self, logs, *args, **kwargs):
            self.loss_watch.check()  # the Trainer reads the loss here anyway: no extra wait
            super().log(logs, *args, **kwargs)

        def _save_checkpoint(self, model, trial):
            self.loss_watch.check()  # never save diverged weights as the run's last checkpoint
            super()._save_checkpoint(model, trial)

        def train(self, *args, **kwargs):
            import torch

            # The dtype autocast computes in: the fused frozen query/key/value weight is made in it, once.
            autocast_dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
            self.step_graphs = None  # captured for this training only
            # peft computes DoRA's B·A through an identity matrix so that FSDP's sharded weights work; elsewhere one
            # matrix product (common/patches.py).
            dora_product = contextlib.nullcontext() if self.is_fsdp_enabled else dora_weight_product(self.model)
            # Frozen weights cast to that dtype once (common/frozen_weights.py), inside the projections: the query,
            # key and value weights they fuse are left out. Not under FSDP or DeepSpeed, which flatten and shard the
            # parameters themselves (one dtype per flat parameter).
            sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
            frozen = frozen_weights_in(self.model, None if sharded else autocast_dtype)
            # The 4-bit weights' double-quantized block scales dequantized once, not before every use, and the
            # weights dequantized straight into the compute dtype (common/frozen_weights.py).
            frozen_4bit = contextlib.nullcontext() if sharded else frozen_4bit_weights_in(self.model)
            with step_bookkeeping_without_module_walks(self.model), \
                    training_projections(self.model, dtype=autocast_dtype), dora_product, frozen, frozen_4bit:
                output = super().train(*args, **kwargs)
            self.loss_watch.check()  # the steps after the last logging step
            return output

        def create_optimizer(self, model=None):
            # The Trainer's fused AdamW, with the gradient clipping done inside its step (common/optim.py).
            if self.optimizer is None and self.optimizer_cls_and_kwargs is None and self._may_fold_clipping():
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model if model is None else model)
                if is_fused_adamw(optimizer_cls, kwargs):
                    self.optimizer_cls_and_kwargs = (AdamWWithFoldedClipping, kwargs)
            return super().create_optimizer(model)

        def _may_fold_clipping(self) -> bool:
            # fp16's loss scaler sets the fused step's grad_scale itself; DeepSpeed and FSDP clip their own shards.
            return not (self.args.fp16 or self.is_fsdp_enabled or self.is_deepspeed_enabled)

        def _clip_grad_norm(self, model):
            if self.is_fsdp_enabled or self.is_deepspeed_enabled:  # they clip their own sharded parameters
                return super()._clip_grad_norm(model)
            if self.step_graphs_enabled and self._step_grad_norm is not None:
                return self._step_grad_norm  # clipped inside the whole step (common/step_graph.py)
            optimizer = self._inner_optimizer()
            if isinstance(optimizer, AdamWWithFoldedClipping):  # made only where _may_fold_clipping() holds
                return optimizer.clip_before_step(self.args.max_grad_norm)
            # The trained parameters, listed once: `model.parameters()` walks every module at every step (BERT
            # with adapters has ~700), and frozen parameters have no gradient to clip anyway.
            if self._trained_parameters is None:
                self._trained_parameters = [p for p in model.parameters() if p.requires_grad]
            return self.accelerator.clip_grad_norm_(self._trained_parameters, self.args.max_grad_norm)

        def predict(self, *args, **kwargs):
            import torch

            # Compiled layers serve training only: evaluation batches come in other shapes, which would each
            # be compiled or captured for nothing.
            training_collator, self.data_collator = self.data_collator, self.eval_data_collator
            try:
                with torch.compiler.set_stance("force_eager"):
                    return super().predict(*args, **kwargs)
            finally:
                self.data_collator = training_collator

        def floating_point_ops(self, inputs) -> int:
            # The Trainer's version walks every parameter at every step (1.8 ms of CPU for BERTimbau-Base);
            # the count does not change during training, so it is taken once.
            if self._flop_parameters is None:
                self._flop_parameters = self.model.num_parameters(exclude_embeddings=True)
            return 6 * inputs["input_ids"].numel() * self._flop_parameters

        def _get_train_sampler(self, train_dataset=None):
            # Each epoch's order a pure function of (seed, epoch) instead of the global random state, so that
            # --resume continues the same order in any epoch (common/sampler.py); same grouping as transformers.
            dataset = self.train_dataset if train_dataset is None else train_dataset
            grouped = self.args.train_sampling_strategy == "group_by_length"
            column = self.args.length_column_name
            if hasattr(dataset, "lengths"):  # packed windows (common/batches.py) know their lengths
                lengths = dataset.lengths.tolist()
            elif column in getattr(dataset, "column_names", ()):
                # [:] reads the column as one list (datasets 4 returns a lazy Column, slow to index one by one)
                lengths = dataset[column][:]
            else:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self.epoch_sampler = EpochSampler(lengths, seed=seed, group_by_length=grouped,
                                              batch_size=self.args.train_batch_size * self.args.gradient_accumulation_steps)
            return self.epoch_sampler

        def _run_epoch(self, *args, epoch, **kwargs):
            # The Trainer's set_epoch does not reach the sampler under torchrun when a resumed epoch skips its
            # first batches (accelerate's SkipBatchSampler over BatchSamplerShard); tell it the epoch here.
            if getattr(self, "epoch_sampler", None) is not None:
                self.epoch_sampler.set_epoch(epoch)
            return super()._run_epoch(*args, epoch=epoch, **kwargs)

        def _get_eval_sampler(self, eval_dataset):
            # transformers 5 applies `train_sampling_strategy="group_by_length"` to evaluation as well, which
            # shuffles the windows, and `predict()` returns logits in that shuffled order; post-processing
            # needs them in feature order. Sequential on one process; None lets accelerate shard in order.
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    return QATrainer


def graphs_used(trainer) -> tuple[str, Optional[str]]:
    """(step, trees or off; why off where step graphs were asked for): the CUDA graphs a finished training really
    used, which is not always what was planned (a capture that failed: the run warned and went on uncaptured)."""
    graphs = trainer.step_graphs
    if graphs is not None:
        if graphs.disabled_because is not None:
            return "off", f"capture failed: {graphs.disabled_because}"
        return "step", None
    return ("trees" if trainer.cudagraphs else "off"), None


def graphs_that_ran(trainer) -> str:
    """`graphs_used` in one string: step, trees, off, or `off (capture failed: ...)`."""
    used, why = graphs_used(trainer)
    return used if why is None else f"{used} ({why})"


def training_arguments(config: RunConfig, *, precision: str, output_dir: Path):
    """The TrainingArguments of a run, from its config."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_epochs,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of all steps in transformers 5
        lr_scheduler_type="linear",
        optim=config.optim,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        # Batches of similar lengths: with dynamic padding almost no padded token is computed.
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # we pass exactly the model's columns (+ length for the sampler)
        **checkpoint_arguments(config),
        report_to=resolve_report_to(config.report_to),
        # Every trainable parameter is used in every step (BERT QA has no pooler); skipping DDP's search for
        # unused ones saves a graph traversal per step, and a parameter left unused would fail loudly.
        ddp_find_unused_parameters=False,
        run_name=config.run_name,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        # The NaN/inf filter reads every step's loss on the host (a GPU sync per step); LossWatch replaces it.
        logging_nan_inf_filter=False,
        # Batches go to the GPU from pinned memory without waiting (accelerate copies them blocking by default).
        dataloader_pin_memory=torch.cuda.is_available(),
        accelerator_config={"non_blocking": torch.cuda.is_available()},
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=False,
    )
