"""Chapter 7 (notebook 07_comparison): the thesis's question (section 1.2). Which procedure finds a suitable
network better: growing with Net2Net and shrinking with PruneTrain (chapter 6.3), or MorphNet's regularizer
with a width multiplier (chapter 4)?

Both start from the narrow thesis ResNet and get the same budget, the wide net's FLOPs. Compared per run
(seed): the final network's accuracy, the total training time a user pays (search plus final training),
and the final network's parameters and FLOPs. Rows of table 7.1:

- "wide baseline": the wide net trained directly (chapter 3), the architecture the budget comes from;
- "MorphNet": chapter 4's search (algorithm 2.2, FLOP regularizer, the profile's iterations), its found
  structure retrained from scratch; total time = regularized phases + retraining;
- "PruneTrain + Net2Net": chapter 6.3's search, the net as the one run ends (no retraining);
- "PruneTrain + Net2Net, retrained": the architecture it found, trained from scratch; total time = search +
  retraining.

Uniform width scaling of the narrow net to the budget (eq. 2.6) gives exactly the wide net for the thesis's
nets (omega = 2; `uniform_scaling_check` verifies it for the profile), so its row would repeat the wide
baseline's runs and is not listed twice. No experiment of its own: every run comes from the cache of
chapters 3, 4 and 6.3 (the same params hit the same folders), 5 seeds per procedure on `quick` and `full`.
`sweeps` names one sweep per procedure (`PROCEDURE_SWEEPS`); chapter 8 runs the same sweeps on another
dataset, and its notebook calls this module's functions step by step as notebook 07 does.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from .. import plots, stats
from ..experiments import TIMING_COLUMNS, Profile, get_profile
from ..methods.morphnet import DEFAULT_GAMMA_THRESHOLD
from .ch03_baseline import baseline_grid
from .ch04_morphnet import morphnet_plan, uniform_scaling
from .ch06_3_prunetrain_net2net import search_plan
from .contract import Notebook, Sweeps, quantities

__all__ = [
    "COMPARED",
    "DEPENDENT_TIME_PAIR",
    "EQUIVALENCE_MARGIN",
    "PROCEDURES",
    "PROCEDURE_SWEEPS",
    "TIME_MARGIN",
    "answer",
    "comparison_figure",
    "comparison_runs",
    "comparison_table",
    "pairwise_tests",
    "sweeps",
    "uniform_scaling_check",
    "verdict",
]

PROCEDURES = ("wide baseline", "MorphNet", "PruneTrain + Net2Net", "PruneTrain + Net2Net, retrained")
# The sweep (of `sweeps`) that gives each procedure's runs, in `PROCEDURES` order.
PROCEDURE_SWEEPS = {
    "wide baseline": "baseline",
    "MorphNet": "morphnet",
    "PruneTrain + Net2Net": "prune_grow",
    "PruneTrain + Net2Net, retrained": "retrained",
}
# (column, description, unit) of every compared quantity, in table order; the accuracy is "accuracy" here (not
# `contract.QUANTITIES`' "final accuracy"), as the printed sentences say.
COMPARED = (("final_acc", "accuracy", ""), *quantities("total_time", "training_flops", "params", "flops"))
# Non-inferiority margins of `verdict`: at most 1 point less accurate (chapter 6.2's tolerance) or at most
# 10 % slower, judged on the 95 % interval of the difference.
EQUIVALENCE_MARGIN = 0.01
TIME_MARGIN = 0.10
# A run of the retrained procedure contains the search run of the same seed (its time includes it), so
# their time difference is not a comparison of independent samples; it is not Welch-tested.
DEPENDENT_TIME_PAIR = ("PruneTrain + Net2Net", "PruneTrain + Net2Net, retrained")


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 07's sweeps, one per procedure (`PROCEDURE_SWEEPS`): the experiment and its params, once per
    seed of chapter 6.3's plan (5 on quick/full); each is a run of chapter 3, 4 or 6.3, shared through the
    cache."""
    seeds = search_plan(profile).seeds
    morph = morphnet_plan(profile)
    morph_params = {
        "resource": "flops",
        "iterations": morph.search_iterations,
        "relative_strength": morph.relative_strength,
        "gamma_threshold": DEFAULT_GAMMA_THRESHOLD,
    }
    search = search_plan(profile).grid()
    return {
        "baseline": ("baseline", baseline_grid(profile, models=("wide",), schedules=("step",), seeds=seeds)),
        "morphnet": ("morphnet_search", [{**morph_params, "seed": s} for s in seeds]),
        "prune_grow": ("prune_grow", search),
        "retrained": ("prune_grow_retrain", search),
    }


def comparison_runs(nb: Notebook) -> pd.DataFrame:
    """Run (or load) every procedure's sweep of the notebook `nb` (07, or 08 on its dataset); one row per run:
    procedure, seed, final_acc, total_time and training_flops (the whole procedure), params and flops of the
    final network, and the `TIMING_COLUMNS`."""
    frames = []
    for procedure, name in PROCEDURE_SWEEPS.items():
        summary = nb.sweep(name).summary
        frames.append(
            pd.DataFrame(
                {
                    "procedure": procedure,
                    "seed": summary["seed"],
                    "final_acc": summary["final_acc"],
                    "total_time": summary["total_time"],
                    "training_flops": summary["training_flops"],
                    "params": summary["final_params"],
                    "flops": summary["final_flops"],
                    **{column: summary[column] for column in TIMING_COLUMNS},
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 7.1: one row per procedure (in `PROCEDURES` order) with n and the mean and standard
    deviation (ddof 1) of every quantity."""
    rows = []
    for procedure in [p for p in PROCEDURES if p in set(runs["procedure"])]:
        group = runs[runs["procedure"] == procedure]
        row: dict[str, Any] = {"procedure": procedure, "n": len(group)}
        for column, _, _ in COMPARED:
            row[f"{column}_mean"] = float(group[column].mean())
            row[f"{column}_std"] = float(group[column].std(ddof=1)) if len(group) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_tests(runs: pd.DataFrame, compared: tuple[tuple[str, str, str], ...] = COMPARED[:2]) -> pd.DataFrame:
    """Welch t-tests between every pair of procedures for each quantity (default: accuracy and total time),
    Holm-adjusted within each quantity's family of pairs; columns of `stats.with_holm` plus "quantity". The
    total time of the search and of its own retraining is not tested (`DEPENDENT_TIME_PAIR`)."""
    present = [p for p in PROCEDURES if p in set(runs["procedure"])]
    tables = []
    for column, what, unit in compared:
        pairs = [
            pair for pair in combinations(present, 2) if not (column == "total_time" and pair == DEPENDENT_TIME_PAIR)
        ]
        table = stats.compare_groups(runs, "procedure", pairs, [(column, what, unit)], timing_columns=TIMING_COLUMNS)
        table.insert(0, "quantity", column)
        tables.append(stats.with_holm(table))
    return pd.concat(tables, ignore_index=True)


def _test(tests: pd.DataFrame, quantity: str, a: str, b: str) -> pd.Series:
    label_ab = tests["comparison"].str.endswith(f", {a} vs {b}")
    label_ba = tests["comparison"].str.endswith(f", {b} vs {a}")
    rows = tests[(tests["quantity"] == quantity) & (label_ab | label_ba)]
    if rows.empty:
        raise ValueError(f"no test of {quantity} between {a!r} and {b!r}; run pairwise_tests on both")
    row = rows.iloc[0].copy()
    if label_ba[rows.index[0]]:  # the test ran as b vs a: turn it around
        row["mean_a"], row["mean_b"], row["diff"] = row["mean_b"], row["mean_a"], -row["diff"]
        row["ci_low"], row["ci_high"], row["t"] = -row["ci_high"], -row["ci_low"], -row["t"]
        row["n_a"], row["n_b"] = row["n_b"], row["n_a"]
    return row


def verdict(
    tests: pd.DataFrame, a: str, b: str, margin: float = EQUIVALENCE_MARGIN, time_margin: float = TIME_MARGIN
) -> str:
    """Which of procedures `a` and `b` found the better network, on the Holm-adjusted Welch tests.

    Better: significantly more accurate and shown not to be slower, or significantly faster and shown not
    to be less accurate. "Shown not to be worse" is a non-inferiority bound on the 95 % interval of the
    difference: the accuracy loss at most `margin`, the extra time at most `time_margin` times the other
    procedure's mean time. A non-significant difference alone is no evidence of equality with 5 runs per
    group, on either quantity. Times that may not be compared (`stats.compare_groups`: another timing
    setting, neighbours) have no interval, so they show neither "faster" nor "not slower". Otherwise
    "undecided"."""
    acc, time = _test(tests, "final_acc", a, b), _test(tests, "total_time", a, b)
    significant_acc, significant_time = acc["verdict"] == "significant", time["verdict"] == "significant"
    for better, sign in ((a, 1), (b, -1)):
        acc_low, acc_high = sorted((sign * acc["ci_low"], sign * acc["ci_high"]))
        time_low, time_high = sorted((sign * time["ci_low"], sign * time["ci_high"]))
        other_time = time["mean_b"] if sign == 1 else time["mean_a"]
        more_accurate = significant_acc and sign * acc["diff"] > 0
        faster = significant_time and sign * time["diff"] < 0
        not_slower = time_high <= time_margin * other_time
        not_less_accurate = acc_low >= -margin
        if (more_accurate and not_slower) or (faster and not_less_accurate):
            return better
    return "undecided"


def answer(tests: pd.DataFrame, profile_name: str, dataset: str, margin: float = EQUIVALENCE_MARGIN) -> str:
    """The closing paragraph: the thesis's question answered on these numbers, for the search's own net and
    for the found architecture retrained, or the statement that the numbers do not decide it (`verdict`)."""
    sentences = [f"Profile {profile_name!r} ({dataset}), Welch t-tests Holm-adjusted within each quantity:"]
    for candidate in ("PruneTrain + Net2Net", "PruneTrain + Net2Net, retrained"):
        acc = _test(tests, "final_acc", candidate, "MorphNet")
        time = _test(tests, "total_time", candidate, "MorphNet")
        found = verdict(tests, candidate, "MorphNet", margin)
        trade_off = acc["verdict"] == time["verdict"] == "significant" and (acc["diff"] > 0) == (
            time["diff"] > 0
        )  # more accurate and slower, or the reverse
        if found != "undecided":
            decision = f"{found} finds the better network"
        elif trade_off:
            accurate, fast = (candidate, "MorphNet") if acc["diff"] > 0 else ("MorphNet", candidate)
            decision = f"a trade-off, not a winner: {accurate} is more accurate, {fast} is faster, both significantly"
        else:
            decision = "the numbers do not decide which finds the better network"
        time_test = (
            f"not comparable: {time['not_comparable']}" if time["not_comparable"] else f"Holm p = {time['p_holm']:.3g}"
        )
        sentences.append(
            f"{candidate} against MorphNet (n = {int(acc['n_a'])} and {int(acc['n_b'])}): accuracy "
            f"{acc['mean_a']:.3f} vs {acc['mean_b']:.3f} (difference {acc['diff']:+.3f}, 95 % CI "
            f"[{acc['ci_low']:+.3f}, {acc['ci_high']:+.3f}], Holm p = {acc['p_holm']:.3g}), total training time "
            f"{time['mean_a']:.1f} s vs {time['mean_b']:.1f} s ({time_test}): {decision}."
        )
    sentences.append(
        f"A procedure counts as not worse only when the interval shows it: at most {margin:g} less "
        f"accurate, at most {TIME_MARGIN:.0%} slower. A small profile checks the procedures; it "
        "does not carry over to the thesis's CIFAR scale."
    )
    return " ".join(sentences)


def uniform_scaling_check(profile: str | Profile) -> dict[str, Any]:
    """The width multiplier omega that scales the profile's narrow net to the wide net's FLOPs (eq. 2.6,
    chapter 4's `uniform_scaling`), and whether the scaled net is exactly the wide net (then uniform scaling
    is the wide baseline)."""
    profile = get_profile(profile)
    channels = profile.input_size[0]
    row = uniform_scaling(
        profile.resnet("narrow", channels, profile.num_classes),
        profile.resnet("wide", channels, profile.num_classes),
        profile.input_size,
        resources=("flops",),
    ).iloc[0]
    return {
        "omega": float(row["omega"]),
        "equals_wide": bool(row["equals_reference"]),
        "budget": row["budget"],
        "scaled_flops": row["scaled_cost"],
    }


AXIS_SCALES = {"flops": 1e-6}
PROCEDURE_LABELS = {
    "wide baseline": "breites Baseline-Netz",
    "MorphNet": "MorphNet",
    "PruneTrain + Net2Net": "PruneTrain + Net2Net",
    "PruneTrain + Net2Net, retrained": "PruneTrain + Net2Net, neu trainiert",
}


def comparison_figure(runs: pd.DataFrame, x: str, stamp: tuple[str, str]) -> Figure:
    """Accuracy against `x` ("flops" or "total_time"): every run as a point, each procedure's mean as a
    cross, the legend outside the data; `stamp` = (profile, dataset) for `plots.stamp`."""
    present = [p for p in PROCEDURES if p in set(runs["procedure"])]
    fig, ax = plots.figure("full")
    markers = dict(zip(PROCEDURES, ("o", "s", "^", "D")))
    scale = AXIS_SCALES.get(x, 1.0)
    for index, procedure in enumerate(present):
        group = runs[runs["procedure"] == procedure]
        color = f"C{index}"
        ax.scatter(
            group[x] * scale,
            group["final_acc"],
            s=14,
            color=color,
            marker=markers[procedure],
            alpha=0.7,
            label=f"{PROCEDURE_LABELS[procedure]} (n = {len(group)})",
            linewidths=0,
        )
        ax.scatter(group[x].mean() * scale, group["final_acc"].mean(), s=60, color=color, marker="x", linewidths=1.2)
    ax.set(xlabel=plots.label(x), ylabel=plots.label("final_acc"))
    ax.legend(title="Läufe; x: Mittelwert", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    sizes = runs.groupby("procedure").size()
    plots.stamp(fig, stamp[0], stamp[1], int(sizes.min()) if sizes.nunique() == 1 else "/".join(map(str, sizes)))
    return fig
