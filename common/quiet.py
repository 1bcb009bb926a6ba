"""Known-harmless library messages, filtered one by one so that what a run prints is the user's business.

Each entry names the exact message (a regular expression matched at its start) and its category or logger,
and says why it is harmless; anything else a library says still shows. `--debug` shows these again.
"""
from __future__ import annotations

import logging
import re
import warnings

# (category, message): Python warnings.
HARMLESS_WARNINGS = [
    # pyarrow >= 25 deprecates an argument that `datasets` still passes when it sorts (the evaluation windows are
    # sorted by length); the sort is right either way, and only `datasets` can change the call.
    (FutureWarning, r"Specifying null_placement in SortOptions is deprecated"),
    # transformers 5 renamed the property; peft (0.21) still reads the old name when it wraps a model. Nothing in
    # this repository calls it, and the alias returns the same value until transformers 6.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
]

# (logger, message): logging records, which `warnings` filters do not see.
HARMLESS_LOG_RECORDS = [
    # bitsandbytes (0.49+) tries an optional faster CPU 4-bit kernel from the `kernels` package on CPUs with
    # AVX512-BF16, at import, in every method (peft imports it); without that package it uses its own kernel,
    # which is what the tests and the CPU numbers in docs/ were measured with.
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community"),
]


class _DropMatching(logging.Filter):
    """Drops the records of one logger whose message starts with `pattern`."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet_library_noise(quiet: bool = True) -> None:
    """Filter the messages above (`quiet=True`), or show them again (`quiet=False`, for --debug).

    Safe to call again (tests, notebooks): `filterwarnings` moves an identical filter to the front instead of
    adding a copy, and the newest filter wins, so "default" (Python's own way: once per place) undoes "ignore".
    """
    for category, pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore" if quiet else "default", message=pattern, category=category)
    for name, pattern in HARMLESS_LOG_RECORDS:
        logger = logging.getLogger(name)  # created now if the library is not imported yet: the same object later
        for old in [f for f in logger.filters if isinstance(f, _DropMatching) and f.pattern.pattern == pattern]:
            logger.removeFilter(old)
        if quiet:
            logger.addFilter(_DropMatching(pattern))
