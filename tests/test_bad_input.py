"""Bad input: every case gives one line `error: ...` naming the file or flag, exit status 2, no traceback,
and leaves the results file as it was and no output folder behind; randomly corrupted SQuAD files only ever
raise DataError."""
import builtins
import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO_ROOT

from common.data import SMOKE_VALIDATION_FILE, DataError, load_squad_file
from common.preflight import check_results_file
from common.results import RESULT_COLUMNS, append_result
from common.run import main

CONTEXT = "Lisboa é a capital de Portugal desde 1255."
NESTED = {"version": "v1.1", "data": [{"title": "Lisboa", "paragraphs": [{"context": CONTEXT, "qas": [
    {"id": "q1", "question": "Qual é a capital?", "answers": [{"text": "Lisboa", "answer_start": 0}]},
    {"id": "q2", "question": "Desde quando?", "answers": [{"text": "1255", "answer_start": 37}]},
]}]}]}
FLAT = [{"id": "q1", "title": "Lisboa", "context": CONTEXT, "question": "Qual é a capital?",
         "answers": {"text": ["Lisboa"], "answer_start": [0]}}]


def with_qa(**changes):
    """NESTED with the first question changed (a value of None deletes the field)."""
    doc = copy.deepcopy(NESTED)
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    for key, value in changes.items():
        if value is None:
            qa.pop(key)
        else:
            qa[key] = value
    return doc


def with_paragraph(**changes):
    doc = copy.deepcopy(NESTED)
    paragraph = doc["data"][0]["paragraphs"][0]
    for key, value in changes.items():
        if value is None:
            paragraph.pop(key)
        else:
            paragraph[key] = value
    return doc


# (file name, content, text the one-line error must contain besides the file name)
BAD_FILES = [
    ("missing.json", None, "file not found"),
    ("empty.json", b"", "file is empty"),
    ("latin1.json", json.dumps(NESTED, ensure_ascii=False).encode("latin-1"), "not UTF-8"),
    ("broken.json", b'{"data": [', "not valid JSON at line 1"),
    ("lines.json", b'{"id": "q1"}\n{"id": "q2"}\n', "name the file .jsonl"),
    ("broken.jsonl", (json.dumps(FLAT[0]) + "\n{oops\n").encode(), "broken.jsonl:2: not valid JSON"),
    ("text.json", b'"just a string"', "expected a SQuAD JSON object"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("no_articles.json", json.dumps({"data": []}).encode(), "contains no articles or questions"),
    ("no_data.json", json.dumps({"version": "v1.1"}).encode(), "must have a 'data' list"),
    ("no_paragraphs.json", json.dumps({"data": [{"title": "x", "paragraphs": []}, {"title": "y"}]}).encode(),
     "data[1]: missing field 'paragraphs'"),
    ("no_qas.json", json.dumps(with_paragraph(qas=None)).encode(), "missing field 'qas'"),
    ("no_context.json", json.dumps(with_paragraph(context=None)).encode(), "missing field 'context'"),
    ("context_type.json", json.dumps(with_paragraph(context=42)).encode(), "field 'context' must be str, got int"),
    ("no_question.json", json.dumps(with_qa(question=None)).encode(), "question id 'q1'"),
    ("no_answers.json", json.dumps(with_qa(answers=None)).encode(), "missing field 'answers'"),
    ("no_id.json", json.dumps(with_qa(id=None)).encode(), "qas[0]: missing field 'id'"),
    ("answers_type.json", json.dumps(with_qa(answers="Lisboa")).encode(), "'answers' must be a list or an object"),
    ("start_type.json", json.dumps(with_qa(answers=[{"text": "Lisboa", "answer_start": "0"}])).encode(),
     "'answer_start' must be int, got str"),
    ("duplicate.json", json.dumps(with_qa(id="q2")).encode(), "question id 'q2': duplicate id"),
    ("empty_question.json", json.dumps(with_qa(question=" ")).encode(), "question id 'q1': empty question"),
    ("empty_context.json", json.dumps(with_paragraph(context="  ")).encode(), "empty context"),
    ("negative_start.json", json.dumps(with_qa(answers=[{"text": "Lisboa", "answer_start": -3}])).encode(),
     "answer_start -3 is outside the context"),
    ("far_start.json", json.dumps(with_qa(answers=[{"text": "Lisboa", "answer_start": 900}])).encode(),
     "answer_start 900 is outside the context (length 42)"),
    ("v2_impossible.json", json.dumps(with_qa(is_impossible=True, answers=[])).encode(), "SQuAD v2"),
    ("v2_no_answers.json", json.dumps(with_qa(answers=[])).encode(), "SQuAD v1.1"),
]


@pytest.fixture
def results_file(tmp_path):
    """A results file that already holds a row: bad input must leave it byte for byte as it was."""
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora", "f1": 80.0, "status": "ok"})
    return path


def run_main(argv, results_file, tmp_path, capsys, *, method="lora"):
    status = main(model_size="base", method=method,
                  argv=["--smoke", "--results_file", str(results_file), "--output_dir", str(tmp_path / "out"), *argv])
    if status == 2:  # refused: the output folder the run would have made is not left behind, empty
        assert not (tmp_path / "out").exists()
    return status, capsys.readouterr().err


def assert_one_line_error(status, stderr, *expected):
    assert status == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and stderr.rstrip().endswith(error_lines[0]), stderr[-2000:]
    for text in expected:
        assert text in error_lines[0], error_lines[0]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
@pytest.mark.parametrize("role", ["train", "validation"])
def test_bad_data_file_stops_before_training(name, content, message, role, tmp_path, results_file, capsys):
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    good = SMOKE_VALIDATION_FILE
    files = [bad, good] if role == "train" else [good, bad]
    before = results_file.read_bytes()
    status, stderr = run_main(["--train_file", str(files[0]), "--validation_file", str(files[1])], results_file,
                              tmp_path, capsys)
    assert_one_line_error(status, stderr, str(bad), message)
    assert results_file.read_bytes() == before


def test_unreadable_file(tmp_path, results_file, capsys, monkeypatch):
    # Permission bits do not stop root (CI containers), so the read itself is made to fail.
    bad = tmp_path / "locked.json"
    bad.write_text(json.dumps(NESTED), encoding="utf-8")
    read_bytes = pathlib.Path.read_bytes

    def refuse(self):
        if self == bad:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
    before = results_file.read_bytes()
    status, stderr = run_main(["--train_file", str(bad), "--validation_file", str(SMOKE_VALIDATION_FILE)],
                              results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, str(bad), "cannot read (Permission denied)")
    assert results_file.read_bytes() == before


def test_directory_given_as_file(tmp_path, results_file, capsys):
    status, stderr = run_main(["--train_file", str(tmp_path), "--validation_file", str(SMOKE_VALIDATION_FILE)],
                              results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, str(tmp_path), "is a directory")


def test_training_set_without_any_alignable_answer(tmp_path, results_file, capsys):
    # Valid structure, but no answer text occurs in its context: every question would be dropped.
    doc = with_qa(answers=[{"text": "Porto", "answer_start": 0}])
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"] = [{"text": "Coimbra", "answer_start": 3}]
    train = tmp_path / "unaligned.json"
    train.write_text(json.dumps(doc), encoding="utf-8")
    before = results_file.read_bytes()
    status, stderr = run_main(["--train_file", str(train), "--validation_file", str(SMOKE_VALIDATION_FILE)],
                              results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, str(train), "no training answer occurs in its context (2 dropped)")
    assert results_file.read_bytes() == before


def test_validation_set_without_questions(tmp_path, results_file, capsys):
    validation = tmp_path / "no_questions.json"
    validation.write_text(json.dumps(with_paragraph(qas=[])), encoding="utf-8")
    before = results_file.read_bytes()
    status, stderr = run_main(["--train_file", str(SMOKE_VALIDATION_FILE), "--validation_file", str(validation)],
                              results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, str(validation), "contains no questions")
    assert results_file.read_bytes() == before


def save_config(directory, config):
    config.save_pretrained(directory)
    return str(directory)


def gpt2_dir(tmp_path):
    from transformers import GPT2Config

    # Special-token ids inside the tiny vocabulary: the defaults (50256) make transformers warn.
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=100, bos_token_id=0, eos_token_id=0)
    return save_config(tmp_path / "tiny-gpt2", config)


def t5_dir(tmp_path):
    from transformers import T5Config

    return save_config(tmp_path / "tiny-t5", T5Config(num_layers=1, d_model=32, d_ff=64, num_heads=2, vocab_size=100))


def vit_dir(tmp_path):
    from transformers import ViTConfig

    return save_config(tmp_path / "tiny-vit", ViTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2))


def bert_without_weights(tmp_path):
    from transformers import BertConfig

    return save_config(tmp_path / "bert-config-only", BertConfig(hidden_size=32, num_hidden_layers=1,
                                                                 num_attention_heads=2, intermediate_size=64))


def bert_without_tokenizer(tmp_path):
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    return save_config(tmp_path / "bert-no-tokenizer", BertForQuestionAnswering(config))


def empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


# (command-line flags, or a function of tmp_path giving the --model_name; texts the error must contain)
BAD_FLAGS = [
    (["--learning_rate", "-0.001"], ["--learning_rate -0.001", "must be a positive number"]),
    (["--learning_rate", "nan"], ["--learning_rate nan"]),
    (["--doc_stride", "128"], ["--doc_stride 128", "< --max_seq_length (128)"]),
    # 64-token questions at 96 would leave 29 context tokens per window, not more than the stride: the tokenizer panics.
    (["--max_seq_length", "96", "--doc_stride", "32"], ["--max_seq_length 96, --doc_stride 32 and --max_query_length 64 "
                                                        "leave 29 context tokens per window", "lower --doc_stride"]),
    (["--method", "prefix"], ["--method 'prefix'", "full", "qdora"]),
    (["--save_steps", "-5"], ["--save_steps -5"]),
    (["--target_modules", "query", "qeury"], ["--target_modules: qeury matches no module",
                                                "attention.self.query", "attention.output.dense"]),
    (["--target_modules", "dense_h_to_4h"], ["dense_h_to_4h matches no module"]),
    (gpt2_dir, ["tiny-gpt2", "'gpt2' is a decoder-only language model", "neuralmind/bert-base-portuguese-cased"]),
    (t5_dir, ["tiny-t5", "'t5' is an encoder-decoder model"]),
    (vit_dir, ["tiny-vit", "without a question-answering head"]),
    (empty_dir, ["empty: directory has no config.json"]),
    (bert_without_weights, ["bert-config-only: directory has no weights"]),
    # transformers would build a tokenizer of 5 special tokens, and every word would become [UNK].
    (bert_without_tokenizer, ["bert-no-tokenizer: its tokenizer has 5 tokens, the model's vocabulary 100"]),
    (lambda tmp_path: str(tmp_path / "no-such-model"), ["no-such-model: no such directory"]),
    (lambda tmp_path: "nobody-xyz/no-such-model-xyz", ["nobody-xyz/no-such-model-xyz: not a local directory, and not "
                                                        "loadable from the Hub", "hf download"]),
]


@pytest.mark.parametrize("flags, expected", BAD_FLAGS, ids=[
    "negative_lr", "nan_lr", "doc_stride", "window_room", "method", "save_steps", "target_typo", "target_unknown", "gpt2", "t5",
    "vit", "dir_without_config", "dir_without_weights", "dir_without_tokenizer", "missing_dir", "hub_id_offline"])
def test_nonsense_flags_stop_before_training(flags, expected, tmp_path, results_file, capsys):
    argv = flags if isinstance(flags, list) else ["--model_name", flags(tmp_path)]
    before = results_file.read_bytes()
    status, stderr = run_main(argv, results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, *expected)
    assert results_file.read_bytes() == before


def test_results_file_of_another_version_is_refused_before_training(tmp_path, capsys):
    foreign = tmp_path / "old_runs.csv"
    foreign.write_text("timestamp,method,f1\n2024-01-01,lora,80\n", encoding="utf-8")
    status, stderr = run_main([], foreign, tmp_path, capsys)
    assert_one_line_error(status, stderr, str(foreign), "header differs", "--results_file")
    assert foreign.read_text(encoding="utf-8") == "timestamp,method,f1\n2024-01-01,lora,80\n"


@pytest.mark.parametrize("content, line, problem", [
    ('2024-01-02,"unterminated\n', 3, "does not parse as CSV"),
    ("2024-01-02,lora,80,extra\n", 3, "4 fields where the header has 3"),
])
def test_results_file_that_does_not_parse_is_refused_before_training(content, line, problem, tmp_path, capsys,
                                                                      monkeypatch):
    path = tmp_path / "runs.csv"
    path.write_text(",".join(RESULT_COLUMNS[:3]) + "\n2024-01-01,base,x\n" + content, encoding="utf-8")
    before = path.read_bytes()
    monkeypatch.setattr(transformers.Trainer, "train", train_must_not_start)
    status, stderr = run_main([], path, tmp_path, capsys)
    assert_one_line_error(status, stderr, f"--results_file: {path}: line {line}: {problem}")
    assert path.read_bytes() == before


def train_must_not_start(*args, **kwargs):
    raise AssertionError("training started although the run's row could not be written at its end")


def test_unwritable_results_destination_is_refused_before_training(tmp_path, results_file, capsys, monkeypatch):
    # Permission bits do not stop root (CI containers): opening the file for appending is made to fail instead.
    real_open = open

    def read_only(file, mode="r", *args, **kwargs):
        if str(file) == str(results_file) and mode != "r":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr(transformers.Trainer, "train", train_must_not_start)
    before = results_file.read_bytes()
    status, stderr = run_main([], results_file, tmp_path, capsys)
    assert_one_line_error(status, stderr, f"--results_file {results_file}: cannot be written: Permission denied")
    assert results_file.read_bytes() == before
    monkeypatch.undo()
    # A destination that cannot be created, whoever runs: its folder is a file.
    (tmp_path / "file").write_text("")
    status, stderr = run_main([], tmp_path / "file" / "runs.csv", tmp_path, capsys)
    assert_one_line_error(status, stderr, f"--results_file {tmp_path / 'file' / 'runs.csv'}: {tmp_path / 'file'} is "
                                          "not a directory")


def test_earlier_versions_results_file_passes_the_start_up_check(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(",".join(c for c in RESULT_COLUMNS if c not in ("resumes", "resumed_from_step")) + "\n")
    check_results_file(path)  # the append will migrate it; refusing it would only make the user do that by hand


def test_script_exit_status_and_debug_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_qa(answers=[{"text": "Lisboa", "answer_start": -3}])), encoding="utf-8")
    results = tmp_path / "runs.csv"
    command = [sys.executable, "bertimbau_base/main_qlora.py", "--smoke", "--train_file", str(bad),
               "--validation_file", str(SMOKE_VALIDATION_FILE), "--results_file", str(results),
               "--output_dir", str(tmp_path / "out")]
    quiet = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert quiet.returncode == 2
    assert quiet.stderr.rstrip().splitlines()[-1] == (
        f"error: {bad}: question id 'q1': answer_start -3 is outside the context "
        "(length 42); fix answer_start or the answer text")
    assert "Traceback" not in quiet.stderr
    # The run starts with one line saying what runs; --debug adds the whole resolved config.
    assert f"Run base qlora: model smoke:tiny-bert-pt, data files:bad.json|{SMOKE_VALIDATION_FILE.name}" in quiet.stderr
    assert "Resolved config" not in quiet.stderr
    debug = subprocess.run([*command, "--debug"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                           env=os.environ.copy())
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "DataError" in debug.stderr
    assert "Resolved config" in debug.stderr and '"learning_rate": 0.001' in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == quiet.stderr.rstrip().splitlines()[-1]
    assert not results.exists()


# ---------------------------------------------------------------------------------------------------------
# Randomly corrupted SQuAD files: DataError or valid examples, never another exception.

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
SQUAD_KEYS = ["data", "paragraphs", "qas", "context", "question", "answers", "id", "text", "answer_start", "title",
              "is_impossible"]


def _paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def _parent_and_key(doc, path):
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    return parent, path[-1]


@st.composite
def corrupted_squad_files(draw):
    """(file suffix, bytes): a valid nested or flat file with 1-4 random edits, sometimes with broken bytes."""
    doc = copy.deepcopy(draw(st.sampled_from([NESTED, {"data": FLAT}, FLAT])))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent, key = _parent_and_key(doc, path)
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "add_key"]))
        if action == "replace":
            parent[key] = draw(JSON_VALUES | st.sampled_from(["", " ", "Lisboa", 0, -1, 41, 42, 10**9, True, []]))
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(SQUAD_KEYS))] = draw(JSON_VALUES)
    suffix = draw(st.sampled_from([".json", ".jsonl"]))
    if suffix == ".jsonl" and isinstance(doc, list):
        raw = "\n".join(json.dumps(record, ensure_ascii=False) for record in doc).encode()
    else:
        raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.booleans()):
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + draw(st.binary(max_size=4)) + raw[position + draw(st.integers(0, 4)):]
    return suffix, raw


@given(corrupted_squad_files())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_squad_files_raise_data_error_or_load(case):
    suffix, raw = case
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / f"fuzz{suffix}"
        path.write_bytes(raw)
        try:
            examples = load_squad_file(path)
        except DataError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message
            return
    # What loads is usable: unique ids, text fields, answers inside their context.
    assert len({e["id"] for e in examples}) == len(examples) > 0
    for example in examples:
        assert isinstance(example["question"], str) and example["question"].strip()
        assert isinstance(example["context"], str) and example["context"].strip()
        answers = example["answers"]
        assert len(answers["text"]) == len(answers["answer_start"]) > 0
        assert all(0 <= start < len(example["context"]) for start in answers["answer_start"])
