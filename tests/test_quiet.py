"""Known-harmless library messages are filtered one by one, and --debug shows them again.

Tested on the filter itself, with the libraries' exact messages emitted here: whether a library emits them
depends on its version and the CPU (the bitsandbytes one only on CPUs with AVX512-BF16). The scripts' smoke
runs check that a run prints no warning line (tests/test_scripts.py).
"""
import logging
import warnings

import pytest

from common.quiet import quiet_library_noise

BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_MESSAGE = ("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
               "`pip install kernels` and the kernels >= 0.11.1")
LIBRARY_WARNINGS = [
    "Specifying null_placement in SortOptions is deprecated as of 25.0.0. Specify null_placement per sort_key instead.",
    "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` instead.",
]


def emitted_warnings(*messages, category=FutureWarning):
    with warnings.catch_warnings(record=True) as caught:
        for message in messages:
            warnings.warn(message, category)
    return [str(w.message) for w in caught]


@pytest.fixture
def restore():
    """Leave the process as the test found it: warnings filters and the bitsandbytes logger's filters."""
    saved_filters = warnings.filters[:]
    logger = logging.getLogger(BNB_LOGGER)
    saved_logger_filters = logger.filters[:]
    yield
    warnings.filters[:] = saved_filters
    logger.filters[:] = saved_logger_filters


def test_known_warnings_are_filtered_and_debug_shows_them(restore):
    with warnings.catch_warnings():
        quiet_library_noise()
        assert emitted_warnings(*LIBRARY_WARNINGS) == []
        # Precise: another FutureWarning, or the same text as another category, still shows.
        assert emitted_warnings("Something else is deprecated") == ["Something else is deprecated"]
        assert emitted_warnings(LIBRARY_WARNINGS[0], category=UserWarning) == [LIBRARY_WARNINGS[0]]
        quiet_library_noise(False)  # --debug
        assert emitted_warnings(*LIBRARY_WARNINGS) == LIBRARY_WARNINGS
        quiet_library_noise()  # calling again filters again
        assert emitted_warnings(*LIBRARY_WARNINGS) == []


def test_known_log_record_is_filtered_and_debug_shows_it(restore, caplog):
    logger = logging.getLogger(BNB_LOGGER)
    quiet_library_noise()
    quiet_library_noise()  # twice: still one filter
    with caplog.at_level(logging.WARNING):
        logger.warning(BNB_MESSAGE, "No module named 'kernels'")
        logger.warning("Some other bitsandbytes problem")  # not ours to hide
    assert [r.getMessage() for r in caplog.records] == ["Some other bitsandbytes problem"]
    caplog.clear()
    quiet_library_noise(False)
    with caplog.at_level(logging.WARNING):
        logger.warning(BNB_MESSAGE, "No module named 'kernels'")
    assert [r.getMessage() for r in caplog.records] == [BNB_MESSAGE % "No module named 'kernels'"]


def test_setup_logging_filters_unless_debug(restore):
    from common.trainer import setup_logging

    root_handlers = logging.getLogger().handlers[:]
    try:
        with warnings.catch_warnings():
            setup_logging(debug=False)
            assert emitted_warnings(*LIBRARY_WARNINGS) == []
            setup_logging(debug=True)
            assert emitted_warnings(*LIBRARY_WARNINGS) == LIBRARY_WARNINGS
    finally:
        logging.getLogger().handlers[:] = root_handlers
