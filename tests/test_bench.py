"""The benchmark's code paths run (tiny sizes, CPU) and report consistent numbers; no timing is asserted."""
import csv
import warnings
import dataclasses
import json
import math

import numpy as np
import pytest

from common import bench, bench_gpu
from common.step_graph import WARMUP_STEPS
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
    assert "collation of 16 windows" in printed and "eager steps/s -> fastest arm" in printed
    assert "host work per step besides the step" in printed
    rows = {row["arm"]: row for row in csv.DictReader(open(out, encoding="utf-8"))}
    assert list(rows) == ["eager", "compiled-layers", "graphs", "compiled-layers/64"]
    assert not any(row.get("error") for row in rows.values())
    assert {row["cuda_graphs"] for row in rows.values()} == {"off"}  # no CUDA GPU: nothing is captured
    assert {(row["graphs_that_ran"], row["step_graph_captures"]) for row in rows.values()} == {("off", "0")}
    for row in rows.values():
        assert float(row["steps_per_s"]) > 0 and float(row["real_tokens_per_s"]) > 0
        assert float(row["projected_2_epochs_s"]) > 0 and row["paper_2_epochs_s"] == "1897"
        assert float(row["collate_packed_gather_ms"]) < float(row["collate_tokenizer_pad_ms"])
        assert float(row["host_ms_per_step"]) > 0
    assert float(rows["compiled-layers"]["compile_s"]) > 0 and float(rows["eager"]["compile_s"]) == 0
    assert {row["sync_sites"] for row in rows.values()} == {""}  # nothing to count on a CPU
    assert float(rows["graphs"]["compile_s"]) == 0
    # Compiled, the step dispatches fewer operations (fused into graphs) than eagerly.
    assert float(rows["compiled-layers"]["kernels_per_step"]) < float(rows["eager"]["kernels_per_step"])
    # No GPU: nothing is captured, so only compiled arms pad to buckets (16, or 64 where the arm says so).
    assert {arm: row["padded_to_multiple_of"] for arm, row in rows.items()} == {
        "eager": "1", "graphs": "1", "compiled-layers": "16", "compiled-layers/64": "64"}
    assert all(float(row["computed_tokens_per_real"]) >= 1 for row in rows.values())


def test_host_time_is_measured_over_replays_that_do_nothing(tmp_path):
    host = bench_gpu.host_time_per_step(windows_for=bench_gpu.windows_source(dry=True, count=2_000), work_dir=tmp_path,
                                        steps=30)
    # One bucket: its uncaptured steps are real; from the capture on (whose stand-in runs the step once, then
    # replays it as a CUDA graph capture would) every step is a replay.
    assert host["host_replays"] == 30 - WARMUP_STEPS
    assert host["host_ms_per_step"] > 0


def test_gpu_configurations_and_their_arms(capsys):
    assert bench_gpu.parse_configs(["large:full", "base:lora:eager,graphs"], sizes=[], methods=[]) == [
        ("large", "full", ["eager", "compiled-layers", "throughput-layers", "graphs"]),
        ("base", "lora", ["eager", "graphs"])]
    assert bench_gpu.parse_configs(None, sizes=["base"], methods=["dora"], arms=["graphs"]) == [("base", "dora", ["graphs"])]
    assert bench.main(["--gpu", "--dry", "--configs", "base:lora:eager,fast"]) == 2
    assert "--configs 'base:lora:eager,fast': expected size:method[:arm,...]" in capsys.readouterr().err
    # /N: the same arm with batches padded to buckets of N tokens.
    assert bench_gpu.parse_configs(["base:lora:graphs,graphs/64"], sizes=[], methods=[]) == [
        ("base", "lora", ["graphs", "graphs/64"])]
    assert bench_gpu.split_arm("graphs/64") == ("graphs", 64) and bench_gpu.split_arm("graphs") == ("graphs", 16)
    assert bench.main(["--gpu", "--dry", "--configs", "base:lora:graphs/12"]) == 2
    assert bench.main(["--gpu", "--dry", "--arms", "eager/x"]) == 2
    assert "--arms eager/x: choose from" in capsys.readouterr().err


def test_default_run_measures_every_configuration_before_the_extra_arms():
    """What a run cut short loses: extras, not a configuration's eager-against-default pair."""
    configs = bench_gpu.parse_configs(None, sizes=["base", "large"], methods=["full", "lora", "dora"])
    plan = bench_gpu.run_plan(configs, by_priority=True)
    assert plan[:12] == [(size, method, arm) for size in ("base", "large") for method in ("full", "lora", "dora")
                         for arm in ("eager", "compiled-layers")]
    assert plan[12:] == [("base", "full", "throughput-layers"), ("base", "lora", "graphs"),
                         ("base", "lora", "compiled-layers/64"), ("large", "full", "throughput-layers"),
                         ("large", "full", "graphs")]
    # Asked for explicitly: the order given.
    assert bench_gpu.run_plan([("base", "lora", ["graphs", "eager"])], by_priority=False) == [
        ("base", "lora", "graphs"), ("base", "lora", "eager")]


def test_time_budget_stops_starting_arms(tmp_path, capsys):
    assert bench.main(["--gpu", "--dry", "--sizes", "base", "--methods", "lora", "--time_budget_s", "0",
                       "--out_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "bench_gpu.csv", encoding="utf-8")))
    assert [row["arm"] for row in rows] == ["eager"]  # the first arm always runs
    assert ("time budget of 0 s spent: not run: base lora compiled-layers, base lora graphs, "
            "base lora compiled-layers/64") in printed


def test_sync_sites_name_where_the_timed_steps_synchronised(monkeypatch):
    """On a GPU the timed steps' synchronisations arrive as warnings (`set_sync_debug_mode("warn")`); each is
    counted with the Python lines that made it. Simulated here: the CUDA calls stubbed, the warning raised by hand."""
    import torch

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    clock = bench_gpu._Clock(warmup_steps=1, timed_steps=2, profile_steps=0, on_gpu=True)

    def reads_a_gpu_value():
        warnings.warn("called a synchronizing CUDA operation", UserWarning)

    clock.step_end(1)
    for _ in range(2):
        reads_a_gpu_value()
    warnings.warn("something else")  # not a synchronisation: not counted
    clock.step_end(3)  # the timed steps end: warnings go back to normal
    reads_a_gpu_value()
    assert len(clock.sync_sites) == 2 and clock.sync_sites[0] == clock.sync_sites[1]
    innermost = clock.sync_sites[0].split(" < ")
    assert innermost[0].startswith("test_bench.py:") and innermost[0].endswith(" reads_a_gpu_value")
    assert innermost[1].endswith(" test_sync_sites_name_where_the_timed_steps_synchronised") and len(innermost) == 3
    assert bench_gpu.summarize_sites(["a", "b", "a"]) == "2x a; 1x b"


def test_an_arm_that_fails_part_way_leaves_nothing_on(monkeypatch):
    """`close` (measure_arm's `finally`) turns sync counting and the profiler off, so the next arm starts clean."""
    import torch

    modes = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    before = warnings.showwarning
    counting = bench_gpu._Clock(warmup_steps=1, timed_steps=5, profile_steps=2, on_gpu=True)
    counting.step_end(1)  # the timed steps begin, then the arm fails
    assert warnings.showwarning == counting._record and modes == ["warn"]
    counting.close()
    assert warnings.showwarning is before and modes == ["warn", "default"]
    profiling = bench_gpu._Clock(warmup_steps=0, timed_steps=1, profile_steps=5, on_gpu=False)
    profiling.step_end(1)  # profiling begins, then the arm fails
    torch.ones(3).add(1)
    assert profiling._profiling and len(profiling.profiler.events() or []) == 0  # running: nothing to read yet
    profiling.close()
    assert not profiling._profiling and len(profiling.profiler.events()) > 0  # stopped: its events are there


@pytest.mark.parametrize("bucket", [64, 16])
def test_warm_up_visits_each_bucket_the_measured_steps_use(bucket):
    windows = bench_gpu.synthetic_windows(3000, vocab_size=500, max_seq_length=384, seed=0)
    order, warmup_steps = bench_gpu.step_order(windows, batch_size=16, warmup_steps_per_bucket=3, timed_steps=40,
                                               profile_steps=5, seed=0, bucket=bucket)
    assert len(order) == (warmup_steps + 45) * 16

    def widths(start, stop):
        return [-(-int(max(windows.lengths[order[i:i + 16]])) // bucket) * bucket for i in range(start * 16, stop * 16, 16)]

    warmed, measured = widths(0, warmup_steps), widths(warmup_steps, warmup_steps + 45)
    assert sorted(set(warmed)) == sorted(set(measured)) and all(warmed.count(w) == 3 for w in set(warmed))
    # The measured batches are length-grouped as in training: sorted longest first inside the megabatch.
    assert measured == sorted(measured, reverse=True)
    if bucket == 64:
        assert sorted(set(measured)) == [128, 192, 256, 320, 384]
    else:  # most of the 19 widths a training epoch uses; the rarest are left out, and their warm-up with them
        assert 14 <= len(set(measured)) < 19 and set(measured) <= set(range(96, 385, 16))


def test_computed_tokens_per_real_token_by_bucket_width():
    """The padding a bucket width costs, on the benchmark's Portuguese SQuAD lengths in the sampler's order: the
    figures common/batches.py quotes for choosing 16."""
    from common.sampler import epoch_order

    windows = bench_gpu.synthetic_windows(93_205, vocab_size=500, max_seq_length=384, seed=0)
    order = epoch_order(windows.lengths.tolist(), batch_size=16, seed=42, epoch=0)
    ratios = {m: bench_gpu.computed_tokens_ratio(windows, order, batch_size=16, multiple=m) for m in (1, 16, 64)}
    assert ratios[64] == pytest.approx(1.153, abs=0.003) and ratios[16] == pytest.approx(1.047, abs=0.003)
    assert 1 < ratios[1] < 1.02
    # A single batch by hand: lengths 100 and 30 padded to 112 (x16) or 128 (x64).
    two = dataclasses.replace(windows, lengths=np.array([100, 30]))
    assert bench_gpu.computed_tokens_ratio(two, [0, 1], batch_size=2, multiple=16) == pytest.approx(224 / 130)
    assert bench_gpu.computed_tokens_ratio(two, [0, 1], batch_size=2, multiple=64) == pytest.approx(256 / 130)


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


# ---------------------------------------------------------------- real weights (common/bench_real.py)


def test_real_benchmark_splits_the_public_sample_by_article(real_sample):
    from common import bench_real
    from common.data import load_squad_file

    train, evaluation = bench_real.split_by_article(load_squad_file(real_sample))
    assert (len(train), len(evaluation)) == (2798, 488)  # the split: 8 articles train, 2 evaluate
    assert {e["title"] for e in evaluation} == {"The_Legend_of_Zelda:_Twilight_Princess", "Spectre_(2015_film)"}
    assert not {e["title"] for e in train} & {e["title"] for e in evaluation}
    with pytest.raises(bench_real.DataError, match="need more than 2"):
        bench_real.split_by_article(evaluation)


def test_real_benchmark_statistics():
    from common import bench_real

    mean, low, high = bench_real.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / 3 ** 0.5) and mean - low == pytest.approx(high - mean)
    rows = [{"method": "lora", "arm": arm, "seed": seed, "f1": f1, "exact_match": f1 - 5, "f1_answerable": f1 + 10,
             "exact_match_answerable": f1 + 5, "train_tokens_per_s": tps}
            for arm, tps, scores in (("paper's way", 100.0, (20.0, 22.0, 24.0)), ("ours", 300.0, (21.0, 24.0, 27.0)))
            for seed, f1 in zip((1, 2, 3), scores)]
    base, ours = bench_real.summarize(rows)
    assert (base["f1"], base["f1_sd"], base["train_tokens_per_s"]) == (22.0, 2.0, 100.0)
    assert "f1_diff" not in base
    assert ours["f1_diff"] == pytest.approx(2.0) and ours["f1_answerable_diff"] == pytest.approx(2.0)
    assert ours["f1_diff_low"] == pytest.approx(2.0 - 4.303 / 3 ** 0.5)  # per-seed differences 1, 2, 3
    table = bench_real.format_summary([base, ours])
    assert "| lora | ours | 3 | 24.00 ± 3.00 | 19.00 ± 3.00 | 34.00 ± 3.00 | 29.00 ± 3.00 | +2.00 [-0.48, +4.48] |" in table


def test_real_benchmark_without_the_weights_says_what_to_install(monkeypatch, capsys):
    from common import bench_real

    monkeypatch.setattr(bench_real, "minilm_dir", lambda: None)
    assert bench.main(["--real", "--seeds", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bench_real.MISSING_MINILM}"


def test_masked_loss_ablation_uses_berts_own_loss():
    """The `masked_loss` ablation must be exactly BertForQuestionAnswering's loss: padding inside the softmax."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from common.bench_real import bert_qa_loss
    from common.trainer import qa_loss

    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=64)).eval()
    mask = torch.tensor([[1] * 12, [1] * 7 + [0] * 5])
    batch = {"input_ids": torch.randint(1, 50, (2, 12)) * mask, "attention_mask": mask,
             "start_positions": torch.tensor([3, 0]), "end_positions": torch.tensor([5, 0])}
    with torch.no_grad():
        out = model(**batch)
    labels = {"start_positions": batch["start_positions"], "end_positions": batch["end_positions"]}
    berts = bert_qa_loss(start_logits=out.start_logits, end_logits=out.end_logits, attention_mask=mask, **labels)
    assert berts.item() == pytest.approx(out.loss.item(), abs=1e-6)
    masked = qa_loss(start_logits=out.start_logits, end_logits=out.end_logits, attention_mask=mask, **labels)
    assert masked.item() != pytest.approx(berts.item(), abs=1e-4)  # the padding really changes it


def test_real_benchmark_without_the_sample_falls_back_to_the_hub_then_says_why_not(monkeypatch, tmp_path, capsys):
    from common import bench_real

    asked = []

    def offline(name, **kwargs):
        asked.append(name)
        raise bench_real.DataError(f"could not load Hub dataset {name!r} (offline)")

    monkeypatch.setattr(bench_real, "minilm_dir", lambda: tmp_path)
    monkeypatch.setattr(bench_real, "load_hub_dataset", offline)
    assert bench.main(["--real"]) == 2
    assert asked == ["nunorc/squad_v1_pt"]
    assert capsys.readouterr().err.strip() == (
        "error: no --data given and the Hub fallback failed (could not load Hub dataset 'nunorc/squad_v1_pt'): pass "
        "--data with a SQuAD v1.1 JSON file of three or more articles, such as the public sample of squad_v1_pt")


def test_agreement_check_dry_run_compares_each_arm_with_the_first(tmp_path, capsys):
    """`--gpu --agreement --dry`: the same training in several arms, dropout off; on a CPU nothing is captured, so a
    repeated arm and the graphs arm (the eager step) match the first exactly and the compiled arm to rounding."""
    assert bench.main(["--gpu", "--agreement", "--dry", "--configs", "base:lora:eager,eager,graphs,compiled-layers",
                       "--out_dir", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "bench_gpu_agreement.csv", encoding="utf-8")))
    assert [row["arm"] for row in rows] == ["eager", "eager", "graphs", "compiled-layers"]
    assert all(row["reference_arm"] == "eager" and row["steps"] == str(bench_gpu.AGREEMENT_STEPS) for row in rows)
    for row in rows[:3]:
        assert float(row["start_max_abs_diff"]) == 0
        assert float(row["loss_max_abs_diff"]) == 0 and float(row["weight_update_rel_diff"]) == 0
    compiled = rows[3]
    assert float(compiled["start_max_abs_diff"]) == 0  # every arm starts from the same adapter weights
    assert 0 < float(compiled["loss_max_abs_diff"]) < 1e-3 and float(compiled["grad_norm_max_rel_diff"]) < 1e-2
    assert float(compiled["weight_update_rel_diff"]) < 0.1
    assert "weight update rel diff" in capsys.readouterr().out
    assert bench.main(["--agreement", "--dry"]) == 2  # goes with --gpu


def test_agreement_order_alternates_two_full_buckets():
    windows = bench_gpu.synthetic_windows(3000, vocab_size=500, max_seq_length=384, seed=0)
    order = bench_gpu.agreement_order(windows, batch_size=16, bucket=16, steps=12, seed=0)
    widths = [-(-int(windows.lengths[order[i:i + 16]].max()) // 16) * 16 for i in range(0, len(order), 16)]
    assert len(widths) == 12 and len(set(widths)) == 2
    assert widths[0::2] == [widths[0]] * 6 and widths[1::2] == [widths[1]] * 6  # in turn: each captured, replayed
    for i in range(0, len(order), 16):  # every window of a batch inside that batch's bucket
        assert (-(-windows.lengths[order[i:i + 16]] // 16) * 16 == widths[i // 16]).all()


def test_comparing_two_trainings():
    import torch

    reference = {"loss": torch.tensor([2.0, 1.0]), "grad_norm": torch.tensor([4.0, 2.0]),
                 "start": {"w": torch.zeros(2)}, "end": {"w": torch.tensor([3.0, 4.0])}}  # moved by 5
    same = bench_gpu.compare_training(reference, reference)
    assert same == {"start_max_abs_diff": 0, "loss_max_abs_diff": 0, "grad_norm_max_rel_diff": 0,
                    "weight_update_rel_diff": 0}
    other = {"loss": torch.tensor([2.0, 1.5]), "grad_norm": torch.tensor([5.0, 2.0]),
             "start": {"w": torch.zeros(2)}, "end": {"w": torch.tensor([3.0, 3.0])}}  # 1 apart
    assert bench_gpu.compare_training(other, reference) == pytest.approx(
        {"start_max_abs_diff": 0, "loss_max_abs_diff": 0.5, "grad_norm_max_rel_diff": 0.25,
         "weight_update_rel_diff": 0.2})
    fewer = {**other, "loss": torch.tensor([2.0])}  # another number of steps (e.g. another batch size): no comparison
    assert all(math.isnan(v) for v in bench_gpu.compare_training(fewer, reference).values())


def test_the_rows_say_which_graphs_really_ran():
    from types import SimpleNamespace

    captured = SimpleNamespace(step_graphs=SimpleNamespace(disabled_because=None), cudagraphs=False)
    failed = SimpleNamespace(step_graphs=SimpleNamespace(disabled_because="RuntimeError: boom"), cudagraphs=False)
    trees = SimpleNamespace(step_graphs=None, cudagraphs=True)
    uncaptured = SimpleNamespace(step_graphs=None, cudagraphs=False)
    assert [bench_gpu.graphs_that_ran(t) for t in (captured, failed, trees, uncaptured)] == [
        "step", "off (capture failed: RuntimeError: boom)", "trees", "off"]
