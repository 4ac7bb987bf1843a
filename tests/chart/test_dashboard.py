"""The Grafana dashboard queries only series the daemon really exports.

The reference is a live exposition: ``scheduler.runtime.metrics.Metrics()`` with one sample in every
family, rendered by ``prometheus_client.generate_latest`` exactly as the daemon serves
``/metrics``, checked by ``promtool check metrics``. Every PromQL expression of every panel and
template variable is parsed (metric names, functions, label matchers, grouping labels), each name
and label checked against that exposition, and all expressions are compiled by promtool.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import exposition, parser
from prometheus_client import metrics as prom_metrics

from scheduler.devtools import devcluster
from scheduler.runtime import metrics as metrics_mod

from .chart_helpers import CHART

DASHBOARD = CHART / "dashboards" / "wfsched.json"

# Labels Prometheus adds at scrape time (target labels of a Service/Pod scrape).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
# Values the dashboard's template variables stand for, when expressions are compiled.
VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$job": ".*", "${datasource}": ""}

AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
KEYWORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
RANGE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}


# --- the live exposition ------------------------------------------------------------------------


@dataclass
class Exposition:
    """Sample names of one exposition with their family type, label names and label values."""

    text: str
    family_type: dict[str, str] = field(default_factory=dict)
    labels: dict[str, set[str]] = field(default_factory=dict)
    pairs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


def _touch_every_family(m: metrics_mod.Metrics) -> None:
    """Give every metric of ``m`` one sample, so labelled families have a series too."""
    for value in vars(m).values():
        if not isinstance(value, prom_metrics.MetricWrapperBase):
            continue
        names = value._labelnames
        child = value.labels(*[f"test_{n}" for n in names]) if names else value
        if isinstance(child, prom_metrics.Counter):
            child.inc()
        elif isinstance(child, prom_metrics.Histogram):
            child.observe(1.0)
        elif isinstance(child, prom_metrics.Gauge):
            child.set(1)
        elif isinstance(child, prom_metrics.Info):
            pass  # set once at construction
        else:
            raise AssertionError(f"unhandled metric type {type(child).__name__}")


@pytest.fixture(scope="module")
def live() -> Exposition:
    m = metrics_mod.Metrics()
    _touch_every_family(m)
    text = exposition.generate_latest(m.registry).decode()
    expo = Exposition(text=text)
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            expo.family_type[sample.name] = family.type
            expo.labels.setdefault(sample.name, set()).update(sample.labels)
            expo.pairs.setdefault(sample.name, set()).update(sample.labels.items())
    return expo


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return devcluster.locate_binaries(["promtool"], build_missing=False)["promtool"]
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_every_metric_family_got_a_sample(live: Exposition) -> None:
    families = {
        v._name
        for v in vars(metrics_mod.Metrics()).values()
        if isinstance(v, prom_metrics.MetricWrapperBase)
    }
    assert len(families) >= 15
    for name in families:
        assert any(s == name or s.startswith(name + "_") for s in live.family_type), name
    assert "wfsched_schedule_attempts_total" in live.family_type
    assert "wfsched_memory_prediction_ratio_bucket" in live.family_type
    assert "wfsched_build_info" in live.family_type


def test_promtool_finds_the_exposition_clean(live: Exposition, promtool: Path) -> None:
    proc = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=live.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


# --- PromQL parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """One metric name in an expression, with its matchers and the functions around it."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]
    functions: tuple[str, ...]


@dataclass
class Query:
    """What one expression refers to."""

    expr: str
    where: str
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_TOKEN = re.compile(
    r"(?P<braces>\{[^{}]*\})|(?P<range>\[[^\[\]]*\])|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(?P<open>\()|(?P<close>\))"
    r"|(?P<other>[^\s])|\s+"
)


def parse_promql(expr: str, where: str) -> Query:
    """Extract metric selectors and grouping labels from a PromQL expression."""
    query = Query(expr=expr, where=where)
    tokens = [
        (m.lastgroup, m.group())
        for m in _TOKEN.finditer(expr.replace("$__rate_interval", "5m"))
        if m.lastgroup
    ]
    stack: list[str] = []  # enclosing calls, "" for plain parentheses
    pending = ""  # an aggregation whose parenthesis follows its grouping: sum by (x) (...)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt_kind = tokens[i + 1][0] if i + 1 < len(tokens) else None
        if kind == "ident" and text in GROUPING and nxt_kind == "open":
            j = i + 2
            while tokens[j][0] != "close":
                if tokens[j][0] == "ident":
                    query.grouping.add(tokens[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and nxt_kind == "open":
            stack.append(text)
            i += 2
            continue
        if kind == "ident" and text in AGGREGATIONS:
            pending = text
        elif kind == "ident" and text not in KEYWORDS | GROUPING:
            matchers: tuple[tuple[str, str, str], ...] = ()
            if nxt_kind == "braces":
                matchers = tuple(
                    (name, op, json.loads(value))
                    for name, op, value in _MATCHER.findall(tokens[i + 1][1])
                )
            query.selectors.append(Selector(text, matchers, tuple(f for f in stack if f)))
        elif kind == "braces" and (i == 0 or tokens[i - 1][0] != "ident"):
            raise AssertionError(f"{where}: selector without a metric name: {expr}")
        elif kind == "open":
            stack.append(pending)
            pending = ""
        elif kind == "close":
            stack.pop()
        i += 1
    assert not stack, f"{where}: unbalanced parentheses: {expr}"
    return query


def test_parser_on_known_expressions() -> None:
    q = parse_promql(
        'histogram_quantile(0.9, sum by (le, predictor) (rate(a_bucket{x="1", le=~"$v"}'
        "[$__rate_interval]))) / sum without (pod) (b_total) + on (job) group_left c",
        "t",
    )
    assert [(s.metric, s.functions) for s in q.selectors] == [
        ("a_bucket", ("histogram_quantile", "sum", "rate")),
        ("b_total", ("sum",)),
        ("c", ()),
    ]
    assert q.selectors[0].matchers == (("x", "=", "1"), ("le", "=~", "$v"))
    assert q.grouping == {"le", "predictor", "pod", "job"}


# --- the dashboard ------------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries: list[Query] = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            queries.append(parse_promql(target["expr"], where))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        text = variable["query"]["query"]
        found = re.fullmatch(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)", text)
        assert found, f"variable {variable['name']}: unsupported query {text}"
        query = parse_promql(found.group(1), f"variable {variable['name']}")
        query.grouping.add(found.group(2))
        queries.append(query)
        assert variable["definition"] == text
    return queries


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "wfsched" and dashboard["title"] == "wfsched"
    assert dashboard["id"] is None  # provisioned dashboards must not carry a database id
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["description"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"datasource", "namespace", "job"}


def test_every_query_uses_only_exported_series(live: Exposition) -> None:
    problems: list[str] = []
    for query in dashboard_queries():
        assert query.selectors, f"{query.where}: no metric in {query.expr}"
        for sel in query.selectors:
            if sel.metric not in live.family_type:
                problems.append(f"{query.where}: {sel.metric} is not exported")
    assert not problems, "\n".join(problems)


def test_every_label_exists_on_its_series(live: Exposition) -> None:
    problems: list[str] = []
    for query in dashboard_queries():
        known = set(TARGET_LABELS)
        for sel in query.selectors:
            known |= live.labels.get(sel.metric, set())
        for label in sorted(query.grouping - known):
            problems.append(f"{query.where}: groups by unknown label {label!r}")
        for sel in query.selectors:
            series_labels = live.labels.get(sel.metric, set()) | TARGET_LABELS
            for label, op, value in sel.matchers:
                if label not in series_labels:
                    problems.append(f"{query.where}: {sel.metric} has no label {label!r}")
                elif op == "=" and "$" not in value and label not in TARGET_LABELS:
                    # Fixed values must be ones the daemon emits (a bucket bound, a result).
                    if label == "le":
                        ok = (label, value) in live.pairs[sel.metric]
                    else:
                        ok = value in _label_values(sel.metric, label)
                    if not ok:
                        problems.append(f"{query.where}: {sel.metric}{{{label}={value!r}}}")
    assert not problems, "\n".join(problems)


def _label_values(metric: str, label: str) -> set[str]:
    """Values a fresh daemon already exports for ``label`` of ``metric`` (pre-initialised)."""
    return {
        sample.labels[label]
        for family in metrics_mod.Metrics().registry.collect()
        for sample in family.samples
        if sample.name == metric and label in sample.labels
    }


def test_functions_fit_the_metric_types(live: Exposition) -> None:
    problems: list[str] = []
    for query in dashboard_queries():
        for sel in query.selectors:
            kind = live.family_type.get(sel.metric)
            funcs = set(sel.functions)
            if funcs & COUNTER_FUNCTIONS and kind not in ("counter", "histogram"):
                problems.append(f"{query.where}: rate/increase over {kind} {sel.metric}")
            if kind in ("counter", "histogram") and not funcs & RANGE_FUNCTIONS:
                problems.append(f"{query.where}: raw cumulative {sel.metric} without rate()")
            if "histogram_quantile" in funcs:
                if not sel.metric.endswith("_bucket"):
                    problems.append(f"{query.where}: histogram_quantile over {sel.metric}")
                if "le" not in query.grouping:
                    problems.append(f"{query.where}: histogram_quantile without `by (le)`")
    assert not problems, "\n".join(problems)


def test_dashboard_covers_the_operational_questions() -> None:
    used = {sel.metric for q in dashboard_queries() for sel in q.selectors}
    for metric in (
        "wfsched_pending_tasks",
        "wfsched_schedule_attempts_total",
        "wfsched_pod_scheduling_duration_seconds_bucket",
        "wfsched_scheduling_cycle_duration_seconds_bucket",
        "wfsched_pod_stage_duration_seconds_bucket",
        "wfsched_bind_errors_total",
        "wfsched_memory_prediction_ratio_bucket",
        "wfsched_memory_wasted_byte_seconds_total",
        "wfsched_resize_requests_total",
        "wfsched_memory_grows_total",
        "wfsched_memory_shrinks_total",
        "wfsched_leader",
        "wfsched_build_info",
    ):
        assert metric in used, metric
    quantiles = [q for q in dashboard_queries() if "histogram_quantile" in q.expr]
    assert {s.metric for q in quantiles for s in q.selectors} >= {
        "wfsched_pod_scheduling_duration_seconds_bucket",
        "wfsched_scheduling_cycle_duration_seconds_bucket",
    }


def test_promtool_compiles_every_expression(promtool: Path, tmp_path: Path) -> None:
    rules = []
    for n, query in enumerate(dashboard_queries()):
        expr = query.expr
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"wfsched:dashboard:expr{n}", "expr": expr})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
