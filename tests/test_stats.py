"""Tests of thesis_lib.stats against hand-coded formulas, scipy's own Welch test and a textbook example."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from thesis_lib.stats import (
    WelchResult,
    adjust_pvalues,
    compare_groups,
    linear_fit,
    summary_table,
    ttest_table,
    welch_table,
    welch_ttest,
    with_holm,
)

# Baseline accuracies with (a) and without (b) the step schedule: made-up numbers of the thesis's size.
ACCURACY_STEP = [0.9189, 0.9201, 0.9165, 0.9213, 0.9178]
ACCURACY_CONSTANT = [0.8124, 0.8350, 0.7902, 0.8233, 0.8011, 0.8298]


def welch_by_formula(a, b, confidence=0.95):
    """Welch's t, Welch-Satterthwaite df, two-sided p and the CI of the difference, written out."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    standard_error = math.sqrt(var_a + var_b)
    diff = a.mean() - b.mean()
    t = diff / standard_error
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    p = 2.0 * scipy_stats.t.sf(abs(t), df)
    half_width = scipy_stats.t.ppf(0.5 + confidence / 2.0, df) * standard_error
    return t, df, p, diff - half_width, diff + half_width


@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_welch_matches_formula_and_scipy(confidence):
    result = welch_ttest(ACCURACY_STEP, ACCURACY_CONSTANT, confidence=confidence)
    t, df, p, ci_low, ci_high = welch_by_formula(ACCURACY_STEP, ACCURACY_CONSTANT, confidence)
    assert result.t == pytest.approx(t, rel=1e-12)
    assert result.df == pytest.approx(df, rel=1e-12)
    assert result.p == pytest.approx(p, rel=1e-9)
    assert result.p == pytest.approx(
        scipy_stats.ttest_ind(ACCURACY_STEP, ACCURACY_CONSTANT, equal_var=False).pvalue, rel=1e-12
    )
    assert (result.ci_low, result.ci_high) == pytest.approx((ci_low, ci_high), rel=1e-12)
    assert result.mean_a == pytest.approx(np.mean(ACCURACY_STEP))
    assert result.mean_b == pytest.approx(np.mean(ACCURACY_CONSTANT))
    assert result.diff == pytest.approx(np.mean(ACCURACY_STEP) - np.mean(ACCURACY_CONSTANT))
    assert (result.n_a, result.n_b) == (5, 6)


def test_welch_textbook_example():
    # Welch's first worked example (two samples of 15): t = -2.46, df = 25.0, p = 0.021.
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch_ttest(a, b)
    assert result.t == pytest.approx(-2.46, abs=0.005)
    assert result.df == pytest.approx(25.0, abs=0.05)
    assert result.p == pytest.approx(0.021, abs=0.0005)
    assert result.ci_high < 0.0  # significant at 5%, so the 95% interval excludes 0


def test_welch_interval_agrees_with_p():
    a = [1.0, 2.0, 3.0, 4.0]
    shifted = welch_ttest(a, [x - 3.0 for x in a])
    barely_shifted = welch_ttest(a, [x - 0.5 for x in a])
    assert shifted.p < 0.05 and shifted.ci_low > 0.0
    assert barely_shifted.p > 0.05 and barely_shifted.ci_low < 0.0 < barely_shifted.ci_high


def test_welch_sentence_format():
    result = WelchResult(
        t=1.84, p=0.104, df=7.6, mean_a=0.912, mean_b=0.905, diff=0.007, ci_low=-0.002, ci_high=0.016, n_a=5, n_b=5
    )
    assert result.sentence("Accuracy") == (
        "Accuracy: 0.912 vs 0.905 (difference 0.007, 95% CI [-0.002, 0.016]), "
        "Welch t = 1.84, df = 7.6, p = 0.104: not significant at the 5% level."
    )
    significant = welch_ttest([19.5, 19.7, 19.6], [21.0, 21.2, 20.9], confidence=0.99)
    sentence = significant.sentence("Epoch time", unit="s")
    assert sentence.startswith("Epoch time: 19.6 s vs 21 s (difference -1.43 s, 99% CI [")
    assert sentence.endswith(": significant at the 1% level.")


def test_welch_one_constant_sample_uses_other_variance():
    varying = [0.90, 0.92, 0.91, 0.95]
    result = welch_ttest(varying, [0.80, 0.80, 0.80])
    standard_error = np.std(varying, ddof=1) / 2.0
    assert result.df == pytest.approx(3.0)  # Welch-Satterthwaite collapses to n_a - 1
    assert result.t == pytest.approx((np.mean(varying) - 0.80) / standard_error)


def test_welch_no_variance_is_undefined_not_an_error():
    result = welch_ttest([1.0, 1.0, 1.0], [2.0, 2.0])
    assert math.isnan(result.t) and math.isnan(result.p) and math.isnan(result.df)
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert result.diff == -1.0
    assert "undefined (no variance" in result.sentence("Accuracy")
    assert set(result.as_dict()) == {
        "t",
        "p",
        "df",
        "mean_a",
        "mean_b",
        "diff",
        "ci_low",
        "ci_high",
        "n_a",
        "n_b",
        "confidence",
        "constant",
    }


@pytest.mark.parametrize(
    "a, b, message",
    [
        ([1.0], [1.0, 2.0], "sample a needs at least 2"),
        ([1.0, 2.0], [3.0], "sample b needs at least 2"),
        ([1.0, float("nan"), 2.0], [1.0, 2.0], "sample a contains 1 NaN"),
        ([1.0, 2.0], [1.0, float("inf")], "sample b contains 1 NaN or infinite"),
        ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], "sample a must be one-dimensional"),
    ],
)
def test_welch_rejects_bad_samples(a, b, message):
    with pytest.raises(ValueError, match=message):
        welch_ttest(a, b)


def test_confidence_must_be_a_fraction():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        welch_ttest([1.0, 2.0], [3.0, 4.0], confidence=95)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        linear_fit([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], confidence=1.0)


def test_linear_fit_matches_manual_t_test_of_slope():
    # Max batch size against parameter count (in units of 1e5), a noisy decreasing relation.
    x = np.array([0.5, 1.0, 2.4, 3.9, 4.9, 5.8, 7.8, 9.7])
    y = np.array([2900.0, 2650.0, 2310.0, 1800.0, 1620.0, 1350.0, 900.0, 350.0])
    fit = linear_fit(x, y, confidence=0.9)

    n = x.size
    sxx = np.sum((x - x.mean()) ** 2)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / sxx
    intercept = y.mean() - slope * x.mean()
    residuals = y - (intercept + slope * x)
    residual_variance = np.sum(residuals**2) / (n - 2)
    slope_se = math.sqrt(residual_variance / sxx)
    intercept_se = math.sqrt(residual_variance * (1.0 / n + x.mean() ** 2 / sxx))
    t_slope = slope / slope_se
    p = 2.0 * scipy_stats.t.sf(abs(t_slope), n - 2)
    t_critical = scipy_stats.t.ppf(0.95, n - 2)

    assert fit.slope == pytest.approx(slope, rel=1e-12)
    assert fit.intercept == pytest.approx(intercept, rel=1e-12)
    assert fit.slope_se == pytest.approx(slope_se, rel=1e-9)
    assert fit.intercept_se == pytest.approx(intercept_se, rel=1e-9)
    assert fit.p == pytest.approx(p, rel=1e-6)
    assert fit.p < 1e-6
    assert fit.r2 == pytest.approx(1.0 - np.sum(residuals**2) / np.sum((y - y.mean()) ** 2), rel=1e-12)
    assert fit.slope_ci == pytest.approx((slope - t_critical * slope_se, slope + t_critical * slope_se))
    assert fit.intercept_ci == pytest.approx(
        (intercept - t_critical * intercept_se, intercept + t_critical * intercept_se)
    )
    assert fit.n == 8
    np.testing.assert_allclose(fit.predict([0.0, 10.0]), [intercept, intercept + 10.0 * slope])


def test_linear_fit_without_relation_is_not_significant():
    fit = linear_fit([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3.0, 1.0, 2.0, 2.0, 1.0, 3.0])
    assert fit.slope == pytest.approx(0.0, abs=1e-12)
    assert fit.p == pytest.approx(1.0)
    assert fit.slope_ci[0] < 0.0 < fit.slope_ci[1]


def test_linear_fit_as_dict_is_flat():
    row = linear_fit([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]).as_dict()
    assert row["slope"] == pytest.approx(2.0) and row["intercept"] == pytest.approx(1.0)
    assert row["r2"] == pytest.approx(1.0)
    assert {"slope_ci_low", "slope_ci_high", "intercept_ci_low", "intercept_ci_high"} <= set(row)
    assert not any(isinstance(value, tuple) for value in row.values())


@pytest.mark.parametrize(
    "x, y, message",
    [
        ([1.0, 2.0], [1.0, 2.0], "x needs at least 3"),
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], "x is constant"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], "same length"),
        ([1.0, 2.0, 3.0], [1.0, float("nan"), 3.0], "y contains 1 NaN"),
    ],
)
def test_linear_fit_rejects_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        linear_fit(x, y)


@pytest.fixture
def runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["baseline"] * 5 + ["prunetrain"] * 4 + ["net2net"] * 3,
            "lr": ["step", "step", "step", "const", "const", "step", "step", "const", "const", "step", "step", "step"],
            "accuracy": [0.919, 0.921, 0.917, 0.812, 0.830, 0.905, 0.899, 0.801, 0.799, 0.910, 0.915, 0.908],
        }
    )


def test_summary_table_per_group(runs):
    table = summary_table(runs, "method", "accuracy")
    assert list(table.columns) == ["method", "mean", "std", "n", "min", "max"]
    assert list(table["method"]) == ["baseline", "net2net", "prunetrain"]
    baseline_values = np.array([0.919, 0.921, 0.917, 0.812, 0.830])
    row = table.set_index("method").loc["baseline"]
    assert row["mean"] == pytest.approx(baseline_values.mean())
    assert row["std"] == pytest.approx(math.sqrt(np.sum((baseline_values - baseline_values.mean()) ** 2) / 4))
    assert (row["n"], row["min"], row["max"]) == (5, 0.812, 0.921)


def test_summary_table_by_two_columns(runs):
    table = summary_table(runs, ["method", "lr"], "accuracy")
    assert len(table) == 5
    row = table.set_index(["method", "lr"]).loc[("prunetrain", "const")]
    assert row["mean"] == pytest.approx(0.800)
    assert row["std"] == pytest.approx(math.sqrt(2 * 0.001**2))
    assert row["n"] == 2
    with pytest.raises(ValueError, match=r"column\(s\) \['seed'\] not in the DataFrame"):
        summary_table(runs, ["method", "seed"], "accuracy")


def test_ttest_table_against_reference(runs):
    table = ttest_table(runs, "method", "accuracy", reference="baseline")
    assert list(table.columns) == [
        "group",
        "mean",
        "reference_mean",
        "diff",
        "ci_low",
        "ci_high",
        "t",
        "df",
        "p",
        "sentence",
    ]
    assert list(table["group"]) == ["net2net", "prunetrain"]
    baseline = runs.loc[runs.method == "baseline", "accuracy"]
    for _, row in table.iterrows():
        values = runs.loc[runs.method == row["group"], "accuracy"]
        t, df, p, ci_low, ci_high = welch_by_formula(values, baseline)
        assert row["diff"] == pytest.approx(values.mean() - baseline.mean())
        assert row["reference_mean"] == pytest.approx(baseline.mean())
        assert (row["t"], row["df"], row["p"]) == pytest.approx((t, df, p), rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci_low, ci_high), rel=1e-9)


def test_ttest_table_errors(runs):
    with pytest.raises(ValueError, match="reference group 'morphnet' not found.*'baseline'"):
        ttest_table(runs, "method", "accuracy", reference="morphnet")
    single = pd.concat([runs, pd.DataFrame({"method": ["morphnet"], "lr": ["step"], "accuracy": [0.9]})])
    with pytest.raises(ValueError, match="method = morphnet vs baseline: sample a needs"):
        ttest_table(single, "method", "accuracy", reference="baseline")


def test_welch_table_rows_equal_single_tests():
    a, b, c = [0.91, 0.92, 0.93, 0.90], [0.88, 0.89, 0.87, 0.90], [0.91, 0.95, 0.90, 0.94]
    table = welch_table([("a vs b", a, b), ("c vs b", c, b)], unit="")
    for row, (x, y) in zip(table.itertuples(), [(a, b), (c, b)]):
        expected = scipy_stats.ttest_ind(x, y, equal_var=False)
        assert row.t == pytest.approx(expected.statistic) and row.p == pytest.approx(expected.pvalue)
    assert table.sentence[0].startswith("a vs b")
    with pytest.raises(ValueError, match="c vs b"):
        welch_table([("c vs b", [1.0], b)])


def test_compare_groups_tests_each_pair_and_quantity_like_welch_ttest():
    df = pd.DataFrame(
        {
            "net": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "acc": [0.90, 0.92, 0.91, 0.85, 0.86, 0.88, 0.93, 0.95, 0.94],
            "time": [1.0, 1.1, 1.2, 2.0, 2.2, 2.1, 1.5, 1.4, 1.6],
        }
    )
    table = compare_groups(df, "net", [("a", "b"), ("c", "b")], [("acc", "accuracy", ""), ("time", "time", "s")])
    assert list(table.comparison) == ["accuracy, a vs b", "accuracy, c vs b", "time, a vs b", "time, c vs b"]
    expected = scipy_stats.ttest_ind([1.5, 1.4, 1.6], [2.0, 2.2, 2.1], equal_var=False)
    assert table.t[3] == pytest.approx(expected.statistic) and table.p[3] == pytest.approx(expected.pvalue)
    assert " s" in table.sentence[3]
    with pytest.raises(ValueError, match=r"group\(s\) \['d'\] not in column 'net'"):
        compare_groups(df, "net", [("a", "d")], [("acc", "accuracy", "")])


@pytest.mark.parametrize("wiggle", [1e-9, 1e-7, 1e-3])
def test_linear_fit_standard_errors_follow_the_residuals_on_near_perfect_lines(wiggle):
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 4.0 + wiggle, 6.0, 8.0 - wiggle, 10.0])
    design = np.column_stack([np.ones_like(x), x])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ coefficients
    s2 = residuals @ residuals / (len(x) - 2)
    covariance = s2 * np.linalg.inv(design.T @ design)
    fit = linear_fit(x, y)
    assert fit.slope_se == pytest.approx(math.sqrt(covariance[1, 1]), rel=1e-6)
    assert fit.intercept_se == pytest.approx(math.sqrt(covariance[0, 0]), rel=1e-6)
    # By hand: slope 2 - 0.2 w, residuals w * (-0.4, 0.8, 0, -0.8, 0.4), SSE = 1.6 w^2, Sxx = 10, n - 2 = 3
    # (for w = 1e-9: 2.309e-10, where the (1 - r^2) shortcut gives 0).
    assert fit.slope_se == pytest.approx(math.sqrt(1.6 * wiggle**2 / 3 / 10), rel=1e-6)


def test_a_perfect_line_has_zero_standard_errors_and_p_zero():
    fit = linear_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert (fit.slope, fit.intercept, fit.r2) == (pytest.approx(2), pytest.approx(1), pytest.approx(1))
    assert fit.slope_se == fit.intercept_se == 0.0 and fit.p == 0.0


def test_holm_adjustment_against_the_step_down_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted defined p: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    expected = [0.03, 0.06, 0.06, 0.02, float("nan")]
    np.testing.assert_allclose(adjust_pvalues(p), expected)
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02, float("nan")])
    with pytest.raises(ValueError, match="unknown adjustment"):
        adjust_pvalues(p, "fdr")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])


def test_with_holm_gives_verdicts_from_the_adjusted_p():
    table = pd.DataFrame({"comparison": ["a", "b", "c"], "p": [0.02, 0.03, float("nan")]})
    out = with_holm(table)
    assert out["p_holm"].tolist()[:2] == pytest.approx([0.04, 0.04])
    assert out["verdict"].tolist() == ["significant", "significant", "undefined (no variance)"]
    assert with_holm(table.assign(p=[0.03, 0.04, 0.5]))["verdict"].tolist() == ["not significant"] * 3


def test_a_p_holm_exactly_at_alpha_is_not_significant():
    """The verdict needs p_holm < alpha: a single test (its own family, so p_holm = p) at 0.05 is not
    significant, one just below is."""
    at = with_holm(pd.DataFrame({"p": [0.05]}))
    below = with_holm(pd.DataFrame({"p": [0.0499]}))
    assert at["p_holm"].tolist() == [0.05] and at["verdict"].tolist() == ["not significant"]
    assert below["verdict"].tolist() == ["significant"]
    assert with_holm(pd.DataFrame({"p": [0.1]}), alpha=0.1)["verdict"].tolist() == ["not significant"]


def test_holm_tables_give_each_test_one_verdict_the_adjusted_one():
    from thesis_lib.stats import welch_table, with_holm

    table = with_holm(
        welch_table(
            [
                ("a vs b", [1.0, 1.1, 0.9, 1.05, 0.95], [1.3, 1.4, 1.2, 1.35, 1.25]),
                ("c vs d", [1.0, 1.2, 0.8, 1.1, 0.9], [1.05, 1.25, 0.85, 1.15, 0.95]),
                ("e vs f", [2.0, 2.0], [2.0, 2.0]),
            ]
        )
    )
    first, second, undefined = table["sentence"]
    assert first.endswith(f"p = {table['p'][0]:.3g}; Holm-adjusted p = {table['p_holm'][0]:.3g}: significant.")
    assert second.endswith(f"; Holm-adjusted p = {table['p_holm'][1]:.3g}: not significant.")
    assert all("at the 5% level" not in s for s in (first, second))
    assert undefined.endswith("Welch t-test undefined (no variance in either sample).")


def test_a_sample_without_variance_is_named_in_the_sentence():
    from thesis_lib.stats import welch_ttest

    result = welch_ttest([1.0, 1.0, 1.0, 1.0, 1.0], [0.5, 0.6, 0.55, 0.52, 0.58])
    assert result.constant == "a" and welch_ttest([0.5, 0.6], [1.0, 1.0]).constant == "b"
    assert "(all 5 values of the first group are equal)" in result.sentence("kept")
    assert welch_ttest([0.5, 0.6], [0.7, 0.9]).constant == ""


def _timed_runs(settings_b=("cpu X",) * 3, alone_b=(True,) * 3):
    return pd.DataFrame(
        {
            "arm": ["A"] * 3 + ["B"] * 3,
            "total_time": [10.0, 10.5, 9.8, 12.0, 12.4, 11.9],
            "final_acc": [0.90, 0.91, 0.92, 0.93, 0.94, 0.92],
            "timing_setting": ["cpu X"] * 3 + list(settings_b),
            "timed_alone": [True] * 3 + list(alone_b),
        }
    )


TIMED = [("total_time", "total time", "s"), ("final_acc", "accuracy", "")]


def test_times_of_one_setting_trained_alone_are_tested_as_welch_tests_are():
    runs = _timed_runs()
    table = compare_groups(runs, "arm", [("A", "B")], TIMED, timing_columns=("timing_setting", "timed_alone"))
    expected = welch_ttest([10.0, 10.5, 9.8], [12.0, 12.4, 11.9])
    assert table["not_comparable"].tolist() == ["", ""]
    assert table.loc[0, "p"] == pytest.approx(expected.p) and table.loc[0, "t"] == pytest.approx(expected.t)


@pytest.mark.parametrize(
    "settings_b, alone_b, reason",
    [
        (("cpu X", "cpu Y", "cpu X"), (True,) * 3, "timed on 2 settings: cpu X; cpu Y"),
        (("cpu X",) * 3, (True, False, True), "1 of 6 runs trained beside other training processes"),
    ],
)
def test_times_from_other_settings_or_beside_neighbours_give_no_verdict(settings_b, alone_b, reason):
    runs = _timed_runs(settings_b, alone_b)
    table = with_holm(
        compare_groups(runs, "arm", [("A", "B")], TIMED, timing_columns=("timing_setting", "timed_alone"))
    )
    time, accuracy = table.iloc[0], table.iloc[1]
    assert time["not_comparable"] == reason and time["verdict"] == f"not comparable: {reason}"
    assert np.isnan(time["p"]) and np.isnan(time["p_holm"]) and time["mean_a"] == pytest.approx(10.1)
    assert time["sentence"] == f"total time, A vs B: 10.1 s vs 12.1 s: not comparable ({reason}), no test."
    # accuracy does not depend on the machine: tested, and alone in the Holm family
    assert accuracy["not_comparable"] == "" and accuracy["p_holm"] == pytest.approx(accuracy["p"])


def _exact_line(x, y):
    """Slope, intercept and their standard errors in exact rational arithmetic (square roots to 40 digits)."""
    from decimal import Decimal, localcontext
    from fractions import Fraction

    xs, ys = [Fraction(float(v)) for v in x], [Fraction(float(v)) for v in y]
    n = len(xs)
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((v - x_mean) ** 2 for v in xs)
    slope = sum((a - x_mean) * (b - y_mean) for a, b in zip(xs, ys)) / sxx
    intercept = y_mean - slope * x_mean
    variance = sum((b - intercept - slope * a) ** 2 for a, b in zip(xs, ys)) / (n - 2)

    def root(value):
        with localcontext() as context:
            context.prec = 40
            return float((Decimal(value.numerator) / Decimal(value.denominator)).sqrt())

    return float(slope), float(intercept), root(variance / sxx), root(variance * (Fraction(1, n) + x_mean**2 / sxx))


@pytest.mark.parametrize("spread", [1000.0, 10.0, 1.0])
def test_linear_fit_keeps_its_digits_for_parameter_counts_with_a_small_spread(spread):
    """x of the order of 1e5 (parameter counts) varying by `spread`: the fit centres x, so slope, intercept
    and both standard errors agree with exact arithmetic to 1e-9 relative (uncentred QR lost about 7e-10 at
    spread 10, more below)."""
    rng = np.random.default_rng(3)
    x = 98234 + rng.uniform(-spread, spread, 30)
    y = 1e-3 * (x - 98234) / spread + rng.normal(0, 4e-4, 30)
    fit = linear_fit(x, y)
    assert 0.5 < fit.r2 < 0.8
    np.testing.assert_allclose(
        (fit.slope, fit.intercept, fit.slope_se, fit.intercept_se), _exact_line(x, y), rtol=1e-9, atol=0
    )
