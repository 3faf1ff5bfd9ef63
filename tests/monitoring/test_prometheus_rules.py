"""deploy/prometheus: promtool validates the config and the rules and runs their unit tests; every alert has
a test case that fires it, a severity, a summary, a description and a runbook section in docs/alerts.md.
promtool comes from Debian's prometheus package (./dev test installs it): a missing promtool fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTS_DOC = ROOT / "docs" / "alerts.md"
JOBS = {"edge", "stock_worker", "price_worker", "outbox_relay", "notifier", "live_relay"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        pytest.fail("promtool not found: install Debian's prometheus package (./dev test does)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(rule for rule in group["rules"] if "alert" in rule)
    return found


def test_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_scrapes_every_process() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS


def test_rules_are_valid() -> None:
    assert RULE_FILES
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_it() -> None:
    fired: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    missing = sorted({rule["alert"] for rule in alerts()} - fired)
    assert not missing, f"alerts no promtool test case fires: {missing}"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_documented(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook"):
        assert annotations.get(key), f"{rule['alert']} lacks the {key} annotation"
    anchor = annotations["runbook"].removeprefix("docs/alerts.md#")
    headings = re.findall(r"^## (\S+)", ALERTS_DOC.read_text(), flags=re.MULTILINE)
    assert anchor == rule["alert"].lower(), f"runbook link {annotations['runbook']} does not name the alert"
    assert rule["alert"] in headings, f"docs/alerts.md has no `## {rule['alert']}` runbook section"
