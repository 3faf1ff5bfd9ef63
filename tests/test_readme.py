"""The README documents what the code has: every setting, the two commands, every process."""

from __future__ import annotations

import re
from pathlib import Path

from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def fenced_lines(text: str) -> set[str]:
    """Every line inside a fenced code block, stripped."""
    return {line.strip() for block in FENCE.findall(text) for line in block.splitlines()}


def test_every_setting_is_documented() -> None:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    text = readme()
    missing = [f"{prefix}{name}".upper() for name in Settings.model_fields]
    missing = [var for var in missing if var not in text]
    assert not missing, f"README.md does not document these settings: {', '.join(missing)}"


def test_readme_commands_are_fenced_and_ci_runs_the_test_command() -> None:
    lines = fenced_lines(readme())
    missing = [cmd for cmd in ("./dev up", "./dev test") if cmd not in lines]
    assert not missing, f"README.md has no fenced code block with the line(s): {', '.join(missing)}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = {line.strip() for line in ci.splitlines()}
    assert "./dev test" in ci_lines, ".ci/run does not run the README's test command `./dev test`"


def test_every_procfile_process_is_documented() -> None:
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8")
    names = [line.split(":", 1)[0].strip() for line in procfile.splitlines() if ":" in line]
    names = [n for n in names if n and not n.startswith("#")]
    assert names, "Procfile names no process"
    text = readme()
    missing = [name for name in names if name not in text]
    assert not missing, f"README.md does not mention these Procfile processes: {', '.join(missing)}"
