"""The HF Trainer as every run, prediction and benchmark uses it: QA loss, collator, arguments, logging set-up.

A building block below the entry points (`run`, `predict`, `bench`): it imports only the foundations (config,
checkpoint settings, faults, tracking), so nothing that trains or predicts has to import the orchestrator.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from .checkpoint import checkpoint_arguments
from .config import RunConfig
from .distributed import quiet_replicas
from .faults import check_finite_loss
from .tracking import resolve_report_to

logger = logging.getLogger("bertimbau_qa")
LABELS = ("start_positions", "end_positions")


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO, force=True)
    import transformers

    transformers.logging.set_verbosity_warning()
    # Through the root handler: transformers' own one keeps the stderr of its first use, which in-process
    # callers (tests, notebooks) may have closed since.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
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




def make_trainer_class():
    """The HF Trainer with the padding-masked QA loss and evaluation in feature order (built lazily:
    importing transformers is slow)."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    from .sampler import EpochSampler

    class QATrainer(Trainer):
        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: the Trainer divides it for accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = {key: inputs.pop(key) for key in LABELS}
            outputs = model(**inputs)
            loss = qa_loss(start_logits=outputs.start_logits, end_logits=outputs.end_logits,
                           attention_mask=inputs["attention_mask"], **labels)
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            # Each epoch's order a pure function of (seed, epoch) instead of the global random state, so that
            # --resume continues the same order in any epoch (common/sampler.py); same grouping as transformers.
            dataset = self.train_dataset if train_dataset is None else train_dataset
            grouped = self.args.train_sampling_strategy == "group_by_length"
            column = self.args.length_column_name
            if column not in getattr(dataset, "column_names", ()):
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            # [:] reads the column as one list (datasets 4 returns a lazy Column, slow to index one by one)
            self.epoch_sampler = EpochSampler(dataset[column][:], seed=seed, group_by_length=grouped,
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

        def training_step(self, model, inputs, num_items_in_batch=None):
            # Checked every step: the Trainer logs a NaN loss as the average of the earlier ones.
            loss = super().training_step(model, inputs, num_items_in_batch)
            check_finite_loss(loss, step=self.state.global_step + 1, learning_rate=self.args.learning_rate)
            return loss

    return QATrainer




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
        torch_compile=config.torch_compile,
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=False,
    )
