"""Every metric the Grafana dashboard and the alert rules query is one the processes export, and every label
they select or group by is one of its labels: each Procfile process's entry module is imported (in a child
interpreter, by invmon.metrics_docs, as the metrics catalogue is made) and its prometheus_client registry
read; a histogram's _bucket, _sum and _count series count, a counter's _total. A renamed metric or label
breaks this test, not a dashboard at 3 a.m."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from invmon.metrics_docs import collect

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
METRIC = re.compile(r"\binvmon_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(invmon_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
# Prometheus's own series about each scrape, and the labels it adds (le: a histogram's buckets).
BUILTIN = {"up"}
TARGET_LABELS = {"job", "instance"}
SERIES = {"histogram": ("_bucket", "_sum", "_count")}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the processes export -> its labels."""
    series: dict[str, set[str]] = {}
    for doc in collect():
        for suffix in SERIES.get(doc.type, ("",)):
            labels = set(doc.labels) | ({"le"} if suffix == "_bucket" else set())
            series.setdefault(doc.name + suffix, set()).update(labels)
    return series


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [expr for key, value in node.items() for expr in ([value] if key == "expr" else _exprs(value))]
    if isinstance(node, list):
        return [expr for item in node for expr in _exprs(item)]
    return []


def _sources() -> list[tuple[Path, Any]]:
    sources = [(path, json.loads(path.read_text())) for path in DASHBOARDS]
    return sources + [(path, yaml.safe_load(path.read_text())) for path in RULE_FILES]


def all_exprs() -> list[str]:
    return [str(expr) for _, document in _sources() for expr in _exprs(document)]


def queried() -> dict[str, set[str]]:
    """Metric name -> the files that query it."""
    found: dict[str, set[str]] = {}
    for path, document in _sources():
        for expr in _exprs(document):
            for name in METRIC.findall(str(expr)):
                found.setdefault(name, set()).add(path.name)
    return found


def test_dashboard_and_rules_query_metrics() -> None:
    names = queried()
    for path in [*DASHBOARDS, *RULE_FILES]:
        assert any(path.name in files for files in names.values()), f"{path.name} queries no invmon_ metric"


def test_every_queried_metric_is_exported(exported: dict[str, set[str]]) -> None:
    available = set(exported) | BUILTIN
    unknown = {name: sorted(files) for name, files in queried().items() if name not in available}
    assert not unknown, f"queried but exported by no process: {unknown}"


def test_every_selected_or_grouped_label_exists(exported: dict[str, set[str]]) -> None:
    wrong: list[str] = []
    for expr in all_exprs():
        for name, matchers in SELECTOR.findall(expr):
            for label in set(MATCHER.findall(matchers)) - exported.get(name, set()) - TARGET_LABELS:
                wrong.append(f"{name} has no label {label!r}: {expr}")
        # A `by (...)` label must belong to some metric of the same expression.
        labels = set().union(*(exported.get(name, set()) for name in METRIC.findall(expr))) | TARGET_LABELS
        for grouping in BY.findall(expr):
            for label in {part.strip() for part in grouping.split(",")} - labels - {""}:
                wrong.append(f"no metric of the expression has label {label!r}: {expr}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_the_datasource_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        fixed = f"panel {panel['title']!r} has a fixed datasource"
        assert panel["datasource"]["uid"] == "${datasource}", fixed
        assert panel["targets"], f"panel {panel['title']!r} has no query"
