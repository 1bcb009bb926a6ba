"""The training order: each epoch's order is a pure function of (seed, epoch), so a resumed run sees the same
batches as the run it continues, at any step of any epoch.

transformers' `LengthGroupedSampler` draws each epoch's order from the global random state when the epoch's
iterator is built; on `--resume` the Trainer builds it before it restores the checkpoint's random state, so a
run resumed in epoch 2 or later skipped the first batches of a different order (some windows trained twice,
some never). This sampler draws from its own generator, seeded from the run's seed and the epoch number, and
keeps transformers' grouping (`get_length_grouped_indices`: mega-batches of 50 batches, sorted by length
within, the longest batch first), so batches are padded as little as before.

Under `torchrun` every process builds the same order and accelerate gives each its share of the batches.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_generator(*, seed: int, epoch: int):
    """A torch.Generator for one epoch of one seed.

    Mixed through numpy's SeedSequence rather than `seed + epoch` (torch's DistributedSampler): with a plain sum,
    seed 42's second epoch would repeat seed 43's first, and a grid over consecutive seeds would share orders.
    """
    state = np.random.SeedSequence([seed & 0xFFFF_FFFF_FFFF_FFFF, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def epoch_order(lengths: Sequence[int], *, batch_size: int, seed: int, epoch: int,
                group_by_length: bool = True) -> list[int]:
    """The indices of one epoch: length-grouped as transformers does it, or a plain random permutation."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = epoch_generator(seed=seed, epoch=epoch)
    if not group_by_length:
        return torch.randperm(len(lengths), generator=generator).tolist()
    return get_length_grouped_indices(lengths, batch_size, generator=generator)


class EpochSampler(Sampler[int]):
    """The Sampler of `epoch_order`; the Trainer tells it the epoch (`set_epoch`) before each one."""

    def __init__(self, lengths: Sequence[int], *, batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.lengths, batch_size=self.batch_size, seed=self.seed, epoch=self.epoch,
                                group_by_length=self.group_by_length))
