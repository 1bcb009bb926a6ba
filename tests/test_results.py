"""The results file: fixed columns, one intact row per append, concurrent appends never interleave; appends keep
the file's permissions and symlink, sync, clean up after a crashed writer, refuse a file that does not parse and
migrate an earlier version's header."""
import csv
import multiprocessing
import os
import signal
import stat

import pytest

from common.results import RESULT_COLUMNS, ResultsFileError, append_result


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


def test_a_crashed_writers_temporary_copy_is_removed_by_the_next_one(tmp_path, caplog):
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora"})
    child = multiprocessing.get_context("fork").Process(target=_append_and_die_before_the_rename, args=(path,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    [left] = list(tmp_path.glob(".runs.csv.*.tmp"))  # the killed writer's copy
    with caplog.at_level("WARNING", logger="bertimbau_qa"):
        append_result(path, {"method": "qlora"})
    assert not left.exists() and f"Removed {left}" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv", "runs.csv.lock"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
def test_append_keeps_the_files_permissions(tmp_path, mode):
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora"})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # a new file: a new file's mode, not mkstemp's 0600
    path.chmod(mode)
    append_result(path, {"method": "qlora"})
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_append_through_a_symlink_writes_to_its_target(tmp_path):
    target = tmp_path / "shared" / "runs.csv"
    target.parent.mkdir()
    append_result(target, {"method": "lora"})
    link = tmp_path / "runs.csv"
    link.symlink_to(target)
    append_result(link, {"method": "qlora"})
    assert link.is_symlink() and link.resolve() == target
    assert [r["method"] for r in read_rows(target)] == ["lora", "qlora"]
    assert (target.parent / "runs.csv.lock").exists() and not (tmp_path / "runs.csv.lock").exists()  # one lock


def test_append_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "runs.csv"
    append_result(path, {"method": "lora"})
    [copy, folder] = synced
    assert copy.startswith(str(tmp_path / ".runs.csv.")) and folder == str(tmp_path)  # synced before and after the rename


@pytest.mark.parametrize("tail, line, problem", [
    ('2024-01-02,"unterminated\n', 3, "does not parse as CSV"),  # a row appended after it would vanish into it
    ("2024-01-02,qlora,extra\n", 3, "3 fields where the header has 2"),
])
def test_a_file_that_does_not_parse_is_refused_naming_the_line(tmp_path, tail, line, problem):
    path = tmp_path / "runs.csv"
    path.write_text("timestamp,method\n2024-01-01,lora\n" + tail, encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(ResultsFileError, match=f"{path}: line {line}: {problem}"):
        append_result(path, {"method": "dora"})
    assert path.read_bytes() == before


def test_an_earlier_versions_header_is_migrated_keeping_its_rows(tmp_path, caplog):
    earlier = [c for c in RESULT_COLUMNS if c not in ("resumes", "resumed_from_step", "f1_pt", "exact_match_pt")]
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=earlier, lineterminator="\n")
        writer.writeheader()
        writer.writerow({"method": "lora", "f1": "78.01", "status": "ok", "error": "a, b\nc"})
    path.chmod(0o640)
    with caplog.at_level("WARNING", logger="bertimbau_qa"):
        append_result(path, {"method": "qlora", "f1_pt": 80.5, "resumes": 1, "resumed_from_step": 500})
    assert "header of an earlier version" in caplog.text
    old, new = read_rows(path)  # read_rows checks the header is this version's
    assert (old["method"], old["f1"], old["error"], old["f1_pt"], old["resumes"]) == ("lora", "78.01", "a, b\nc", "", "")
    assert (new["method"], new["f1_pt"], new["resumes"], new["resumed_from_step"]) == ("qlora", "80.5", "1", "500")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Columns out of this version's order, or without the columns every version had, are another file.
    for header in ("method,timestamp,f1,exact_match,status,error", "timestamp,method,f1"):
        path.write_text(header + "\n", encoding="utf-8")
        with pytest.raises(ResultsFileError, match="header differs"):
            append_result(path, {"method": "lora"})


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


def test_the_row_describes_the_step_as_planned(monkeypatch):
    """`compiled` and `cuda_graphs` come from the run's StepPlan (the one run.py followed), not from a second reading
    of the flags; without a plan, the same plan is made from the config."""
    from common.config import parse_config
    from common.model import StepPlan
    from common.results import describe_run

    config = parse_config("base", "lora", ["--smoke"])
    row = describe_run(config, world_size=1)
    assert (row["compiled"], row["cuda_graphs"]) == ("false", "off")  # a CPU: eager, no graphs
    plan = StepPlan(compiled=True, compile_reason="test", graphs="step", graphs_reason="test", few_shapes=True,
                    pad_to_multiple_of=16)
    row = describe_run(config, world_size=1, plan=plan)
    assert (row["compiled"], row["cuda_graphs"]) == ("true", "step")
