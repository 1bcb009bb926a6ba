"""Shared fixtures: the repository root, the real data in ../shared/data (skipped when absent)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_SAMPLE = SHARED_DATA / "squad-v1.1-pt-sample.json"
BERTIMBAU_VOCAB = SHARED_DATA / "bertimbau-base-portuguese-cased-vocab.txt"

sys.path.insert(0, str(REPO_ROOT))
# Set before any test module imports transformers: huggingface_hub reads them once, at import. Offline, a Hub
# id that is not cached fails at once instead of after network retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Built artefacts (tiny model, feature cache) go to a per-session folder, never the user's cache."""
    os.environ["BERTIMBAU_QA_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def real_sample() -> Path:
    if not REAL_SAMPLE.exists():
        pytest.skip(f"real data sample not found at {REAL_SAMPLE} (../shared/data is only in CI and dev checkouts)")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def bertimbau_tokenizer():
    if not BERTIMBAU_VOCAB.exists():
        pytest.skip(f"BERTimbau vocabulary not found at {BERTIMBAU_VOCAB}")
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(BERTIMBAU_VOCAB), do_lower_case=False, strip_accents=False)


@pytest.fixture(scope="session")
def smoke_tokenizer():
    from transformers import AutoTokenizer

    from common.model import ensure_smoke_model

    return AutoTokenizer.from_pretrained(ensure_smoke_model())
