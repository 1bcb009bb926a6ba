"""The training order: each epoch's a pure function of (seed, epoch), grouped by length as transformers groups
it, and the same batches for each process of a `torchrun` run when a resumed epoch skips the batches it saw."""
import random

import pytest
import torch
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import get_length_grouped_indices

from common.sampler import EpochSampler, epoch_generator, epoch_order

LENGTHS = [random.Random(0).randint(20, 384) for _ in range(1000)]


def test_order_depends_only_on_seed_and_epoch():
    torch.manual_seed(1)
    first = epoch_order(LENGTHS, batch_size=16, seed=42, epoch=2)
    torch.manual_seed(2)  # the global random state, which a resume restores only later, plays no part
    torch.rand(100)
    assert epoch_order(LENGTHS, batch_size=16, seed=42, epoch=2) == first
    assert sorted(first) == list(range(len(LENGTHS)))
    others = [epoch_order(LENGTHS, batch_size=16, seed=seed, epoch=epoch) for seed, epoch in [(42, 1), (43, 2)]]
    assert all(other != first for other in others)
    # Not seed + epoch: seed 42's second epoch is not seed 43's first.
    assert epoch_order(LENGTHS, batch_size=16, seed=42, epoch=1) != epoch_order(LENGTHS, batch_size=16, seed=43,
                                                                              epoch=0)


def test_grouping_is_transformers_own():
    order = epoch_order(LENGTHS, batch_size=16, seed=42, epoch=3)
    assert order == get_length_grouped_indices(LENGTHS, 16, generator=epoch_generator(seed=42, epoch=3))
    batches = [order[i:i + 16] for i in range(0, len(order), 16)]
    assert max(LENGTHS[i] for i in batches[0]) == max(LENGTHS)  # the longest batch first: memory fails early
    # Little padding: within a batch the lengths are close (mega-batches of 50 batches sorted by length).
    spread = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches) / len(batches)
    assert spread < 40  # against ~330 for random batches of lengths spread over 20-384


def test_ungrouped_order_is_a_seeded_permutation():
    order = epoch_order(LENGTHS, batch_size=16, seed=42, epoch=0, group_by_length=False)
    assert sorted(order) == list(range(len(LENGTHS)))
    assert order == epoch_order(LENGTHS, batch_size=16, seed=42, epoch=0, group_by_length=False)
    assert order != epoch_order(LENGTHS, batch_size=16, seed=42, epoch=1, group_by_length=False)


def batches(loader):
    return [batch.tolist() for batch in loader]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_a_resumed_epoch_gives_each_process_the_batches_it_had_left(group_by_length):
    """What the Trainer does under torchrun (accelerate shards the batches; on resume it skips the ones seen):
    a process resumed in epoch 2 after 3 batches sees exactly the rest of that epoch's uninterrupted batches."""
    from accelerate.data_loader import prepare_data_loader, skip_first_batches

    def loader(rank, *, epoch, skip=0):
        sampler = EpochSampler(LENGTHS[:192], batch_size=8, seed=7, group_by_length=group_by_length)
        prepared = prepare_data_loader(DataLoader(list(range(192)), batch_size=8, sampler=sampler),
                                       num_processes=2, process_index=rank, put_on_device=False)
        prepared = skip_first_batches(prepared, skip) if skip else prepared
        # What the Trainer does before it builds the epoch's iterator: accelerate's set_epoch, which does not
        # reach the sampler through a skipping loader over a sharding one, and QATrainer._run_epoch's own call.
        prepared.set_epoch(epoch)
        sampler.set_epoch(epoch)
        return prepared

    for rank in (0, 1):
        uninterrupted = batches(loader(rank, epoch=2))
        assert batches(loader(rank, epoch=2, skip=3)) == uninterrupted[3:]
        assert uninterrupted != batches(loader(rank, epoch=1))
    both = sorted(i for rank in (0, 1) for batch in batches(loader(rank, epoch=2)) for i in batch)
    assert both == list(range(192))  # the two processes share the epoch without overlap
