"""Shared fixtures: the repository root; the public Portuguese sample and BERTimbau's vocabulary, from
../shared/data in a development checkout, else from the Hugging Face cache as a user would load them, else the
tests that need them are skipped with the reason."""
from __future__ import annotations

import json
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
def real_sample(tmp_path_factory) -> Path:
    """The public sample of squad_v1_pt as a SQuAD file: REAL_SAMPLE itself, or its ten articles of the Hub
    dataset written to a file (tests compare counts measured on REAL_SAMPLE only when they got it)."""
    if REAL_SAMPLE.exists():
        return REAL_SAMPLE
    from common.data import PUBLIC_SAMPLE_DATASET, DataError, load_hub_sample

    try:
        examples = load_hub_sample()
    except DataError:
        pytest.skip(f"the public Portuguese sample is neither at {REAL_SAMPLE} nor in the Hugging Face cache "
                    f"({PUBLIC_SAMPLE_DATASET}; the tests run offline: HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 "
                    "lets them download it)")
    path = tmp_path_factory.mktemp("hub_sample") / "squad_v1_pt-sample-articles.json"
    path.write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bertimbau_vocab() -> Path:
    """BERTimbau's vocab.txt: BERTIMBAU_VOCAB, else the file of neuralmind/bert-base-portuguese-cased in the
    Hugging Face cache (the file its tokenizer is built from)."""
    if BERTIMBAU_VOCAB.exists():
        return BERTIMBAU_VOCAB
    from common.bench import bertimbau_vocab_from_hub

    try:
        return bertimbau_vocab_from_hub()
    except Exception:  # offline and not cached: huggingface_hub raises one of several errors
        pytest.skip(f"BERTimbau's vocabulary is neither at {BERTIMBAU_VOCAB} nor in the Hugging Face cache "
                    "(hf download neuralmind/bert-base-portuguese-cased vocab.txt, or HF_HUB_OFFLINE=0 to let the "
                    "tests download it)")


@pytest.fixture(scope="session")
def bertimbau_tokenizer(bertimbau_vocab):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(bertimbau_vocab), do_lower_case=False, strip_accents=False)


@pytest.fixture(scope="session")
def smoke_tokenizer():
    from transformers import AutoTokenizer

    from common.model import ensure_smoke_model

    return AutoTokenizer.from_pretrained(ensure_smoke_model())


def run_smoke_script(script: str, out_dir: Path, *args: str, launcher: tuple = ()):
    """Run `bertimbau_base/<script> --smoke` (optionally under a launcher such as torchrun); (row, stderr).

    One epoch: the tests that use these runs check that artefacts reproduce and agree, which does not need a
    model that has learned much.
    """
    import csv
    import subprocess

    results = out_dir.parent / f"{out_dir.name}.csv"
    command = [*launcher, f"bertimbau_base/{script}", "--smoke", "--num_epochs", "1", "--output_dir", str(out_dir),
               "--results_file", str(results), *args]
    if not launcher:
        command.insert(0, sys.executable)
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    with open(results, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A factory of smoke runs shared across test files, each trained once per session: method -> (dir, row).

    Adapter runs are made with --merge, so their output directory also holds merged/. LoRA trains on all the
    shipped data (the multi-process test compares against it); the others on 64 windows, which is enough for
    tests of what a run saves and reproduces, and several times faster.
    """
    from types import SimpleNamespace

    scripts = {"full": "main.py", "lora": "main_lora.py", "qlora": "main_qlora.py", "dora": "main_dora.py",
               "qdora": "main_qdora.py"}
    made = {}

    def get(method: str):
        if method not in made:
            out = tmp_path_factory.mktemp("runs") / method
            extra = (() if method == "full" else ("--merge",)) + (() if method == "lora" else ("--max_train_samples", "64"))
            rows, log = run_smoke_script(scripts[method], out, *extra)
            assert len(rows) == 1
            made[method] = SimpleNamespace(dir=out, row=rows[0], log=log)
        return made[method]

    return get
