"""Non-Python files shipped with the package (pom, broker config, logging config), rendered by token."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_TOKEN = re.compile(r"@[A-Z][A-Z0-9_]*@")


def render(name: str, **values: str) -> str:
    """The template with every ``@KEY@`` replaced; ``${...}`` is left alone because Maven owns that syntax."""
    text = resources.files("invmon.stack").joinpath("templates", name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", value)
    if leftover := _TOKEN.findall(text):
        raise ValueError(f"template {name}: no value for {sorted(set(leftover))}")
    return text


def write_if_changed(path: Path, text: str) -> bool:
    """Write only on change, so a warm start does not touch files a running service may be reading."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True
