"""The PromQL check the dashboard and alert tests rely on: it reads metric names right and refuses broken queries."""

from __future__ import annotations

import pytest
from tests.chart.promql import check, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (status) (rate(a_total{route="/{code}", job=~"x|y"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le, operation) (rate(b_bucket{outcome='ok'}[5m])))", {"b_bucket"}),
        ("sum by (tier) (rate(c_total[1m])) / ignoring (tier) group_left sum(rate(c_total[1m]))", {"c_total"}),
        ("sum(rate(d_sum[5m])) by (le) / sum(rate(e_count[5m])) without (pod)", {"d_sum", "e_count"}),
        ("max by (shard) (f_lag) > bool 10 and on (shard) g offset 1h", {"f_lag", "g"}),
        ('sum(h) * 1e3 + count(i{a="rate(j)"})', {"h", "i"}),
        ("k:recorded:rate5m", {"k:recorded:rate5m"}),
    ],
)
def test_metric_names_are_read_out_of_promql_not_functions_labels_or_numbers(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    [
        'sum by (status) (rate(a_total{route="/{code}", status=~"5.."}[5m])) / sum(rate(a_total[5m])) > 0.01',
        "max by (shard) (b) > 10000",
        "(sum by (pod) (rate(c[10m])) < 0.5) and on (pod) sum by (pod) (rate(c[10m])) > 1",
        'max by (s) (d{s="CLICKS"}) / max by (s) (e{s="CLICKS"} > 0) > 0.8',
        "histogram_quantile(0.99, sum by (le) (rate(f_bucket[$__rate_interval])))",
        "sum(increase(g_total[15m])) > 0 unless h offset 1h",
        "max_over_time(i[1h:5m]) * 1e3",
        "a / ignoring (tier) group_left sum(b)",
    ],
)
def test_check_accepts_valid_promql(expr: str) -> None:
    check(expr)


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("sum(rate(a[5m])", "unclosed"),
        ("sum(rate(a[5m])))", "unbalanced"),
        ("sum(rate(a[5m)])", "unbalanced"),
        ("rates(a[5m])", "unknown function 'rates'"),
        ("rate(a[5 minutes])", "bad range"),
        ("rate(a[5m]", "unclosed"),
        ('a{job="x" route="y"}', "bad label matcher"),
        ("a{job=x}", "bad label matcher"),
        ('a{job=~"(unclosed"}', "missing"),
        ("a = 1", "operator '='"),
        ("sum by shard (a)", "without a label list"),
        ("a > 1; drop", "unexpected"),
        ("", "empty"),
    ],
)
def test_check_refuses_broken_promql(expr: str, error: str) -> None:
    with pytest.raises(Exception, match=error):
        check(expr)
