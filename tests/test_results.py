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
