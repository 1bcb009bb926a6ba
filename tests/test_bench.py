"""The benchmark's code paths run (tiny sizes, CPU) and report consistent numbers; no timing is asserted."""
import csv
import json

import numpy as np
import pytest

from common import bench, bench_gpu
from conftest import BERTIMBAU_VOCAB, REAL_SAMPLE

# The data docs/speed.md measured on, where this checkout has it; otherwise the bench's own fallback (offline in
# the tests: the shipped demo data).
DATA_FLAGS = (["--data", str(REAL_SAMPLE), "--vocab", str(BERTIMBAU_VOCAB)]
              if REAL_SAMPLE.exists() and BERTIMBAU_VOCAB.exists() else [])


def test_cpu_comparison_reports_both_arms(tmp_path, capsys):
    assert bench.main(["--cpu", "--examples", "24", "--epochs", "1", "--out_dir", str(tmp_path), *DATA_FLAGS]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("train_tokens_per_s_ours", "train_tokens_per_s_baseline", "train_speedup", "postprocess_speedup",
                "f1_ours", "f1_baseline"):
        assert key in summary
    assert summary["train_tokens_per_s_ours"] > 0 and summary["train_tokens_per_s_baseline"] > 0
    assert summary["train_speedup"] == pytest.approx(
        summary["train_tokens_per_s_ours"] / summary["train_tokens_per_s_baseline"], rel=0.01)
    assert 0 <= summary["f1_ours"] <= 100 and 0 <= summary["f1_baseline"] <= 100
    low, high = summary["f1_difference_ci95_low"], summary["f1_difference_ci95_high"]
    assert low <= summary["f1_ours"] - summary["f1_baseline"] + 0.01 and summary["f1_ours"] - summary["f1_baseline"] - 0.01 <= high
    assert summary["f1_agree"] == (low <= 0 <= high) and summary["f1_not_worse"] == (high >= 0)
    assert summary["target_met"] == (summary["train_speedup"] >= bench.TRAIN_SPEEDUP_TARGET and summary["f1_not_worse"])
    assert (tmp_path / "bench_cpu.csv").read_text().count("\n") == 2


def test_bench_writes_csv_files_only_when_asked(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(bench, "cpu_comparison", lambda **kwargs: asked.append(kwargs["out_csv"]) or {"f1_ours": 1.0})
    assert bench.main(["--cpu"]) == 0
    assert bench.main(["--cpu", "--out_dir", str(tmp_path)]) == 0
    assert asked == [None, tmp_path / "bench_cpu.csv"]
    bench.write_rows(None, [{"a": 1}])  # what cpu_comparison and gpu_table do with no --out_dir: nothing
    bench.write_rows(tmp_path / "rows.csv", [{"a": 1}])
    assert (tmp_path / "rows.csv").read_text() == "a\n1\n"


def test_bench_data_offline_falls_back_to_the_demo_data_and_says_so(capsys, monkeypatch):
    def unreachable():
        raise ConnectionError("offline")

    monkeypatch.setattr(bench, "load_hub_sample", unreachable)  # whatever this machine's Hub cache holds
    monkeypatch.setattr(bench, "bertimbau_vocab_from_hub", unreachable)
    examples, vocab, label = bench.bench_data(30)
    assert len(examples) == 30 and vocab == bench.SMOKE_VOCAB and label == "shipped smoke data (smoke vocab)"
    out = capsys.readouterr().out
    assert "NOTE" in out and "ConnectionError: offline" in out and "do not compare" in out
    with pytest.raises(bench.ConfigError, match="--data/--vocab"):  # a file given: no silent fallback
        bench.bench_data(30, data_file=bench.SMOKE_TRAIN_FILE)


def test_bench_data_from_files(real_sample, bertimbau_vocab):
    examples, vocab, label = bench.bench_data(400, data_file=real_sample, vocab_file=bertimbau_vocab)
    assert len(examples) == 400 and vocab == bertimbau_vocab
    assert label == f"{real_sample.name}, vocabulary {bertimbau_vocab.name}"


def test_gpu_table_dry_run_on_cpu(tmp_path, capsys):
    """`--gpu --dry`: the GPU script's code paths (both arms, warm-up over buckets, timing, profiler) on a CPU."""
    out = tmp_path / "bench_gpu.csv"
    assert bench.main(["--gpu", "--dry", "--sizes", "base", "--methods", "lora", "--out_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "collation of 16 windows" in printed and "eager steps/s -> compiled" in printed
    rows = {row["arm"]: row for row in csv.DictReader(open(out, encoding="utf-8"))}
    assert set(rows) == {"eager", "compiled"} and not any(row.get("error") for row in rows.values())
    for row in rows.values():
        assert float(row["steps_per_s"]) > 0 and float(row["real_tokens_per_s"]) > 0
        assert float(row["projected_2_epochs_s"]) > 0 and row["paper_2_epochs_s"] == "1897"
        assert float(row["collate_packed_gather_ms"]) < float(row["collate_tokenizer_pad_ms"])
    assert float(rows["compiled"]["compile_s"]) > 0 and float(rows["eager"]["compile_s"]) == 0
    # Compiled, the step dispatches fewer operations (fused into graphs) than eagerly.
    assert float(rows["compiled"]["kernels_per_step"]) < float(rows["eager"]["kernels_per_step"])


def test_warm_up_visits_every_bucket_before_the_timed_steps():
    windows = bench_gpu.synthetic_windows(3000, vocab_size=500, max_seq_length=384, seed=0)
    order, warmup_steps = bench_gpu.step_order(windows, batch_size=16, warmup_steps_per_bucket=3, timed_steps=10,
                                               profile_steps=2, seed=0)
    assert len(order) == (warmup_steps + 12) * 16
    widths = [max(windows.lengths[order[i:i + 16]]) for i in range(0, warmup_steps * 16, 16)]
    buckets = [-(-int(w) // 64) * 64 for w in widths]
    all_buckets = np.array([-(-int(n) // 64) * 64 for n in windows.lengths])
    fillable = [b for b in range(64, 385, 64) if (all_buckets == b).sum() >= 16]  # a batch fits in the bucket
    assert fillable == [128, 192, 256, 320, 384]  # windows of 64 tokens or fewer are rare (0.1%)
    assert sorted(set(buckets)) == fillable and all(buckets.count(b) == 3 for b in fillable)


def test_synthetic_lengths_follow_the_measured_distribution():
    lengths = bench_gpu.sample_lengths(200_000, max_seq_length=384, seed=0)
    # Portuguese SQuAD at 384/128: mean 215.5, median 202 real tokens per window (the cap trims the mean a little).
    assert np.median(lengths) == pytest.approx(202, abs=2)
    assert lengths.mean() == pytest.approx(215.5, abs=3)
    assert lengths.max() == 384


def test_flops_per_token_counts_frozen_weights_without_weight_gradients():
    shape = bench_gpu.GPU_SHAPES["base"]
    full = bench_gpu.training_flops_per_token(shape=shape, trainable_linear=85_000_000, mean_sq_over_mean_len=0)
    frozen = bench_gpu.training_flops_per_token(shape=shape, trainable_linear=0, mean_sq_over_mean_len=0)
    assert full / frozen == pytest.approx(1.5, rel=0.01)  # 6N versus 4N


def test_f1_difference_interval_is_zero_for_equal_arms_and_excludes_zero_for_a_real_gap():
    examples = [{"id": str(i), "answers": {"text": [f"resposta {i}"], "answer_start": [0]}} for i in range(200)]
    right = {str(i): f"resposta {i}" for i in range(200)}
    assert bench.f1_difference_interval(right, dict(right), examples) == (0.0, 0.0)
    # Ours right on every question, the baseline on every other one: a 50-point gap the interval must see.
    half = {str(i): (f"resposta {i}" if i % 2 else "nada") for i in range(200)}
    low, high = bench.f1_difference_interval(right, half, examples)
    assert 40 < low < 50 < high < 60
