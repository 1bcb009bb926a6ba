"""Tokenized windows cached on disk, so later runs with the same data, tokenizer and windowing skip tokenizing.

Tokenizing the 87,599 training questions takes about a minute on one CPU core, repeated by every run of a
40-run grid. The cache key covers everything the features depend on: the examples themselves (after answer
alignment and --max_*_samples), the tokenizer's full serialisation (vocabulary and normalisation), the
window settings, the feature function, and FEATURES_VERSION for changes to common/preprocess.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

from .config import cache_dir

# Bump when common/preprocess.py changes what a feature holds: old cache entries then stop matching.
# 2: questions cut to --max_query_length tokens, and the `question_cut` column.
FEATURES_VERSION = 2


def feature_cache_key(
    *, examples: list[dict], tokenizer, prepare: Callable, max_seq_length: int, doc_stride: int, max_query_length: int,
    pad_to_max_length: bool,
) -> str:
    digest = hashlib.sha256()
    header = {"version": FEATURES_VERSION, "prepare": prepare.__name__, "max_seq_length": max_seq_length,
              "doc_stride": doc_stride, "max_query_length": max_query_length, "pad_to_max_length": pad_to_max_length,
              "tokenizer_class": type(tokenizer).__name__}
    digest.update(json.dumps(header, sort_keys=True).encode())
    # The serialisation also holds the truncation/padding state left by the last call, which is not part of
    # the tokenizer's identity (it changes once the training set has been tokenized).
    identity = json.loads(tokenizer.backend_tokenizer.to_str())
    identity.pop("truncation", None)
    identity.pop("padding", None)
    digest.update(json.dumps(identity, sort_keys=True).encode())
    digest.update(json.dumps(examples, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:20]


def build_features(
    examples: list[dict], prepare: Callable, *, tokenizer, max_seq_length: int, doc_stride: int,
    max_query_length: int = 64, pad_to_max_length: bool = False, use_cache: bool = True,
    description: str = "Tokenizing",
):
    """Tokenize examples into windows with `datasets.map` (batched, progress bar), through the disk cache.

    Returns (features, cache_hit).
    """
    from datasets import Dataset, load_from_disk

    key = feature_cache_key(examples=examples, tokenizer=tokenizer, prepare=prepare, max_seq_length=max_seq_length,
                            doc_stride=doc_stride, max_query_length=max_query_length,
                            pad_to_max_length=pad_to_max_length)
    target = cache_dir() / "features" / key
    if use_cache and (target / "dataset_info.json").exists():
        return load_from_disk(str(target)), True
    dataset = Dataset.from_list(examples)
    features = dataset.map(
        partial(prepare, tokenizer=tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
                max_query_length=max_query_length, pad_to_max_length=pad_to_max_length),
        batched=True,
        remove_columns=dataset.column_names,
        desc=description,
    )
    if use_cache:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
        # Without datasets' "Saving the dataset" bar: writing the cache is housekeeping (seconds even for the
        # full training set), and the tokenizing bar has just shown the work.
        from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        bars_were_off = are_progress_bars_disabled()
        disable_progress_bars()
        try:
            features.save_to_disk(str(staging))
        finally:
            if not bars_were_off:
                enable_progress_bars()
        try:
            os.replace(staging, target)  # atomic: a concurrent run sees a complete entry or none
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        # Read back from disk: memory-mapped, like a cache hit, so both paths behave the same.
        return load_from_disk(str(target)), False
    return features, False
