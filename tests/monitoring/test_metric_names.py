"""Every metric the Grafana dashboard and the alert rules query is one the processes export: the modules of
each Procfile process are imported and prometheus_client's registry read (a histogram's _bucket, _sum and
_count series count, a counter's _total). A renamed metric breaks this test, not a dashboard at 3 a.m."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.processes import procfile

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
METRIC = re.compile(r"\binvmon_[a-z0-9_]+\b")
# Prometheus's own series about each scrape.
BUILTIN = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported() -> set[str]:
    for command in procfile().values():
        importlib.import_module(command.split()[-1])
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [expr for key, value in node.items() for expr in ([value] if key == "expr" else _exprs(value))]
    if isinstance(node, list):
        return [expr for item in node for expr in _exprs(item)]
    return []


def queried() -> dict[str, set[str]]:
    """Metric name -> the files that query it."""
    found: dict[str, set[str]] = {}
    sources = [(path, json.loads(path.read_text())) for path in DASHBOARDS]
    sources += [(path, yaml.safe_load(path.read_text())) for path in RULE_FILES]
    for path, document in sources:
        for expr in _exprs(document):
            for name in METRIC.findall(str(expr)):
                found.setdefault(name, set()).add(path.name)
    return found


def test_dashboard_and_rules_query_metrics() -> None:
    names = queried()
    for path in [*DASHBOARDS, *RULE_FILES]:
        assert any(path.name in files for files in names.values()), f"{path.name} queries no invmon_ metric"


def test_every_queried_metric_is_exported() -> None:
    available = exported() | BUILTIN
    unknown = {name: sorted(files) for name, files in queried().items() if name not in available}
    assert not unknown, f"queried but exported by no process: {unknown}"


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
