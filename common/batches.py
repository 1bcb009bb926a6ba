"""Training windows as flat arrays, and batches built from them by a gather and a pad.

Why not `DataCollatorWithPadding`: it turns every window into Python lists and back (`tokenizer.pad`), 4.6 ms for
16 windows, about as long as a whole training step of BERTimbau-Base on an H100 should take. Here the token ids
and segment ids of all windows sit end to end in two numpy arrays; a batch is one fancy-index gather into a
(batch, length) array that is already padded, then `torch.from_numpy` (a few tens of microseconds).

Padding: to the batch's longest window by default; with `pad_to_multiple_of` > 1 to the next multiple of it
(capped at the longest window the run allows). A compiled or CUDA-graph-captured step wants few distinct shapes,
each captured once, so that path pads to buckets of `--bucket_width` tokens (default 16). The QA loss masks
padding out (common/trainer.py), so the loss and gradients do not depend on how far a batch is padded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# The bucket width of the compiled or captured path (`--bucket_width`): a multiple of 8 for tensor-core tiles.
# Every token computed past a window's end is work for nothing, and every width is one more shape to capture.
# Length-grouped batches of the paper's sizes on the Portuguese SQuAD window lengths (the GPU benchmark's
# distribution, 93k windows, an epoch in the sampler's order) compute per real token, by bucket width:
#   64: 1.153 (5 shapes)   32: 1.083 (10)   16: 1.047 (19)   8: 1.029 (38)   1: 1.014 (296)
# and attention, which grows with the square of the width, 1.294 / 1.153 / 1.086 / 1.054 / 1.026. 16 computes 9%
# fewer tokens than 64 for 14 more shapes; a shape costs two uncaptured steps and one capture, once per run (the
# compiled code serves every width: common/compile.py marks the length dynamic). Past 16 the gain halves per step
# while the shapes double.
BUCKET = 16


def is_bucket_width(width: int) -> bool:
    """A width batches may be padded to in buckets (`--bucket_width`, a benchmark arm's `/N`)."""
    return width >= 8 and width % 8 == 0


@dataclass
class PackedWindows:
    """Tokenized training windows, flat: window i is `input_ids[starts[i]:starts[i] + lengths[i]]`."""

    input_ids: np.ndarray  # int32, all windows end to end
    token_type_ids: np.ndarray  # int8, same layout
    starts: np.ndarray  # int64, where each window begins
    lengths: np.ndarray  # int64, real tokens of each window (no padding is stored)
    start_positions: np.ndarray  # int64, label of each window
    end_positions: np.ndarray  # int64
    max_length: int  # the run's max_seq_length: buckets never pad past it

    @classmethod
    def from_features(cls, features, *, max_length: int) -> "PackedWindows":
        """From the `datasets.Dataset` that `prepare_train_features` builds (and the feature cache stores).

        Read through Arrow: the list columns' flat value buffers are the packed arrays already, so nothing is
        converted window by window. Features padded to max length (`--pad_to_max_length`) are packed without
        their padding: `length` holds the real token count.
        """
        table = features.with_format("arrow")[:]  # respects a .select() of the features (max_train_samples)
        lengths = np.asarray(table.column("length").to_numpy(), dtype=np.int64)
        ids = table.column("input_ids").combine_chunks()
        types = table.column("token_type_ids").combine_chunks()
        offsets = np.asarray(ids.offsets.to_numpy(), dtype=np.int64)
        flat_ids = np.asarray(ids.flatten().to_numpy(), dtype=np.int32)
        flat_types = np.asarray(types.flatten().to_numpy(), dtype=np.int8)
        starts = offsets[:-1] - offsets[0]
        stored = np.diff(offsets)
        if (stored < lengths).any():
            raise ValueError("a feature's stored tokens are fewer than its length column")
        if (stored != lengths).any():  # padded to max length when tokenized: keep only the real tokens
            keep = np.repeat(starts, lengths) + _ranges(lengths)
            flat_ids, flat_types = flat_ids[keep], flat_types[keep]
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(
            input_ids=flat_ids, token_type_ids=flat_types, starts=starts, lengths=lengths,
            start_positions=np.asarray(table.column("start_positions").to_numpy(), dtype=np.int64),
            end_positions=np.asarray(table.column("end_positions").to_numpy(), dtype=np.int64),
            max_length=max_length,
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def padded_widths(self, multiple: int) -> np.ndarray:
        """Each window's length padded as `batch` pads a batch of windows that long (the bucket it falls in)."""
        return np.array([padded_length(int(n), multiple=multiple, cap=self.max_length) for n in self.lengths])

    def __getitem__(self, index: int) -> dict:
        """One window as lists (for inspection; training goes through `__getitems__` and `collate`)."""
        window = slice(self.starts[index], self.starts[index] + self.lengths[index])
        return {"input_ids": self.input_ids[window].tolist(), "token_type_ids": self.token_type_ids[window].tolist(),
                "start_positions": int(self.start_positions[index]), "end_positions": int(self.end_positions[index]),
                "length": int(self.lengths[index])}

    def __getitems__(self, indices: Sequence[int]) -> list:
        # torch's DataLoader hands a batch's indices to __getitems__ and its result to the collate function:
        # pass the indices through and build the whole batch at once in `collate`.
        return [indices]

    def batch(self, indices: Sequence[int], *, pad_to_multiple_of: int = 1) -> dict:
        """The padded batch of windows `indices`: int64 tensors input_ids, token_type_ids, attention_mask, labels."""
        import torch

        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        width = padded_length(int(lengths.max()), multiple=pad_to_multiple_of, cap=self.max_length)
        positions = np.arange(width, dtype=np.int64)
        mask = positions[None, :] < lengths[:, None]
        # Positions past a window's end read its first token (any valid index); the mask then zeroes them.
        gather = self.starts[indices][:, None] + np.where(mask, positions[None, :], 0)
        return {
            "input_ids": torch.from_numpy(np.where(mask, self.input_ids[gather], 0).astype(np.int64)),
            "token_type_ids": torch.from_numpy(np.where(mask, self.token_type_ids[gather], 0).astype(np.int64)),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "start_positions": torch.from_numpy(self.start_positions[indices]),
            "end_positions": torch.from_numpy(self.end_positions[indices]),
        }


def padded_length(longest: int, *, multiple: int, cap: int) -> int:
    """`longest` rounded up to a multiple of `multiple`, but never past `cap` (the run's max_seq_length)."""
    if multiple <= 1:
        return longest
    return min(-(-longest // multiple) * multiple, max(cap, longest))


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """[0..l0-1, 0..l1-1, ...] without a Python loop."""
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)


def batch_collator(windows: PackedWindows, *, pad_to_multiple_of: int = 1):
    """The DataLoader collate function for `windows` (which hands it one list of indices per batch)."""

    def collate(items: list) -> dict:
        [indices] = items
        return windows.batch(indices, pad_to_multiple_of=pad_to_multiple_of)

    return collate


def pad_multiple(*, few_shapes: bool, on_gpu: bool, bucket: int = BUCKET) -> int:
    """How far batches are padded: buckets of `bucket` tokens where few shapes are wanted (compiled, or captured in
    CUDA graphs), x8 for tensor cores on a GPU, else none."""
    if few_shapes:
        return bucket
    return 8 if on_gpu else 1
