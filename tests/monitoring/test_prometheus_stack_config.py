"""The config `invmon stack up --with-prometheus` writes is deploy/prometheus/prometheus.yml pointed at this
machine: valid for promtool, every job at 127.0.0.1 and the port of the settings, the deploy rules loaded.
And the deploy file's own targets use the default ports of the settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infra.settings import Settings
from invmon.stack.prometheus import DEPLOY, render_config, scrape_ports
from tests.monitoring.test_prometheus_rules import promtool


def _targets(config: str) -> dict[str, str]:
    parsed = yaml.safe_load(config)
    return {job["job_name"]: job["static_configs"][0]["targets"][0] for job in parsed["scrape_configs"]}


def test_deploy_targets_use_the_default_ports() -> None:
    # model_construct: the field defaults, not this shell's INVMON_* ports.
    defaults = scrape_ports(Settings.model_construct())
    targets = _targets((DEPLOY / "prometheus.yml").read_text())
    assert targets == {job: f"{job}:{port}" for job, port in defaults.items()}


def test_rendered_config_points_at_the_settings_ports(tmp_path: Path) -> None:
    settings = Settings(edge_port=18000, edge_metrics_port=18009, stock_worker_port=18101, live_port=18001)
    config = render_config(settings)
    assert _targets(config) == {job: f"127.0.0.1:{port}" for job, port in scrape_ports(settings).items()}
    assert _targets(config)["edge"] == "127.0.0.1:18009"
    rules = yaml.safe_load(config)["rule_files"]
    assert rules == [str((DEPLOY / "rules").resolve() / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout), result.stdout


def test_rules_dir_setting_replaces_the_deploy_rules(tmp_path: Path) -> None:
    config = render_config(Settings(prometheus_rules_dir=tmp_path))
    assert yaml.safe_load(config)["rule_files"] == [str(tmp_path / "*.yml")]
