"""Chapter 7 (notebook 07_comparison): the thesis's question (section 1.2). Which procedure finds a suitable
network better: growing with Net2Net and shrinking with PruneTrain (chapter 6.3), or MorphNet's regularizer
with a width multiplier (chapter 4)?

Both searches start from the narrow thesis ResNet and get the same budget, the wide net's FLOPs. Rows of
table 7.1 (`PROCEDURES`), every run from the cache of chapters 3, 4, 5 and 6.3 (same params, same folders),
5 seeds each on `quick` and `full`:

- "narrow baseline" and "wide baseline": the nets both searches start from and are bounded by (chapter 3);
- "PruneTrain on the wide net": chapter 5's default point, the control that shrinks without growing;
- "MorphNet": chapter 4's search (algorithm 2.2, FLOP regularizer, the draft's 3 iterations), its found
  structure retrained; costs = its regularized phases + the retraining;
- "uniform growth + PruneTrain": chapter 6.3's control, the narrow net widened x2 at a fixed epoch and
  then pruned with the search's settings (growth everywhere instead of where pruning points);
- "PruneTrain + Net2Net": chapter 6.3's search, the net as its one run ends (after the final phase);
- "PruneTrain + Net2Net, retrained": that architecture trained from scratch; costs = search + retraining;
- "PruneTrain + Net2Net, scaled to the budget": that architecture scaled with the width multiplier to the
  budget (MorphNet's own step 3, so both searches end at the same FLOPs) and trained from scratch; costs =
  search + training.

Every row reports the accuracy, the training cost (epochs, training FLOPs executed over every phase, and
seconds) and the found net's FLOPs per image and parameters. The procedures do not train the same epochs
(on `quick`: 40 for MorphNet's 3 x 10 + 10; 20 for the search, which trains chapter 5's run, + 10 for its
retraining or scaled training; 20 for chapter 5's PruneTrain and the uniform control); table 7.1 says what
each had, and the training FLOPs charge it.

The decision rule, fixed before any of its runs (`DECIDING`, `quantity_outcome`, `verdict`):

- Deciding quantities: accuracy (higher is better), training FLOPs of the whole procedure and the found
  net's FLOPs per image (lower is better). Seconds are reported and tested but do not decide: they depend on
  the machine (on a 2-core CPU a pruned net is not faster per FLOP), and a winner is never named from time.
- Families, Holm within each: the primary family is every candidate (`CANDIDATES`) against MorphNet on
  every deciding quantity; the candidates against the two baselines and against the two controls are one
  secondary family each (`FAMILIES`).
- Per quantity, candidate against reference: "better" / "worse" when the Holm-adjusted Welch test is
  significant at 5 % (superiority); "not worse" when it is not, but the 95 % interval of the difference
  keeps the loss within the non-inferiority margin (`ACCURACY_MARGIN`: 1 accuracy point; `COST_MARGIN`:
  10 % of the reference's mean cost); "equal" / "better" / "worse" exactly when neither group varies (a
  fixed architecture's FLOPs); otherwise "undecided". A difference that is merely not significant is no
  evidence of equality.
- Verdict: "better" when the candidate is better on at least one quantity and better, not worse or equal on
  the others; "dominated" when the reference is so against the candidate; "trade-off" when each is
  significantly better on one quantity; "equivalent" when both are not worse than the other on every
  quantity; otherwise "undecided".

Uniform width scaling of the narrow net to the budget (eq. 2.6) gives exactly the wide net for the thesis's
nets (omega = 2; `uniform_scaling_check` verifies it for the profile), so its row would repeat the wide
baseline's runs and is not listed twice. `sweeps` names one sweep per procedure (`PROCEDURE_SWEEPS`);
chapter 8 runs the same sweeps on another dataset, and its notebook calls this module's functions step by
step as notebook 07 does.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from .. import plots, stats
from ..experiments import TIMING_COLUMNS, Profile, get_profile
from ..methods.morphnet import DEFAULT_GAMMA_THRESHOLD
from .ch03_baseline import baseline_grid
from .ch04_morphnet import morphnet_plan, uniform_scaling
from .ch05_prunetrain import prunetrain_plan
from .ch06_3_prunetrain_net2net import search_plan
from .contract import Notebook, Sweeps, quantities

__all__ = [
    "ACCURACY_MARGIN",
    "CANDIDATES",
    "COMPARED",
    "COST_MARGIN",
    "DECIDING",
    "FAMILIES",
    "OUTCOMES",
    "PROCEDURES",
    "PROCEDURE_SWEEPS",
    "REFERENCE",
    "VERDICTS",
    "answer",
    "comparison_figure",
    "comparison_runs",
    "comparison_table",
    "decision_table",
    "decisions",
    "quantity_outcome",
    "sweeps",
    "time_tests",
    "uniform_scaling_check",
    "verdict",
]

PROCEDURES = (
    "narrow baseline",
    "wide baseline",
    "PruneTrain on the wide net",
    "uniform growth + PruneTrain",
    "MorphNet",
    "PruneTrain + Net2Net",
    "PruneTrain + Net2Net, retrained",
    "PruneTrain + Net2Net, scaled to the budget",
)
# The sweep (of `sweeps`) that gives each procedure's runs, in `PROCEDURES` order.
PROCEDURE_SWEEPS = {
    "narrow baseline": "narrow",
    "wide baseline": "wide",
    "PruneTrain on the wide net": "prunetrain",
    "uniform growth + PruneTrain": "uniform",
    "MorphNet": "morphnet",
    "PruneTrain + Net2Net": "prune_grow",
    "PruneTrain + Net2Net, retrained": "retrained",
    "PruneTrain + Net2Net, scaled to the budget": "scaled",
}
CANDIDATES = ("PruneTrain + Net2Net", "PruneTrain + Net2Net, retrained", "PruneTrain + Net2Net, scaled to the budget")
REFERENCE = "MorphNet"
# Family name -> the references every candidate is tested against in it (Holm within each family).
FAMILIES = {
    "MorphNet": (REFERENCE,),
    "baselines": ("narrow baseline", "wide baseline"),
    "control": ("PruneTrain on the wide net", "uniform growth + PruneTrain"),
}
# (column, description, unit, direction) of the deciding quantities: direction +1 when more is better.
DECIDING = (
    ("final_acc", "accuracy", "", +1),
    ("training_flops", "training FLOPs", "", -1),
    ("flops", "FLOPs per image", "", -1),
)
DECIDING_WORDS = {column: words for column, words, _, _ in DECIDING}
# Non-inferiority margins: an accuracy loss of at most 1 point (chapter 6.2's tolerance), a cost at most 10 %
# above the reference's mean, judged on the 95 % interval of the difference.
ACCURACY_MARGIN = 0.01
COST_MARGIN = 0.10
OUTCOMES = ("better", "not worse", "equal", "worse", "undecided")
VERDICTS = ("better", "dominated", "trade-off", "equivalent", "undecided")
# (column, description, unit) of every quantity table 7.1 reports, in table order.
COMPARED = (
    ("final_acc", "accuracy", ""),
    ("epochs", "epochs", ""),
    *quantities("training_flops", "total_time", "params", "flops"),
)


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 07's sweeps, one per procedure (`PROCEDURE_SWEEPS`): the experiment and its params, once per
    seed of chapter 6.3's plan (5 on quick/full); each is a run of chapter 3, 4, 5 or 6.3, shared through the
    cache."""
    seeds = search_plan(profile).seeds
    morph = morphnet_plan(profile)
    morph_params = {
        "resource": "flops",
        "iterations": morph.search_iterations,
        "relative_strength": morph.relative_strength,
        "gamma_threshold": DEFAULT_GAMMA_THRESHOLD,
    }
    pruning = prunetrain_plan(profile)
    plan = search_plan(profile)
    search = plan.grid()
    return {
        "narrow": ("baseline", baseline_grid(profile, models=("narrow",), schedules=("step",), seeds=seeds)),
        "wide": ("baseline", baseline_grid(profile, models=("wide",), schedules=("step",), seeds=seeds)),
        "prunetrain": ("prunetrain", [{**pruning.default(), **pruning.training(), "seed": s} for s in seeds]),
        "uniform": ("uniform_grow_prune", plan.uniform_grid()),
        "morphnet": ("morphnet_search", [{**morph_params, "seed": s} for s in seeds]),
        "prune_grow": ("prune_grow", search),
        "retrained": ("prune_grow_retrain", search),
        "scaled": ("prune_grow_scaled", search),
    }


def comparison_runs(nb: Notebook) -> pd.DataFrame:
    """Run (or load) every procedure's sweep of the notebook `nb` (07, or 08 on its dataset); one row per run:
    procedure, seed, final_acc, epochs, training_flops and total_time (the whole procedure), params and
    flops of the final network, and the `TIMING_COLUMNS`."""
    frames = []
    for procedure, name in PROCEDURE_SWEEPS.items():
        summary = nb.sweep(name).summary
        frames.append(
            pd.DataFrame(
                {
                    "procedure": procedure,
                    "seed": summary["seed"],
                    "final_acc": summary["final_acc"],
                    "epochs": summary["epochs"],
                    "training_flops": summary["training_flops"],
                    "total_time": summary["total_time"],
                    "params": summary["final_params"],
                    "flops": summary["final_flops"],
                    **{column: summary[column] for column in TIMING_COLUMNS},
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 7.1: one row per procedure (in `PROCEDURES` order) with n and the mean and standard
    deviation (ddof 1) of every quantity of `COMPARED`."""
    rows = []
    for procedure in [p for p in PROCEDURES if p in set(runs["procedure"])]:
        group = runs[runs["procedure"] == procedure]
        row: dict[str, Any] = {"procedure": procedure, "n": len(group)}
        for column, _, _ in COMPARED:
            row[f"{column}_mean"] = float(group[column].mean())
            row[f"{column}_std"] = float(group[column].std(ddof=1)) if len(group) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def quantity_outcome(
    diff: float, ci_low: float, ci_high: float, p_holm: float, direction: int, margin: float, alpha: float = 0.05
) -> str:
    """The rule's outcome on one quantity for a candidate against a reference (module docstring): `diff` and
    its interval are candidate - reference, `direction` +1 when more is better (-1 for costs), `margin` the
    non-inferiority margin in the quantity's unit; `p_holm` NaN means that neither group varies, so the
    means are compared exactly."""
    if direction not in (1, -1):
        raise ValueError(f"direction is +1 (more is better) or -1 (less is better), got {direction}")
    if not margin >= 0:
        raise ValueError(f"the non-inferiority margin must be >= 0, got {margin}")
    gain = direction * diff
    if math.isnan(p_holm):
        return "equal" if gain == 0 else "better" if gain > 0 else "worse"
    if p_holm < alpha:
        return "better" if gain > 0 else "worse"
    worst_gain = ci_low if direction > 0 else -ci_high
    return "not worse" if worst_gain >= -margin else "undecided"


def _margin(column: str, reference_mean: float) -> float:
    return ACCURACY_MARGIN if column == "final_acc" else COST_MARGIN * abs(reference_mean)


def _family(runs: pd.DataFrame, family: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    tables = []
    for column, what, unit, direction in DECIDING:
        table = stats.compare_groups(runs, "procedure", pairs, [(column, what, unit)])
        table.insert(0, "quantity", column)
        table.insert(1, "candidate", [a for a, _ in pairs])
        table.insert(2, "reference", [b for _, b in pairs])
        table["direction"] = direction
        tables.append(table)
    out = stats.with_holm(pd.concat(tables, ignore_index=True))
    out.insert(0, "family", family)
    out["margin"] = [_margin(q, m) for q, m in zip(out["quantity"], out["mean_b"])]
    arguments = list(zip(out["diff"], out["ci_low"], out["ci_high"], out["p_holm"], out["direction"], out["margin"]))
    out["outcome"] = [quantity_outcome(*row) for row in arguments]
    out["reference_outcome"] = [quantity_outcome(-d, -high, -low, p, s, m) for d, low, high, p, s, m in arguments]
    return out


def decisions(runs: pd.DataFrame) -> pd.DataFrame:
    """The rule's tests (module docstring): for every family of `FAMILIES`, each candidate of `CANDIDATES`
    against each of its references on every deciding quantity, Welch-tested and Holm-adjusted within the
    family. Columns: family, quantity, candidate, reference, the test's (`stats.with_holm`), direction, margin,
    outcome (the candidate's, `quantity_outcome`) and reference_outcome (the same rule seen from the
    reference)."""
    present = set(runs["procedure"])
    missing = sorted({*CANDIDATES, *(r for refs in FAMILIES.values() for r in refs)} - present)
    if missing:
        raise ValueError(f"the runs have no procedure {missing}; comparison_runs gives every one of {PROCEDURES}")
    frames = [
        _family(runs, family, [(c, r) for c in CANDIDATES for r in references])
        for family, references in FAMILIES.items()
    ]
    return pd.concat(frames, ignore_index=True)


def verdict(decided: pd.DataFrame, candidate: str, reference: str) -> str:
    """The rule's verdict (one of `VERDICTS`) for `candidate` against `reference` from `decisions`."""
    rows = decided[(decided["candidate"] == candidate) & (decided["reference"] == reference)]
    if len(rows) != len(DECIDING):
        raise ValueError(f"decisions has {len(rows)} rows of {candidate!r} against {reference!r}, not {len(DECIDING)}")
    mine, theirs = list(rows["outcome"]), list(rows["reference_outcome"])
    at_least_as_good = {"better", "not worse", "equal"}
    if "better" in mine and "worse" in mine:
        return "trade-off"
    if "better" in mine and set(mine) <= at_least_as_good:
        return "better"
    if "better" in theirs and set(theirs) <= at_least_as_good:
        return "dominated"
    if set(mine) <= {"not worse", "equal"} and set(theirs) <= {"not worse", "equal"}:
        return "equivalent"
    return "undecided"


def decision_table(decided: pd.DataFrame) -> pd.DataFrame:
    """Table 7.2: the rule's tests of `decisions` without their sentences (the test's own significance as
    "test"), with the verdict of each candidate-reference pair in every row of the pair."""
    table = decided.drop(columns=["sentence"]).rename(columns={"verdict": "test"})
    table["pair_verdict"] = [verdict(decided, c, r) for c, r in zip(table["candidate"], table["reference"])]
    return table


def time_tests(runs: pd.DataFrame) -> pd.DataFrame:
    """Total training time of every candidate against MorphNet and both baselines (reported, not deciding),
    Welch-tested where the runs were timed alike, Holm-adjusted as one family (`stats.compare_groups`)."""
    pairs = [(c, r) for c in CANDIDATES for r in (REFERENCE, *FAMILIES["baselines"])]
    table = stats.compare_groups(runs, "procedure", pairs, quantities("total_time"), timing_columns=TIMING_COLUMNS)
    return stats.with_holm(table)


VERDICT_TEXT = {
    "better": "{candidate} finds the better network",
    "dominated": "{reference} finds the better network: at least as good on every deciding quantity, better on one",
    "trade-off": "a trade-off, not a winner: {candidate} is better in {gains}, {reference} in {losses}",
    "equivalent": "equivalent within the margins on every deciding quantity",
    "undecided": "the numbers do not decide which finds the better network",
}


def _quantity_sentence(row: pd.Series) -> str:
    if row["quantity"] == "final_acc":
        means = f"{row['mean_a']:.3f} vs {row['mean_b']:.3f}"
        spread = f"difference {row['diff']:+.3f}, 95 % CI [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    else:
        means = f"{row['mean_a']:.3g} vs {row['mean_b']:.3g}"
        spread = f"ratio {row['mean_a'] / row['mean_b']:.2f}"
    test = "exact, neither group varies" if math.isnan(row["p_holm"]) else f"Holm p = {row['p_holm']:.3g}"
    return f"{DECIDING_WORDS[row['quantity']]} {means} ({spread}, {test}): {row['outcome']}"


def _pair_sentence(decided: pd.DataFrame, candidate: str, reference: str) -> str:
    rows = decided[(decided["candidate"] == candidate) & (decided["reference"] == reference)]
    found = verdict(decided, candidate, reference)
    gains = " and ".join(DECIDING_WORDS[q] for q, o in zip(rows["quantity"], rows["outcome"]) if o == "better")
    losses = " and ".join(DECIDING_WORDS[q] for q, o in zip(rows["quantity"], rows["outcome"]) if o == "worse")
    decision = VERDICT_TEXT[found].format(candidate=candidate, reference=reference, gains=gains, losses=losses)
    quantities_text = "; ".join(_quantity_sentence(row) for _, row in rows.iterrows())
    first = rows.iloc[0]
    return (
        f"{candidate} against {reference} (n = {int(first['n_a'])} and {int(first['n_b'])}): {quantities_text}. "
        f"Verdict: {decision}."
    )


def answer(decided: pd.DataFrame, times: pd.DataFrame, profile_name: str, dataset: str) -> str:
    """The closing paragraph: the thesis's question answered by the rule of the module docstring on
    `decisions` (the primary family first, then the baselines and the control), with the seconds of
    `time_tests` as reported, non-deciding numbers."""
    sentences = [
        f"Profile {profile_name!r} ({dataset}). The question is decided on accuracy, training FLOPs and FLOPs "
        f"per image (Welch t-tests, Holm-adjusted within each family; non-inferiority margins "
        f"{ACCURACY_MARGIN:g} accuracy, {COST_MARGIN:.0%} of the reference's cost)."
    ]
    sentences += [_pair_sentence(decided, candidate, REFERENCE) for candidate in CANDIDATES]
    for family in ("baselines", "control"):
        pairs = [(c, r) for c in CANDIDATES for r in FAMILIES[family]]
        verdicts = "; ".join(f"{c} against {r}: {verdict(decided, c, r)}" for c, r in pairs)
        sentences.append(f"Against the {'two baselines' if family == 'baselines' else 'two controls'}: {verdicts}.")
    time_parts = []
    for _, row in times.iterrows():
        test = f"not comparable: {row['not_comparable']}" if row["not_comparable"] else f"Holm p = {row['p_holm']:.3g}"
        time_parts.append(f"{row['comparison']}: {row['mean_a']:.1f} s vs {row['mean_b']:.1f} s ({test})")
    sentences.append(
        "Seconds are reported, they do not decide (they depend on the machine): " + "; ".join(time_parts) + "."
    )
    sentences.append("A small profile checks the procedures; it does not carry over to the thesis's CIFAR scale.")
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


AXIS_SCALES = {"flops": 1e-6, "training_flops": 1e-9}
PROCEDURE_LABELS = {
    "narrow baseline": "schmales Baseline-Netz",
    "wide baseline": "breites Baseline-Netz",
    "PruneTrain on the wide net": "PruneTrain auf dem breiten Netz",
    "uniform growth + PruneTrain": "gleichmäßig gewachsen + PruneTrain",
    "MorphNet": "MorphNet",
    "PruneTrain + Net2Net": "PruneTrain + Net2Net",
    "PruneTrain + Net2Net, retrained": "PruneTrain + Net2Net, neu trainiert",
    "PruneTrain + Net2Net, scaled to the budget": "PruneTrain + Net2Net, auf Budget skaliert",
}
MARKERS = dict(zip(PROCEDURES, ("v", "o", "P", "X", "s", "^", "D", "*")))
# One colour per procedure, told apart in print: the baselines grey, each search and control its own hue of
# the colour-blind palette (MorphNet and the retrained net had two near-identical pinks by index).
COLORS = dict(zip(PROCEDURES, ("0.55", "0.15", "C1", "C5", "C4", "C0", "C2", "C3")))
FIGURE_TEXTS = {"legend_title": {"de": "Läufe; x: Mittelwert", "en": "runs; x: mean"}}


def comparison_figure(runs: pd.DataFrame, x: str, stamp: tuple[str, str]) -> Figure:
    """Accuracy against `x` ("flops", "training_flops" or "total_time"): every run as a point, each
    procedure's mean as a cross, the legend below the figure in two columns (beside the axes it took half the
    width from the data); `stamp` = (profile, dataset)."""
    present = [p for p in PROCEDURES if p in set(runs["procedure"])]
    sizes = runs.groupby("procedure").size()
    equal_sizes = sizes.nunique() == 1  # then n stands once, in the stamp, and the legend keeps the text width
    fig, ax = plots.figure("full")
    scale = AXIS_SCALES.get(x, 1.0)
    for procedure in present:
        group = runs[runs["procedure"] == procedure]
        color = COLORS[procedure]
        ax.scatter(
            group[x] * scale,
            group["final_acc"],
            s=14,
            color=color,
            marker=MARKERS[procedure],
            alpha=0.7,
            label=PROCEDURE_LABELS[procedure] if equal_sizes else f"{PROCEDURE_LABELS[procedure]} (n = {len(group)})",
            linewidths=0,
        )
        ax.scatter(group[x].mean() * scale, group["final_acc"].mean(), s=60, color=color, marker="x", linewidths=1.2)
    ax.set(xlabel=plots.label(x), ylabel=plots.label("final_acc"))
    ax.set_xlim(left=0)  # a cost axis from zero: a span of a few percent must not look like a factor
    fig.legend(title=plots.translate(FIGURE_TEXTS, "legend_title"), loc="outside lower center", ncol=2)
    plots.stamp(fig, stamp[0], stamp[1], int(sizes.min()) if equal_sizes else "/".join(map(str, sizes)))
    return fig
