"""The results file: fixed columns, one intact row per append, concurrent appends never interleave."""
import csv
import multiprocessing
import os
import signal

import pytest

from common.results import RESULT_COLUMNS, append_result


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == RESULT_COLUMNS
        return list(reader)


def test_append_writes_header_once_and_keeps_order(tmp_path):
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora", "f1": 78.01, "error": "line one\nline two, with comma"})
    append_result(path, {"method": "qlora", "f1": 73.23})
    rows = read_rows(path)
    assert [r["method"] for r in rows] == ["lora", "qlora"]
    assert rows[0]["error"] == "line one\nline two, with comma" and rows[1]["error"] == ""


def test_unknown_column_and_foreign_header_are_refused(tmp_path):
    path = tmp_path / "runs.csv"
    with pytest.raises(KeyError):
        append_result(path, {"not_a_column": 1})
    assert not path.exists()
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header differs"):
        append_result(path, {"method": "lora"})
    assert path.read_text() == "a,b\n1,2\n"


def _append(args):
    path, i = args
    append_result(path, {"method": f"m{i}", "seed": i, "error": "x" * 5000})


def test_concurrent_appends_from_ten_processes(tmp_path):
    path = tmp_path / "runs.csv"
    with multiprocessing.get_context("fork").Pool(10) as pool:
        pool.map(_append, [(path, i) for i in range(10)])
    rows = read_rows(path)
    assert sorted(int(r["seed"]) for r in rows) == list(range(10))
    assert all(r["error"] == "x" * 5000 for r in rows)


def _append_and_die_before_the_rename(path):
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = killed  # in the forked child only: dies with the new file written but not yet in place
    append_result(path, {"method": "never", "error": "y" * 100_000})


def test_a_crash_mid_write_leaves_earlier_rows_intact(tmp_path):
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora", "f1": 78.01})
    before = path.read_bytes()
    child = multiprocessing.get_context("fork").Process(target=_append_and_die_before_the_rename, args=(path,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert path.read_bytes() == before
    append_result(path, {"method": "qlora"})  # the dead process's lock went with it
    assert [r["method"] for r in read_rows(path)] == ["lora", "qlora"]


def example(qid, context, answer, start):
    return {"id": qid, "title": "", "context": context, "question": "q?",
            "answers": {"text": [answer], "answer_start": [start]}}


def test_answerable_means_a_gold_answer_occurs_in_the_context_as_whole_words():
    from common.inference import score_answerable

    inside = "Ele saiu do edifício."
    examples = [
        example("at_start", "Lisboa é a capital.", "Lisboa", 0),
        example("elsewhere_other_case", "A capital é Lisboa.", "lisboa", 0),  # training re-locates it too
        example("elsewhere_as_words", "Ele viu o edifício.", "o edifício", 3),
        # Only inside a longer word ("d|o edifício"): no span of whole tokens equals it.
        example("inside_a_word", inside, "o edifício", inside.index("o edifício")),
        example("translated_apart", "A capital é Lisboa.", "Porto", 0),
    ]
    predictions = {"at_start": {"text": "Lisboa"}, "elsewhere_other_case": {"text": "Lisboa"},
                   "elsewhere_as_words": {"text": "edifício"}, "inside_a_word": {"text": "do edifício"},
                   "translated_apart": {"text": "Lisboa"}}
    columns = score_answerable(predictions, examples)
    assert columns["eval_unanswerable"] == 2
    # Over the three answerable ones: EM 2/3 ("edifício" against "o edifício": the official normalisation drops
    # English articles only), F1 (1 + 1 + 2/3) / 3.
    assert columns["exact_match_answerable"] == pytest.approx(200 / 3, abs=1e-3)
    assert columns["f1_answerable"] == pytest.approx(100 * (2 + 2 / 3) / 3, abs=1e-3)
    none = score_answerable({"translated_apart": {"text": "x"}}, examples[4:])
    assert none == {"eval_unanswerable": 1, "f1_answerable": None, "exact_match_answerable": None}


def test_results_row_carries_the_answerable_count_and_scores(tmp_path, capsys):
    import json

    from common import squad_metric
    from common.data import SMOKE_VALIDATION_FILE, load_squad_file
    from common.run import main

    evaluation = load_squad_file(SMOKE_VALIDATION_FILE)[:12]
    for e in evaluation[:3]:  # answers translated apart from their contexts: nowhere in them
        e["answers"] = {"text": ["xyzzy plugh"], "answer_start": [0]}
    validation = tmp_path / "validation.json"
    validation.write_text(json.dumps(evaluation, ensure_ascii=False), encoding="utf-8")
    results = tmp_path / "runs.csv"
    status = main(model_size="base", method="lora", argv=[
        "--smoke", "--train_file", str(SMOKE_VALIDATION_FILE), "--validation_file", str(validation),
        "--max_train_samples", "16", "--num_epochs", "1", "--results_file", str(results),
        "--output_dir", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err[-3000:]
    [row] = read_rows(results)
    assert row["eval_examples"] == "12" and row["eval_unanswerable"] == "3"
    predicted = json.loads((tmp_path / "out" / "predictions.json").read_text(encoding="utf-8"))
    answerable = evaluation[3:]
    expected = squad_metric.compute(
        predictions=[{"id": e["id"], "prediction_text": predicted[e["id"]]} for e in answerable],
        references=[{"id": e["id"], "answers": e["answers"]} for e in answerable])
    assert float(row["f1_answerable"]) == pytest.approx(expected["f1"], abs=1e-4)
    assert float(row["exact_match_answerable"]) == pytest.approx(expected["exact_match"], abs=1e-4)
    # The all-question scores count the three unanswerable ones as zeros (nothing predicted can match "xyzzy").
    assert float(row["f1"]) == pytest.approx(expected["f1"] * 9 / 12, abs=1e-3)
