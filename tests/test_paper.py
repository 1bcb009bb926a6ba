"""paper/: figures and tables from results CSVs (the paper's numbers, multi-seed runs, a partial grid)."""
import ast
import csv
import math
import re
import statistics
import struct
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

from common.results import RESULT_COLUMNS

PAPER_DIR = REPO_ROOT / "paper"
PAPER_CSV = REPO_ROOT / "results" / "paper_reported.csv"
sys.path.insert(0, str(PAPER_DIR))  # the scripts import their sibling results_table.py as when run directly

import make_figures  # noqa: E402
import results_table  # noqa: E402
import summarize  # noqa: E402

# Pixel size of each PNG: figure size in inches x make_figures.DPI (130); no tight bbox, so sizes are fixed.
PNG_SIZES = {
    "fig_bertimbau_base_f1_mt_comparison": (1560, 1040),
    "fig_bertimbau_large_f1_mt_comparison": (1560, 1040),
    "lr_comparison": (1560, 650),
    "fig_bertimbau_base_efficiency": (1040, 715),
    "fig_bertimbau_large_efficiency": (1040, 715),
    "fig_bertimbau_base_speedup": (1300, 715),
    "fig_bertimbau_large_speedup": (1300, 715),
}
MEMORY_FIGURE = {"fig_peak_memory": (1170, 715)}
COMPARISON_FIGURE = {"fig_ours_vs_paper": (1690, 780)}


def paper_rows():
    with open(PAPER_CSV, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_runs(path, rows):
    """A results file as the training scripts write it: RESULT_COLUMNS, in order."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in RESULT_COLUMNS})
    return path


def run_row(*, size, method, lr, epochs, seed, f1, em, time_s, memory="", status="ok"):
    return {"model_size": size, "method": method, "learning_rate": lr, "num_epochs": float(epochs), "seed": seed,
            "f1": f1, "exact_match": em, "train_time_s": time_s, "peak_memory_mb": memory, "status": status,
            "device": "cuda:NVIDIA H100 80GB HBM3", "data_source": "hub:nunorc/squad_v1_pt"}


def multi_seed_rows():
    """Three seeds per paper configuration at paper F1 -1/0/+1.5, plus non-ok rows that must be ignored."""
    rows = []
    for p in paper_rows():
        for seed, shift in ((1, -1.0), (2, 0.0), (3, 1.5)):
            rows.append(run_row(size=p["model_size"], method=p["method"], lr=float(p["learning_rate"]),
                                epochs=p["num_epochs"], seed=seed, f1=float(p["f1"]) + shift,
                                em=float(p["exact_match"]) + shift, time_s=float(p["train_time_s"]) / 3 + seed,
                                memory=(3000.0 if p["model_size"] == "base" else 9000.0) + 10 * seed))
    # A failed run with numbers in it and an OOM without: neither may move a mean.
    rows.append(run_row(size="base", method="lora", lr=2e-4, epochs=2, seed=4, f1=0.0, em=0.0, time_s=1.0,
                        status="failed"))
    rows.append(run_row(size="large", method="qdora", lr=2e-4, epochs=3, seed=4, f1="", em="", time_s="",
                        status="oom"))
    return rows


def partial_rows():
    """Four finished configurations, one OOM, no peak memory: most slots are missing."""
    return [
        run_row(size="base", method="lora", lr=2e-4, epochs=2, seed=42, f1=77.5, em=64.0, time_s=1800),
        run_row(size="base", method="qlora", lr=2e-4, epochs=3, seed=42, f1=74.0, em=61.0, time_s=2700),
        run_row(size="base", method="full", lr=2e-4, epochs=2, seed=42, f1=79.0, em=66.0, time_s=6000),
        run_row(size="large", method="full", lr=4.25e-5, epochs=2, seed=42, f1=84.0, em=72.0, time_s=18000),
        run_row(size="large", method="qdora", lr=2e-4, epochs=2, seed=42, f1="", em="", time_s="", status="oom"),
    ]


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def assert_figures(out, expected):
    for name, size in expected.items():
        pdf, png = out / f"{name}.pdf", out / f"{name}.png"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000, pdf
        assert png.stat().st_size > 30_000, png
        assert png_size(png) == size, png
    drawn = {path.stem for path in out.glob("*.png")}
    assert drawn == set(expected), drawn ^ set(expected)


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def bar_heights(fig):
    return [p.get_height() for ax in fig.axes for p in ax.patches]


# ---------------------------------------------------------------- reading results files


@pytest.mark.parametrize("text, expected", [("0.0002", 2e-4), ("2e-4", 2e-4), ("4.25e-05", 4.25e-5),
                                            ("0.0000425", 4.25e-5), ("4.2500000001e-05", 4.25e-5),
                                            ("4e-05", None), ("1e-3", None)])
def test_learning_rates_match_the_grid_as_numbers(text, expected):
    key = results_table.find_grid_key({"model_size": "base", "method": "lora", "learning_rate": text, "num_epochs": "2.0"})
    assert (key[2] if key else None) == expected


def test_aggregate_means_and_std_over_ok_rows_only(tmp_path):
    table = results_table.load_table(write_runs(tmp_path / "runs.csv", multi_seed_rows()))
    lora = table.stat(("base", "lora", 2e-4, 2), "f1")
    assert (lora.n, lora.mean) == (3, pytest.approx(78.01 + 0.5 / 3))
    assert lora.std == pytest.approx(statistics.stdev([77.01, 78.01, 79.51]))
    assert len(table.cells) == 40 and table.max_runs == 3
    assert table.memory[("large", "qlora")].mean == pytest.approx(9020.0)
    assert table.unfinished == {}  # the failed and OOM configurations also have ok runs


def test_partial_file_knows_what_is_missing_and_why(tmp_path):
    table = results_table.load_table(write_runs(tmp_path / "runs.csv", partial_rows()))
    assert len(table.cells) == 4 and not table.has_memory
    assert table.unfinished == {("large", "qdora", 2e-4, 2): "oom"}
    assert table.stat(("base", "qlora", 2e-4, 2), "f1") is None
    assert table.stat(("base", "qlora", 2e-4, 3), "f1").mean == 74.0


def test_ratios_use_the_papers_conventions():
    table = results_table.load_table(PAPER_CSV)
    # "LoRA reaches 95.8% of full fine-tuning F1 on Large (81.32 vs 84.86)": full at 4.25e-5, same epochs.
    assert round(results_table.compute_percent_of_full(table, ("large", "lora", 2e-4, 2)), 1) == 95.8
    assert round(results_table.compute_percent_of_full(table, ("large", "qlora", 2e-4, 2)), 1) == 94.3
    # Speed-up over full fine-tuning in the same setting: 5:15:30 / 1:23:41.
    speedup = results_table.compute_speedup(table, ("large", "lora", 2e-4, 2))
    assert speedup.mean == pytest.approx(18930 / 5021) and math.isnan(speedup.std)


# ---------------------------------------------------------------- figures


def test_figures_from_the_paper_csv(tmp_path):
    assert make_figures.main(["--out", str(tmp_path)]) == 0
    assert_figures(tmp_path, PNG_SIZES)  # no memory (the paper reports none), no comparison with itself
    assert not (tmp_path / "ours_vs_paper.csv").exists()


def test_figures_from_multi_seed_runs_with_comparison(tmp_path):
    runs = write_runs(tmp_path / "runs.csv", multi_seed_rows())
    out = tmp_path / "figures"
    assert make_figures.main(["--results", str(runs), "--out", str(out)]) == 0
    assert_figures(out, {**PNG_SIZES, **MEMORY_FIGURE, **COMPARISON_FIGURE})
    with open(out / "ours_vs_paper.csv", newline="", encoding="utf-8") as handle:
        comparison = list(csv.DictReader(handle))
    assert len(comparison) == 40
    row = next(r for r in comparison if (r["model_size"], r["method"], r["learning_rate"], r["num_epochs"])
               == ("large", "lora", "0.0002", "2"))
    assert (float(row["paper_f1"]), row["runs"]) == (81.32, "3")
    assert float(row["our_f1"]) == pytest.approx(81.32 + 0.5 / 3, abs=1e-4)
    assert float(row["delta_f1"]) == pytest.approx(0.5 / 3, abs=1e-4)
    assert float(row["our_f1_std"]) == pytest.approx(statistics.stdev([-1.0, 0.0, 1.5]), abs=1e-4)


def test_multi_seed_bars_carry_error_bars_and_mean_labels(tmp_path):
    table = results_table.load_table(write_runs(tmp_path / "runs.csv", multi_seed_rows()))
    fig = make_figures.plot_f1_em(table, model_size="large")
    ax = fig.axes[0]  # 2 epochs, lr 2e-4
    assert len(ax.patches) == 10 and len(ax.collections) == 2  # 5 F1 + 5 EM bars, one error-bar set for each
    assert "81.49\n±1.26" in texts(fig)  # Large LoRA: mean 81.32 + 0.5/3, std of (-1, 0, 1.5)


def test_missing_configurations_are_na_slots_never_zero(tmp_path):
    table = results_table.load_table(write_runs(tmp_path / "runs.csv", partial_rows()))
    figures = make_figures.build_figures(table)
    assert "fig_peak_memory" not in figures  # no peak_memory_mb in the file
    large = figures["fig_bertimbau_large_f1_mt_comparison"]
    assert len(bar_heights(large)) == 2 and min(bar_heights(large)) > 0  # only Large full 4.25e-5 2 ep: F1 + EM
    labels = texts(large)
    assert labels.count("n/a") == 18 and labels.count("n/a\n(oom)") == 1
    base = figures["fig_bertimbau_base_f1_mt_comparison"]
    assert len(bar_heights(base)) == 6 and texts(base).count("n/a") == 17
    speedup = figures["fig_bertimbau_base_speedup"]
    assert [round(h, 3) for h in bar_heights(speedup)] == [round(6000 / 1800, 3)]  # LoRA 2e-4 2 ep only
    assert "3.33×" in texts(speedup) and texts(speedup).count("n/a\n(no full FT)") == 1  # QLoRA 2e-4 3 ep


def test_lr_comparison_prints_gains_and_marks_the_collapse():
    fig = make_figures.plot_lr_comparison(results_table.load_table(PAPER_CSV))
    base, large = fig.axes[:2]
    base_texts, large_texts = [t.get_text() for t in base.texts], [t.get_text() for t in large.texts]
    assert {"+6.2", "+19.7", "+6.7", "+20.3"} <= set(base_texts)  # docs/paper.md: "+6.2" for Base LoRA
    assert {"+5.7", "+11.8", "+7.6"} <= set(large_texts)
    assert "-3.1" not in base_texts  # no gain printed for full fine-tuning
    assert large_texts.count("(collapsed)") == 1 and "(collapsed)" not in base_texts


def test_default_output_folder_keeps_the_papers_figures():
    assert make_figures.choose_out_dir(PAPER_CSV) == PAPER_DIR / "figures"
    assert make_figures.choose_out_dir(REPO_ROOT / "results" / "runs.csv") == PAPER_DIR / "figures" / "runs"


# ---------------------------------------------------------------- tables


def test_summarize_prints_the_papers_tables(capsys):
    assert summarize.main([]) == 0
    out = capsys.readouterr().out
    assert "| 2e-4 | 2 | LoRA | 81.32 | 68.67 | 1:23:41 | 95.8% | 3.77× | 1 |" in out  # Large: the headline row
    assert "| 4.25e-5 | 3 | QLoRA | 53.19 | 39.81 | 0:40:20 | 64.7% | 3.69× | 1 |" in out  # Base
    assert out.count("| 2e-4 | 2 | Full FT |") == 2 and "| 2e-4 | 2 | Full FT | 3.02 | 0.03 | 5:15:30 | 3.6% |" in out
    assert "peak memory" not in out and "±" not in out and "n/a" not in out
    assert out.count("20 of 20 configurations") == 2


def test_summarize_multi_seed_shows_mean_std_and_memory(tmp_path, capsys):
    assert summarize.main(["--results", str(write_runs(tmp_path / "runs.csv", multi_seed_rows()))]) == 0
    out = capsys.readouterr().out
    # Large LoRA 2e-4 2 ep: F1 81.32 + (-1, 0, 1.5); time 5021/3 + (1, 2, 3) s; memory 9000 + (10, 20, 30) MB.
    assert "| 2e-4 | 2 | LoRA | 81.49 ± 1.26 | 68.84 ± 1.26 | 0:27:56 ± 1 s |" in out
    assert "| 9,020 ± 10 | 3 |" in out and "peak memory (MB)" in out


def test_summarize_partial_marks_missing_and_failed(tmp_path, capsys):
    assert summarize.main(["--results", str(write_runs(tmp_path / "runs.csv", partial_rows()))]) == 0
    out = capsys.readouterr().out
    assert "| 2e-4 | 2 | QDoRA | n/a (oom) | – | – | – | – | 0 |" in out
    assert "| 2e-4 | 2 | LoRA | 77.50 | 64.00 | 0:30:00 | – | 3.33× | 1 |" in out  # no Base full at 4.25e-5
    assert "## BERTimbau-Large: 1 of 20 configurations" in out


# ---------------------------------------------------------------- command-line errors, imports


@pytest.mark.parametrize("script", ["make_figures.py", "summarize.py"])
@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("a,b\n1,2\n", "lacks the column(s) model_size, method"),
    ("model_size,method,learning_rate,num_epochs,f1,exact_match,train_time_s,status\n"
     "base,lora,2e-4,2,abc,60,100,ok\n", "line 2: f1 = 'abc' is not a number"),
    ("model_size,method,learning_rate,num_epochs,f1,exact_match,train_time_s,status\n"
     "base,lora,2e-4,2,,,,oom\n", "no finished run (status ok)"),
])
def test_bad_results_file_is_one_line_error_with_status_2(tmp_path, script, content, message):
    path = tmp_path / "runs.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(PAPER_DIR / script), "--results", str(path)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not any(tmp_path.glob("**/*.png"))


def test_paper_imports_nothing_from_training_code():
    training = {"common", "bertimbau_base", "bertimbau_large", "torch", "transformers", "peft"}
    files = sorted(PAPER_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"make_figures.py", "run_grid.py", "summarize.py", "results_table.py"}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                assert node.level == 0, f"{path.name}: relative import"
            else:
                continue
            assert not {name.split(".")[0] for name in names} & training, f"{path.name} imports {names}"


def test_committed_figures_and_readme_image_exist():
    for name, size in PNG_SIZES.items():  # regenerated from results/paper_reported.csv and committed
        assert (PAPER_DIR / "figures" / f"{name}.pdf").exists()
        assert png_size(PAPER_DIR / "figures" / f"{name}.png") == size
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert "paper/figures/lr_comparison.png" in images
    assert all((REPO_ROOT / image).exists() for image in images)


def test_summarize_shows_answerable_scores_beside_the_official_ones(tmp_path, capsys):
    rows = [{**run_row(size="base", method="lora", lr=2e-4, epochs=2, seed=seed, f1=f1, em=em, time_s=1800),
             "eval_examples": 488, "eval_unanswerable": 165, "f1_answerable": f1 * 488 / 323,
             "exact_match_answerable": em * 488 / 323}
            for seed, f1, em in ((1, 20.0, 15.0), (2, 22.0, 17.0))]
    # A row of an older results file, without the answerable columns, still counts for F1/EM.
    rows.append(run_row(size="base", method="full", lr=2e-4, epochs=2, seed=1, f1=24.0, em=19.0, time_s=3600))
    assert summarize.main(["--results", str(write_runs(tmp_path / "runs.csv", rows))]) == 0
    out = capsys.readouterr().out
    assert "| F1 answerable | EM answerable |" in out
    assert "| 2e-4 | 2 | LoRA | 21.00 ± 1.41 | 16.00 ± 1.41 | 0:30:00 ± 0 s | – | 2.00× | 31.73 ± 2.14 | 24.17 ± 2.14 | 2 |" in out
    assert "| 2e-4 | 2 | Full FT | 24.00 | 19.00 | 1:00:00 | – | 1.00× | – | – | 1 |" in out
    assert "unanswerable questions left out: 165 of 488" in out


def test_old_results_file_without_answerable_columns_reads_as_before(tmp_path, capsys):
    old_columns = [c for c in RESULT_COLUMNS if c not in ("eval_unanswerable", "f1_answerable", "exact_match_answerable")]
    path = tmp_path / "old.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(partial_rows())
    assert summarize.main(["--results", str(path)]) == 0
    out = capsys.readouterr().out
    assert "answerable" not in out and "| 2e-4 | 2 | LoRA | 77.50 | 64.00 | 0:30:00 | – | 3.33× | 1 |" in out
