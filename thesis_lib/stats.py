"""Statistics the thesis reports: Welch t-tests between run groups, a line fit with a t-test on its slope,
and summary tables over seeds.

Chapter 3.1.4 compares accuracy and epoch time of the baseline with and without the learning-rate
schedule, chapter 5 compares PruneTrain sweeps against the baseline, and chapter 6.1 fits a line to
maximum batch size against parameter count and tests whether its slope differs from zero. The groups have
few runs (typically 5 seeds) and need not share a variance, hence Welch's test rather than Student's.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")


def _finite_sample(values: ArrayLike, label: str, minimum: int) -> np.ndarray:
    """Return `values` as a 1-D float array; reject NaN/inf and samples shorter than `minimum`.

    Non-finite values are rejected rather than dropped: a NaN usually marks a failed or diverged run, and
    silently leaving it out would change the group sizes the reader sees in the thesis.
    """
    sample = np.asarray(values, dtype=float)
    if sample.ndim != 1:
        raise ValueError(f"{label} must be one-dimensional, got shape {sample.shape}")
    if not np.all(np.isfinite(sample)):
        bad = int(np.count_nonzero(~np.isfinite(sample)))
        raise ValueError(f"{label} contains {bad} NaN or infinite value(s); drop failed runs before testing")
    if sample.size < minimum:
        raise ValueError(f"{label} needs at least {minimum} finite values, got {sample.size}")
    return sample


def _format_number(value: float, unit: str = "") -> str:
    text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with its confidence interval.

    `df` is the Welch-Satterthwaite degrees of freedom; `ci_low`/`ci_high` bound `diff` at `confidence`
    using the t distribution with those degrees of freedom, so the interval excludes 0 exactly when
    `p < 1 - confidence`. When neither sample varies the test is undefined: t, p, df and the interval are
    NaN (not an error, so a table of many comparisons still builds).
    """

    t: float
    p: float
    df: float
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int
    confidence: float = 0.95
    constant: str = ""  # "a" or "b" when that sample does not vary (both: the test is undefined)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def sentence(self, what: str, unit: str = "") -> str:
        """One English sentence for the thesis text, e.g.
        "Accuracy: 0.912 vs 0.905 (difference 0.007, 95% CI [-0.002, 0.016]), Welch t = 1.84, df = 7.6,
        p = 0.104: not significant at the 5% level." Numbers have 3 significant digits; `unit` follows
        every mean, difference and bound after a space."""
        level = f"{(1.0 - self.confidence) * 100:g}%"
        means = f"{what}: {_format_number(self.mean_a, unit)} vs {_format_number(self.mean_b, unit)}"
        if math.isnan(self.t):
            return (
                f"{means} (difference {_format_number(self.diff, unit)}), "
                f"Welch t-test undefined (no variance in either sample)."
            )
        interval = (
            f"{self.confidence * 100:g}% CI [{_format_number(self.ci_low, unit)}, {_format_number(self.ci_high, unit)}]"
        )
        verdict = "significant" if self.p < 1.0 - self.confidence else "not significant"
        constant = (
            (
                f" (all {self.n_a if self.constant == 'a' else self.n_b} values of "
                f"{'the first' if self.constant == 'a' else 'the second'} group are equal)"
            )
            if self.constant
            else ""
        )
        return (
            f"{means} (difference {_format_number(self.diff, unit)}, {interval}){constant}, "
            f"Welch t = {self.t:.3g}, df = {self.df:.3g}, p = {self.p:.3g}: {verdict} at the {level} level."
        )


def welch_ttest(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> WelchResult:
    """Two-sided Welch t-test of mean(a) == mean(b) and the `confidence` interval of mean(a) - mean(b).

    Each sample needs at least 2 finite values (a sample variance needs 2). If both samples are constant
    the standard error is 0 and the test is undefined: the result has t = p = df = NaN and a NaN interval.
    """
    _check_confidence(confidence)
    sample_a = _finite_sample(a, "sample a", 2)
    sample_b = _finite_sample(b, "sample b", 2)
    mean_a, mean_b = float(sample_a.mean()), float(sample_b.mean())
    common = dict(
        mean_a=mean_a,
        mean_b=mean_b,
        diff=mean_a - mean_b,
        n_a=int(sample_a.size),
        n_b=int(sample_b.size),
        confidence=confidence,
    )
    constant_a, constant_b = np.ptp(sample_a) == 0.0, np.ptp(sample_b) == 0.0
    if constant_a and constant_b:
        nan = float("nan")
        return WelchResult(t=nan, p=nan, df=nan, ci_low=nan, ci_high=nan, **common)
    with warnings.catch_warnings():
        if constant_a or constant_b:
            # An exactly constant sample has variance 0; scipy's precision-loss warning is a false alarm.
            warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        test = scipy_stats.ttest_ind(sample_a, sample_b, equal_var=False)
    interval = test.confidence_interval(confidence_level=confidence)
    return WelchResult(
        t=float(test.statistic),
        p=float(test.pvalue),
        df=float(test.df),
        ci_low=float(interval.low),
        ci_high=float(interval.high),
        constant="a" if constant_a else "b" if constant_b else "",
        **common,
    )


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line y = intercept + slope * x with standard errors, `confidence` intervals from the
    t distribution with n - 2 degrees of freedom, and the two-sided p-value of the t-test of slope == 0
    (the test chapter 6.1 applies to the batch-size fit)."""

    slope: float
    intercept: float
    r2: float
    p: float
    slope_se: float
    intercept_se: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    n: int
    confidence: float = 0.95

    def predict(self, x: ArrayLike) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, dtype=float)

    def as_dict(self) -> dict[str, float | int]:
        """Flat dict (intervals split into *_ci_low / *_ci_high) so it fits one DataFrame row."""
        flat = asdict(self)
        for name in ("slope_ci", "intercept_ci"):
            low, high = flat.pop(name)
            flat[f"{name}_low"], flat[f"{name}_high"] = low, high
        return flat


def linear_fit(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> LinearFit:
    """Fit y = intercept + slope * x by ordinary least squares (statsmodels, QR, on x centred at its mean, so
    that x of the order of 1e5 with a small spread keeps its digits) and test slope == 0.

    Standard errors come from the residuals (s^2 = SSE / (n - 2)), which stays exact as r^2 -> 1, where
    the (1 - r^2) shortcut of scipy's linregress loses every digit. A perfect line has standard errors 0
    and p = 0. Needs at least 3 points (n - 2 degrees of freedom) and x that is not constant.
    """
    _check_confidence(confidence)
    x_values = _finite_sample(x, "x", 3)
    y_values = _finite_sample(y, "y", 3)
    if x_values.size != y_values.size:
        raise ValueError(f"x and y must have the same length, got {x_values.size} and {y_values.size}")
    if np.ptp(x_values) == 0.0:
        raise ValueError("x is constant, so no slope can be fitted; vary x across the points")
    n = int(x_values.size)
    # Fitted on x - mean(x): the columns (1, x) of raw parameter counts (x ~ 1e5 with a small spread) are
    # nearly collinear and cost the standard errors digits; centred, the columns are orthogonal.
    x_mean = float(x_values.mean())
    centred = x_values - x_mean
    fit = sm.OLS(y_values, sm.add_constant(centred, has_constant="add")).fit(method="qr")
    level, slope = (float(v) for v in fit.params)  # level: the fitted y at mean(x)
    intercept = level - slope * x_mean
    residual_ss = float(np.sum(fit.resid**2))
    total_ss = float(np.sum((y_values - y_values.mean()) ** 2))
    spread_ss = float(np.sum(centred**2))
    residual_variance = residual_ss / (n - 2)
    slope_se = math.sqrt(residual_variance / spread_ss)
    intercept_se = math.sqrt(residual_variance * (1.0 / n + x_mean**2 / spread_ss))
    if slope_se > 0:
        p = float(2 * scipy_stats.t.sf(abs(slope / slope_se), n - 2))
    else:
        p = 0.0 if slope != 0 else 1.0
    r2 = 1.0 - residual_ss / total_ss if total_ss > 0 else 1.0
    t_critical = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 2))
    return LinearFit(
        slope=slope,
        intercept=intercept,
        r2=r2,
        p=p,
        slope_se=slope_se,
        intercept_se=intercept_se,
        slope_ci=(slope - t_critical * slope_se, slope + t_critical * slope_se),
        intercept_ci=(intercept - t_critical * intercept_se, intercept + t_critical * intercept_se),
        n=n,
        confidence=confidence,
    )


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the DataFrame; available: {list(df.columns)}")


def summary_table(df: pd.DataFrame, by: str | list[str], value: str) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1), count, min and max of `value` per group of `by`
    (e.g. table 3.2: epoch time per run). Groups are sorted; NaN values are not counted (pandas skipna)."""
    group_columns = [by] if isinstance(by, str) else list(by)
    _require_columns(df, [*group_columns, value])
    grouped = df.groupby(group_columns, sort=True, observed=True)[value]
    return grouped.agg(mean="mean", std="std", n="count", min="min", max="max").reset_index()


WELCH_COLUMNS = [
    "comparison",
    "mean_a",
    "mean_b",
    "diff",
    "ci_low",
    "ci_high",
    "t",
    "df",
    "p",
    "n_a",
    "n_b",
    "sentence",
]


def welch_table(
    comparisons: Iterable[tuple[str, ArrayLike, ArrayLike]], unit: str = "", confidence: float = 0.95
) -> pd.DataFrame:
    """Welch t-tests of many (label, a, b) pairs: one row each with the test's numbers and its sentence
    (`WelchResult.sentence(label, unit)`), so a notebook prints every result from one table."""
    rows = []
    for label, a, b in comparisons:
        try:
            result = welch_ttest(a, b, confidence=confidence)
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from error
        rows.append(
            {
                "comparison": label,
                **{k: v for k, v in result.as_dict().items() if k != "confidence"},
                "sentence": result.sentence(label, unit),
            }
        )
    return pd.DataFrame(rows, columns=WELCH_COLUMNS)


def compare_groups(
    df: pd.DataFrame,
    group_col: str,
    pairs: Iterable[tuple[object, object]],
    quantities: Iterable[tuple[str, str, str]],
    confidence: float = 0.95,
    timing_columns: tuple[str, str] | None = None,
) -> pd.DataFrame:
    """Welch tests between named groups of one tidy frame: for every (column, description, unit) of
    `quantities` and every (a, b) of `pairs`, the values of `column` in group a against group b, labelled
    "<description>, a vs b" (one `welch_table` row each, with its sentence).

    `timing_columns` (setting, alone) name the frame's columns that say on what each run was timed and
    whether it trained alone (`experiments.provenance.TIMING_COLUMNS`). A time quantity (unit "s") is then
    tested only between groups whose runs all share one setting and all trained alone: a Welch test sees
    only the spread between seeds, so a gap made by another machine or by neighbours on the same cores
    would pass for the methods'. Such a row keeps its means but no test: its `not_comparable` column says
    why (empty where the test stands), its sentence and `with_holm`'s verdict say "not comparable".
    """
    pairs = list(pairs)
    quantities = list(quantities)
    timed = timing_columns is not None and any(unit == "s" for _, _, unit in quantities)
    _require_columns(df, [group_col, *(column for column, _, _ in quantities), *(timing_columns if timed else ())])
    present = set(df[group_col])
    missing = sorted({str(g) for pair in pairs for g in pair if g not in present})
    if missing:
        raise ValueError(f"group(s) {missing} not in column {group_col!r}; groups present: {sorted(map(str, present))}")
    tables = []
    for column, what, unit in quantities:
        table = welch_table(
            [
                (f"{what}, {a} vs {b}", df.loc[df[group_col] == a, column], df.loc[df[group_col] == b, column])
                for a, b in pairs
            ],
            unit=unit,
            confidence=confidence,
        )
        reasons = [
            _timing_problem(df[df[group_col].isin([a, b])], *timing_columns) if timed and unit == "s" else ""
            for a, b in pairs
        ]
        table["not_comparable"] = reasons
        for index, reason in enumerate(reasons):
            if reason:
                row = table.loc[index]
                table.loc[index, ["t", "df", "p", "ci_low", "ci_high"]] = np.nan
                table.loc[index, "sentence"] = (
                    f"{row['comparison']}: {_format_number(row['mean_a'], unit)} vs "
                    f"{_format_number(row['mean_b'], unit)}: not comparable ({reason}), no test."
                )
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _timing_problem(runs: pd.DataFrame, setting_col: str, alone_col: str) -> str:
    """Why the seconds of `runs` may not be compared ("" when they may): several timing settings, or runs
    that trained beside other training processes."""
    problems = []
    settings = sorted(set(runs[setting_col].astype(str)))
    if len(settings) > 1:
        problems.append(f"timed on {len(settings)} settings: {'; '.join(settings)}")
    beside = int((~runs[alone_col].astype(bool)).sum())
    if beside:
        problems.append(f"{beside} of {len(runs)} runs trained beside other training processes")
    return "; ".join(problems)


def ttest_table(
    df: pd.DataFrame, group_col: str, value_col: str, reference: object, confidence: float = 0.95, unit: str = ""
) -> pd.DataFrame:
    """Welch t-test of every group of `group_col` against the `reference` group, one row per other group
    (sorted), with columns group, mean, reference_mean, diff (= mean - reference_mean), ci_low, ci_high,
    t, df, p and the result's sentence. No correction for multiple comparisons is applied."""
    _require_columns(df, [group_col, value_col])
    groups = {
        key: part[value_col].to_numpy(dtype=float) for key, part in df.groupby(group_col, sort=True, observed=True)
    }
    if reference not in groups:
        raise ValueError(
            f"reference group {reference!r} not found in column {group_col!r}; groups present: {list(groups)}"
        )
    others = [key for key in groups if key != reference]
    table = welch_table(
        [(f"{value_col}, {group_col} = {key} vs {reference}", groups[key], groups[reference]) for key in others],
        unit=unit,
        confidence=confidence,
    )
    table.insert(0, "group", others)
    table = table.rename(columns={"mean_a": "mean", "mean_b": "reference_mean"})
    return table[["group", "mean", "reference_mean", "diff", "ci_low", "ci_high", "t", "df", "p", "sentence"]]


P_ADJUST_METHODS = ("holm", "bonferroni")


def adjust_pvalues(p: ArrayLike, method: str = "holm") -> np.ndarray:
    """Family-wise adjusted p-values (Holm's step-down by default) via statsmodels' `multipletests`.

    NaN entries (undefined tests, e.g. two constant samples) stay NaN and are not counted in the family.
    """
    if method not in P_ADJUST_METHODS:
        raise ValueError(f"unknown adjustment {method!r}; use one of {P_ADJUST_METHODS}")
    values = np.asarray(p, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"p must be a 1-d sequence of p-values, got shape {values.shape}")
    defined = ~np.isnan(values)
    if np.any((values[defined] < 0) | (values[defined] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {values[defined].tolist()}")
    adjusted = np.full_like(values, np.nan)
    if defined.any():
        adjusted[defined] = multipletests(values[defined], method=method)[1]
    return adjusted


def with_holm(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """A `welch_table` with p_holm (Holm-adjusted over all its rows: one family) and a verdict from it:
    "significant" (p_holm < alpha), "not significant", or "undefined (no variance)". Its sentences then carry
    that verdict only (the raw p stays as a number)."""
    _require_columns(table, ["p"])
    out = table.copy()
    out["p_holm"] = adjust_pvalues(out["p"].to_numpy(dtype=float))
    out["verdict"] = np.where(
        out["p_holm"].isna(),
        "undefined (no variance)",
        np.where(out["p_holm"] < alpha, "significant", "not significant"),
    )
    if "not_comparable" in out:  # `compare_groups`' time rows without a test: outside the family
        untested = out["not_comparable"].fillna("") != ""
        out.loc[untested, "verdict"] = "not comparable: " + out.loc[untested, "not_comparable"]
    if "sentence" in out:
        out["sentence"] = [
            _holm_sentence(sentence, p_holm, verdict)
            for sentence, p_holm, verdict in zip(out["sentence"], out["p_holm"], out["verdict"])
        ]
    return out


_RAW_VERDICT = re.compile(r": (?:not )?significant at the [0-9.]+% level\.$")


def _holm_sentence(sentence: str, p_holm: float, verdict: str) -> str:
    """A test's sentence with one verdict, the Holm-adjusted one: the raw p stays as a number, its own
    verdict is replaced (an undefined test's sentence stays as it is)."""
    if not _RAW_VERDICT.search(sentence):
        return sentence
    return _RAW_VERDICT.sub(f"; Holm-adjusted p = {p_holm:.3g}: {verdict}.", sentence)
