"""Regenerate the paper's figures (PDF and PNG) from a results CSV.

    python paper/make_figures.py                                  # the paper's numbers -> paper/figures/
    python paper/make_figures.py --results results/runs.csv       # your runs -> paper/figures/runs/, + vs the paper

Figures (docs/paper.md "The paper's figures"):
  fig_bertimbau_{base,large}_f1_mt_comparison  F1 and EM per method, 2x2 panels (epochs x learning rate)
  lr_comparison                                F1 at lr 4.25e-5 beside 2e-4, 2 epochs, (a) Base (b) Large
  fig_bertimbau_{base,large}_efficiency        F1 against training time, one marker shape per method
  fig_bertimbau_{base,large}_speedup           training-time speed-up of each PEFT method over full fine-tuning
  fig_peak_memory                              peak memory per method and model (when the file has peak_memory_mb)
  fig_ours_vs_paper + ours_vs_paper.csv        your F1/EM against the paper's, per configuration in both
With several runs (seeds) of a configuration, bars show the mean and error bars the standard deviation.
A configuration without a finished run (status ok) is an empty slot labelled "n/a" (with the status of its
failed rows, e.g. "oom"), never a zero. The paper's figures label Exact Match "MT"; here it is "EM".
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # files only, no display: works on servers and in CI
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from results_table import (  # noqa: E402  (paper/ is on sys.path when this file runs as a script)
    EPOCHS, LEARNING_RATES, METHOD_LABELS, METHODS, MODEL_LABELS, MODEL_SIZES, PAPER_RESULTS, PEFT_METHODS,
    REPO_ROOT, SETTINGS, ResultsError, Stat, Table, format_lr, format_setting, load_table, compute_speedup,
)

DPI = 130  # PNG resolution: legible on screen and small enough to commit
FIGURES_DIR = REPO_ROOT / "paper" / "figures"
F1_COLOR, EM_COLOR = "#2166ac", "#f4a582"
LR_COLORS = {4.25e-5: "#92c5de", 2e-4: "#2166ac"}
SETTING_COLORS = dict(zip(SETTINGS, ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")))
METHOD_COLORS = dict(zip(METHODS, ("#4d4d4d", "#1b9e77", "#66a61e", "#7570b3", "#e7298a")))
METHOD_MARKERS = dict(zip(METHODS, ("s", "o", "^", "D", "v")))
MODEL_COLORS = {"base": "#92c5de", "large": "#2166ac"}
MISSING_COLOR = "#777777"
# lr_comparison marks a bar "(collapsed)" when its F1 is below this fraction of the same method's F1 at the other
# learning rate: the paper's Large full fine-tuning at 2e-4 (F1 3.02 vs 84.86) is the case it labels so.
COLLAPSE_FRACTION = 0.25


# ---------------------------------------------------------------- drawing helpers


def format_value(stat: Stat, *, decimals: int = 1, suffix: str = "") -> str:
    """"81.3" for one run; "81.3\n±0.4" (mean and std) for several."""
    text = f"{stat.mean:.{decimals}f}{suffix}"
    return text + (f"\n±{stat.std:.{decimals}f}" if stat.n > 1 else "")


def draw_bars(ax, *, xs: list, stats: list, width: float, color: str, decimals: int = 1, suffix: str = "",
              fontsize: float = 7.5) -> None:
    """Bars at the mean with the value printed on top, std error bars for several runs; None draws nothing."""
    present = [(x, s) for x, s in zip(xs, stats) if s is not None]
    ax.bar([x for x, _ in present], [s.mean for _, s in present], width=width, color=color, edgecolor="white",
           linewidth=0.5)
    spread = [(x, s) for x, s in present if s.n > 1]
    if spread:
        ax.errorbar([x for x, _ in spread], [s.mean for _, s in spread], yerr=[s.std for _, s in spread],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2.5)
    for x, s in present:
        top = s.mean + (s.std if s.n > 1 else 0.0)
        ax.annotate(format_value(s, decimals=decimals, suffix=suffix), (x, top), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=fontsize, linespacing=0.95)


def mark_missing(ax, *, x: float, status: Optional[str], fontsize: float = 8, rotation: float = 0) -> None:
    """The empty slot of a configuration without a finished run: "n/a", plus why when a row says so."""
    text = "n/a" + (f"\n({status})" if status else "")
    ax.text(x, 0.02, text, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=fontsize,
            color=MISSING_COLOR, style="italic", rotation=rotation)


def describe_runs(table: Table) -> str:
    if table.max_runs > 1:
        return f"mean of up to {table.max_runs} runs (seeds) per configuration; error bars: standard deviation"
    return "one run per configuration"


def describe_source(table: Table) -> str:
    if table.from_paper:
        return "numbers reported by the paper"
    return f"runs from {table.path.name}"


def set_slot_axis(ax, *, labels: list[str]) -> None:
    """One tick per group of bars, and fixed limits: a group with no bar keeps its place (for its "n/a")."""
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def set_method_ticks(ax, methods=METHODS) -> None:
    set_slot_axis(ax, labels=[METHOD_LABELS[m] for m in methods])


def add_bar_legend(fig: Figure, *, entries: list[tuple[str, str]], extra: tuple = ()) -> None:
    """Legend below the panels from (label, colour) pairs: right even when a panel has no bar of a kind."""
    handles = list(extra) + [Patch(color=color, label=label) for label, color in entries]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)


# ---------------------------------------------------------------- the figures


def plot_f1_em(table: Table, *, model_size: str) -> Figure:
    """Fig. 1/2: per setting (2x2: epochs x lr), an F1 bar and an EM bar for each method, values printed."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(len(EPOCHS), len(LEARNING_RATES), sharey=True)
    width = 0.38
    for row, epochs in enumerate(EPOCHS):
        for col, lr in enumerate(LEARNING_RATES):
            ax = axes[row][col]
            keys = [(model_size, method, lr, epochs) for method in METHODS]
            xs = list(range(len(METHODS)))
            draw_bars(ax, xs=[x - width / 2 for x in xs], stats=[table.stat(k, "f1") for k in keys], width=width,
                      color=F1_COLOR, decimals=2)
            draw_bars(ax, xs=[x + width / 2 for x in xs], stats=[table.stat(k, "exact_match") for k in keys],
                      width=width, color=EM_COLOR, decimals=2)
            for x, key in zip(xs, keys):
                if table.stat(key, "f1") is None:
                    mark_missing(ax, x=x, status=table.unfinished.get(key))
            ax.set_ylim(0, 100)
            ax.set_title(f"{epochs} epochs, learning rate {format_lr(lr)}", fontsize=11)
            set_method_ticks(ax)
            if col == 0:
                ax.set_ylabel("Score (%)")
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    add_bar_legend(fig, entries=[("F1", F1_COLOR), ("EM (exact match)", EM_COLOR)])
    fig.suptitle(f"{MODEL_LABELS[model_size]}: F1 and EM per method\n"
                 f"({describe_source(table)}; {describe_runs(table)})", fontsize=12)
    return fig


def is_collapsed(table: Table, *, key: tuple, other_lr: float) -> bool:
    """F1 far below the same method's F1 at the other learning rate (see COLLAPSE_FRACTION)."""
    size, method, _lr, epochs = key
    f1, other = table.stat(key, "f1"), table.stat((size, method, other_lr, epochs), "f1")
    return f1 is not None and other is not None and f1.mean < COLLAPSE_FRACTION * other.mean


def plot_lr_comparison(table: Table, *, epochs: int = EPOCHS[0]) -> Figure:
    """Fig. 3: (a) Base and (b) Large at 2 epochs, F1 at lr 4.25e-5 beside 2e-4, gains printed for PEFT."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, len(MODEL_SIZES), sharey=True)
    low, high = sorted(LEARNING_RATES)
    width = 0.38
    for letter, ax, size in zip("ab", axes, MODEL_SIZES):
        xs = list(range(len(METHODS)))
        low_keys = [(size, m, low, epochs) for m in METHODS]
        high_keys = [(size, m, high, epochs) for m in METHODS]
        draw_bars(ax, xs=[x - width / 2 for x in xs], stats=[table.stat(k, "f1") for k in low_keys], width=width,
                  color=LR_COLORS[low])
        draw_bars(ax, xs=[x + width / 2 for x in xs], stats=[table.stat(k, "f1") for k in high_keys], width=width,
                  color=LR_COLORS[high])
        for x, method, low_key, high_key in zip(xs, METHODS, low_keys, high_keys):
            low_f1, high_f1 = table.stat(low_key, "f1"), table.stat(high_key, "f1")
            for offset, key, stat, other in ((-width / 2, low_key, low_f1, high), (width / 2, high_key, high_f1, low)):
                if stat is None:
                    mark_missing(ax, x=x + offset, status=table.unfinished.get(key), fontsize=7, rotation=90)
                elif is_collapsed(table, key=key, other_lr=other):
                    ax.annotate("(collapsed)", (x + offset, stat.mean), xytext=(0, 16 if stat.n == 1 else 26),
                                textcoords="offset points", ha="center", va="bottom", fontsize=8,
                                color="#b2182b", rotation=90)
            if method in PEFT_METHODS and low_f1 is not None and high_f1 is not None:
                top = max(s.mean + (s.std if s.n > 1 else 0.0) for s in (low_f1, high_f1))
                above = 14 if max(low_f1.n, high_f1.n) == 1 else 24  # clear of the one- or two-line value label
                ax.annotate(f"{high_f1.mean - low_f1.mean:+.1f}", (x, top), xytext=(0, above), textcoords="offset points",
                            ha="center", va="bottom", fontsize=9, fontweight="bold",
                            color="#b2182b" if high_f1.mean < low_f1.mean else "#1a6e1a")
        ax.set_ylim(0, 100)
        ax.set_title(f"({letter}) {MODEL_LABELS[size]}, {epochs} epochs", fontsize=11)
        set_method_ticks(ax)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("F1 (%)")
    add_bar_legend(fig, entries=[(f"lr {format_lr(low)} (standard BERT)", LR_COLORS[low]),
                             (f"lr {format_lr(high)} (high, for PEFT)", LR_COLORS[high])])
    fig.suptitle("Effect of the learning rate: F1 at 4.25e-5 and at 2e-4 (bold: gain of 2e-4 in F1 points)\n"
                 f"({describe_source(table)}; {describe_runs(table)})", fontsize=12)
    return fig


def choose_time_unit(seconds: list[float]) -> tuple[float, str]:
    """Hours for the paper's runs, minutes or seconds for short (debug, smoke) ones: readable tick labels."""
    longest = max(seconds, default=0.0)
    if longest >= 2 * 3600:
        return 3600.0, "h"
    if longest >= 2 * 60:
        return 60.0, "min"
    return 1.0, "s"


def list_missing(table: Table, *, keys: list) -> str:
    """A footnote naming the configurations without a finished run (a count when there are many)."""
    missing = [k for k in keys if table.stat(k, "f1") is None]
    if not missing:
        return ""
    if len(missing) > 6:
        return f"n/a (no finished run): {len(missing)} of {len(keys)} configurations"
    names = [f"{METHOD_LABELS[m]} {format_lr(lr)}/{ep:g} ep" for _s, m, lr, ep in missing]
    return "n/a (no finished run): " + ", ".join(names)


def mark_empty_panel(ax, *, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=MISSING_COLOR, style="italic")


def plot_efficiency(table: Table, *, model_size: str) -> Figure:
    """F1 against training time for all methods and settings: marker shape = method, colour = setting."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    keys = [(model_size, m, lr, ep) for m in METHODS for lr, ep in SETTINGS]
    present = [(k, table.stat(k, "f1"), table.stat(k, "train_time_s")) for k in keys]
    present = [(k, f1, t) for k, f1, t in present if f1 is not None and t is not None]
    scale, unit = choose_time_unit([t.mean for _k, _f1, t in present])
    for (size, method, lr, epochs), f1, t in present:
        ax.errorbar(t.mean / scale, f1.mean, xerr=t.std / scale if t.n > 1 else None,
                    yerr=f1.std if f1.n > 1 else None, marker=METHOD_MARKERS[method], markersize=8,
                    color=SETTING_COLORS[(lr, epochs)], markeredgecolor="black", markeredgewidth=0.5,
                    linestyle="none", elinewidth=0.8, capsize=2.5)
    if not present:
        mark_empty_panel(ax, text=f"n/a: no finished run of {MODEL_LABELS[model_size]}")
    ax.set_xlabel(f"Training time ({unit})")
    ax.set_ylabel("F1 (%)")
    ax.set_xlim(0, max([1.0] + [(t.mean + (t.std if t.n > 1 else 0.0)) / scale for _k, _f1, t in present]) * 1.08)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    method_handles = [Line2D([], [], marker=METHOD_MARKERS[m], linestyle="none", color="#999999",
                             markeredgecolor="black", markersize=8, label=METHOD_LABELS[m]) for m in METHODS]
    setting_handles = [Patch(color=SETTING_COLORS[s], label=format_setting(*s)) for s in SETTINGS]
    fig.legend(handles=method_handles + setting_handles, loc="outside right upper", fontsize=8.5,
               title="marker: method\ncolour: setting", title_fontsize=9)
    footnote = list_missing(table, keys=keys)
    if footnote:
        ax.text(0.01, 0.99, footnote, transform=ax.transAxes, ha="left", va="top", fontsize=8, color=MISSING_COLOR,
                style="italic", wrap=True)
    fig.suptitle(f"{MODEL_LABELS[model_size]}: F1 against training time\n"
                 f"({describe_source(table)}; {describe_runs(table)})", fontsize=12)
    return fig


def explain_missing_speedup(table: Table, *, key: tuple) -> Optional[str]:
    """Why a speed-up bar is empty: the method's failed rows, else a missing full fine-tuning run, else nothing."""
    size, _method, lr, epochs = key
    full = (size, "full", lr, epochs)
    if table.stat(key, "train_time_s") is None:
        return table.unfinished.get(key)
    if table.stat(full, "train_time_s") is None:
        return "no full FT" + (f": {table.unfinished[full]}" if full in table.unfinished else "")
    return None


def plot_speedup(table: Table, *, model_size: str) -> Figure:
    """Training-time speed-up of each PEFT method over full fine-tuning, grouped by setting, dashed line at 1x."""
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.subplots()
    width = 0.2
    for i, method in enumerate(PEFT_METHODS):
        offset = (i - (len(PEFT_METHODS) - 1) / 2) * width
        xs = [g + offset for g in range(len(SETTINGS))]
        stats = [compute_speedup(table, (model_size, method, lr, ep)) for lr, ep in SETTINGS]
        draw_bars(ax, xs=xs, stats=stats, width=width, color=METHOD_COLORS[method], decimals=2, suffix="×")
        for x, stat, (lr, ep) in zip(xs, stats, SETTINGS):
            if stat is None:
                mark_missing(ax, x=x, status=explain_missing_speedup(table, key=(model_size, method, lr, ep)),
                             fontsize=7, rotation=90)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    set_slot_axis(ax, labels=[format_setting(*s) for s in SETTINGS])
    ax.set_xlabel("Setting (learning rate, epochs)")
    ax.set_ylabel("Speed-up over full fine-tuning (×, training time)")
    ax.set_ylim(0, max([1.5] + [p.get_height() for p in ax.patches]) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    add_bar_legend(fig, entries=[(METHOD_LABELS[m], METHOD_COLORS[m]) for m in PEFT_METHODS],
               extra=(Line2D([], [], color="black", linestyle="--", label="1× = full fine-tuning"),))
    fig.suptitle(f"{MODEL_LABELS[model_size]}: training-time speed-up over full fine-tuning in the same setting\n"
                 f"({describe_source(table)}; {describe_runs(table)})", fontsize=12)
    return fig


def describe_memory(devices: tuple) -> str:
    """What peak_memory_mb measured: allocated CUDA memory on GPU, resident memory of the process on CPU."""
    gpu = any(d.startswith("cuda") for d in devices)
    cpu = any(not d.startswith("cuda") for d in devices)
    if gpu and cpu:
        return "peak CUDA memory allocated (GPU runs) or peak resident memory (CPU runs)"
    return "peak CUDA memory allocated" if gpu else "peak resident memory of the process (CPU runs)"


def plot_peak_memory(table: Table) -> Figure:
    """Peak memory per method and model, pooled over settings and seeds (they do not change what must fit)."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    width = 0.38
    for i, size in enumerate(MODEL_SIZES):
        xs = [x + (i - 0.5) * width for x in range(len(METHODS))]
        stats = [table.memory.get((size, m)) for m in METHODS]
        draw_bars(ax, xs=xs, stats=stats, width=width, color=MODEL_COLORS[size], decimals=0)
        for x, stat in zip(xs, stats):
            if stat is None:
                mark_missing(ax, x=x, status=None, fontsize=7)
    set_method_ticks(ax)
    ax.set_xlabel("Method")
    ax.set_ylabel("Peak memory (MB)")
    ax.set_ylim(0, max([1.0] + [p.get_height() for p in ax.patches]) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    add_bar_legend(fig, entries=[(MODEL_LABELS[s], MODEL_COLORS[s]) for s in MODEL_SIZES])
    spread = "mean ± std over settings and seeds" if any(s.n > 1 for s in table.memory.values()) else "one run"
    devices = ", ".join(table.devices) or "device not recorded"
    fig.suptitle(f"Peak memory per method: {describe_memory(table.devices)}\n({describe_source(table)}; {spread}; "
                 f"{devices})", fontsize=12)
    return fig


# ---------------------------------------------------------------- ours against the paper


COMPARISON_COLUMNS = [
    "model_size", "method", "learning_rate", "num_epochs", "runs", "paper_f1", "our_f1", "our_f1_std", "delta_f1",
    "paper_exact_match", "our_exact_match", "our_exact_match_std", "delta_exact_match", "paper_train_time_s",
    "our_train_time_s", "our_data_source",
]


def compare_with_paper(ours: Table, *, paper: Table) -> list[dict]:
    """One row per configuration that both files have: the paper's F1/EM/time against our mean (and std)."""
    rows = []
    for key in sorted(set(ours.cells) & set(paper.cells), key=order_on_grid):
        size, method, lr, epochs = key
        f1, em, time = (ours.stat(key, m) for m in ("f1", "exact_match", "train_time_s"))
        p_f1, p_em, p_time = (paper.stat(key, m) for m in ("f1", "exact_match", "train_time_s"))
        rows.append({
            "model_size": size, "method": method, "learning_rate": lr, "num_epochs": epochs, "runs": f1.n,
            "paper_f1": p_f1.mean, "our_f1": round(f1.mean, 4), "our_f1_std": format_std(f1),
            "delta_f1": round(f1.mean - p_f1.mean, 4),
            "paper_exact_match": p_em.mean, "our_exact_match": round(em.mean, 4), "our_exact_match_std": format_std(em),
            "delta_exact_match": round(em.mean - p_em.mean, 4),
            "paper_train_time_s": p_time.mean, "our_train_time_s": round(time.mean, 3),
            "our_data_source": " ".join(ours.data_sources),
        })
    return rows


def order_on_grid(key: tuple) -> tuple:
    size, method, lr, epochs = key
    return (MODEL_SIZES.index(size), SETTINGS.index((lr, epochs)), METHODS.index(method))


def format_std(stat: Stat) -> str:
    return "" if stat.n < 2 else f"{stat.std:.4f}"


def plot_ours_vs_paper(comparison: list[dict], *, ours: Table) -> Figure:
    """Per model, our F1 (mean ± std) against the paper's for each configuration in both; the diagonal is equality."""
    fig = Figure(figsize=(13, 6), layout="constrained")
    axes = fig.subplots(1, len(MODEL_SIZES), sharey=True)
    for letter, ax, size in zip("ab", axes, MODEL_SIZES):
        rows = [r for r in comparison if r["model_size"] == size]
        ax.plot([0, 100], [0, 100], color="black", linestyle="--", linewidth=0.8)
        for r in rows:
            ax.errorbar(r["paper_f1"], r["our_f1"], yerr=float(r["our_f1_std"]) if r["our_f1_std"] else None,
                        marker=METHOD_MARKERS[r["method"]], markersize=8, linestyle="none",
                        color=SETTING_COLORS[(r["learning_rate"], r["num_epochs"])], markeredgecolor="black",
                        markeredgewidth=0.5, elinewidth=0.8, capsize=2.5)
        if not rows:
            mark_empty_panel(ax, text=f"n/a: no configuration of {MODEL_LABELS[size]} in both files")
        else:
            gap = sum(abs(r["delta_f1"]) for r in rows) / len(rows)
            ax.text(0.02, 0.98, f"{len(rows)} of 20 configurations; mean |ΔF1| = {gap:.2f}", transform=ax.transAxes,
                    ha="left", va="top", fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_aspect("equal")
        ax.set_title(f"({letter}) {MODEL_LABELS[size]}", fontsize=11)
        ax.set_xlabel("Paper F1 (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"Our F1 (%), {'mean ± std' if ours.max_runs > 1 else 'one run'}")
    method_handles = [Line2D([], [], marker=METHOD_MARKERS[m], linestyle="none", color="#999999",
                             markeredgecolor="black", markersize=8, label=METHOD_LABELS[m]) for m in METHODS]
    setting_handles = [Patch(color=SETTING_COLORS[s], label=format_setting(*s)) for s in SETTINGS]
    diagonal = Line2D([], [], color="black", linestyle="--", linewidth=0.8, label="equal to the paper")
    fig.legend(handles=[diagonal] + method_handles + setting_handles, loc="outside right upper", fontsize=8.5,
               title="marker: method\ncolour: setting", title_fontsize=9)
    sources = ", ".join(ours.data_sources) or "not recorded"
    fig.suptitle(f"Our runs ({ours.path.name}) against the paper's reported F1\n(our data: {sources}; the paper used "
                 "the reviewed translation of the Deep Learning Brasil group)", fontsize=12)
    return fig


def write_comparison(rows: list[dict], *, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COMPARISON_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------- command line


def build_figures(table: Table, *, comparison: Optional[list[dict]] = None) -> dict[str, Figure]:
    """All figures the data allows, by file name (without extension)."""
    figures = {}
    for size in MODEL_SIZES:
        figures[f"fig_bertimbau_{size}_f1_mt_comparison"] = plot_f1_em(table, model_size=size)
    figures["lr_comparison"] = plot_lr_comparison(table)
    for size in MODEL_SIZES:
        figures[f"fig_bertimbau_{size}_efficiency"] = plot_efficiency(table, model_size=size)
        figures[f"fig_bertimbau_{size}_speedup"] = plot_speedup(table, model_size=size)
    if table.has_memory:
        figures["fig_peak_memory"] = plot_peak_memory(table)
    if comparison:
        figures["fig_ours_vs_paper"] = plot_ours_vs_paper(comparison, ours=table)
    return figures


def save_figure(fig: Figure, *, out: Path, name: str) -> list[Path]:
    """PDF and PNG; no creation date in the PDF, so regenerating unchanged data leaves the files unchanged."""
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    fig.savefig(paths[0], metadata={"CreationDate": None})
    fig.savefig(paths[1], dpi=DPI)
    return paths


def choose_out_dir(results: Path) -> Path:
    """paper/figures for the paper's numbers; paper/figures/<file stem>/ for runs, so they never overwrite those."""
    if results.resolve() == PAPER_RESULTS.resolve():
        return FIGURES_DIR
    return FIGURES_DIR / results.stem


def load_paper(path: Path, *, results: Table) -> Optional[Table]:
    """The paper's numbers to compare with, unless the results are the paper's own."""
    if results.from_paper or results.path.resolve() == path.resolve():
        return None
    try:
        return load_table(path)
    except ResultsError as exc:
        print(f"warning: no comparison with the paper: {exc}", file=sys.stderr)
        return None


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=PAPER_RESULTS,
                        help="results CSV to draw (default: results/paper_reported.csv, the paper's numbers)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the figures (default: paper/figures for the paper's numbers, "
                             "paper/figures/<results file stem>/ otherwise)")
    parser.add_argument("--paper", type=Path, default=PAPER_RESULTS,
                        help="the paper's numbers, for the comparison (default: results/paper_reported.csv)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        table = load_table(args.results)
        paper = load_paper(args.paper, results=table)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or choose_out_dir(args.results)
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare_with_paper(table, paper=paper) if paper is not None else None
    written = []
    for name, fig in build_figures(table, comparison=comparison).items():
        written += save_figure(fig, out=out, name=name)
    if comparison is not None:
        written.append(write_comparison(comparison, path=out / "ours_vs_paper.csv"))
        print(f"{len(comparison)} configuration(s) of {args.results} are also in the paper's table")
    if table.off_grid:
        print(f"note: {table.off_grid} finished run(s) of {args.results} are outside the paper's grid and not drawn")
    print(f"wrote {len(written)} files to {out}:")
    for path in written:
        print(f"  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
