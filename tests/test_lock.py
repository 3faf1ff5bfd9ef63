"""The lock files against pyproject.toml and the Dockerfile (no network): every dependency is pinned with
hashes, the runtime lock agrees with the full one, and the image installs from the runtime lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)
NAME = re.compile(r"^[A-Za-z0-9_.-]+")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {_norm(name): version for name, version in PIN.findall(text)}


def _requirements(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(s for e in extras for s in project["optional-dependencies"][e])]
    return {_norm(m[0]) for spec in specs if (m := NAME.match(spec))}


def test_every_dependency_and_test_extra_is_pinned_with_hashes() -> None:
    pins = _pins("requirements.lock")
    assert not _requirements("test") - pins.keys()
    text = (ROOT / "requirements.lock").read_text()
    assert all("--hash=sha256:" in block for block in re.split(r"\n(?=\S)", text) if PIN.match(block))


def test_the_runtime_lock_pins_the_same_versions_without_the_test_tools() -> None:
    full, runtime = _pins("requirements.lock"), _pins("requirements-runtime.lock")
    assert not _requirements() - runtime.keys()
    assert {name: full.get(name) for name in runtime} == runtime
    assert "pytest" not in runtime
    assert "mypy" not in runtime


def test_the_image_installs_the_runtime_lock_with_hashes_and_nothing_else() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements-runtime.lock" in dockerfile
    installs = re.findall(r"pip install [^\n\\&]*", dockerfile)
    assert all("--require-hashes" in cmd or "--no-deps" in cmd for cmd in installs), installs
