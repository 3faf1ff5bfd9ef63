"""Operating-system packages the stack needs, installed with apt only when a binary is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from invmon.stack.procs import StackError, run
from invmon.stack.report import Reporter

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server bin dir (Debian keeps them off PATH, one per major)."""
    candidates = [
        path.parent
        for path in PG_ROOT.glob("*/bin/pg_ctl")
        if path.parent.parent.name.isdigit() and (path.parent / "initdb").exists()
    ]
    return max(candidates, key=lambda p: int(p.parent.name), default=None)


def redis_server_bin() -> str | None:
    return shutil.which("redis-server") or next(
        (str(p) for p in (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server")) if p.exists()), None
    )


def java_bin() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def missing_packages() -> list[str]:
    missing: list[str] = []
    if pg_bin_dir() is None:
        missing.append("postgresql")
    if redis_server_bin() is None:
        missing.append("redis-server")
    if java_bin() is None:
        missing.append("default-jre-headless")
    if shutil.which("mvn") is None:
        missing.append("maven")
    return missing


async def ensure_packages(reporter: Reporter) -> None:
    await apt_install(missing_packages(), missing_packages, reporter)


async def apt_install(missing: list[str], still_missing: Callable[[], list[str]], reporter: Reporter) -> None:
    """apt-get install `missing` (root only), then check with `still_missing` that it worked."""
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing packages {' '.join(missing)}; install them as root: "
            f"apt-get update && apt-get install -y {' '.join(missing)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with reporter.step("system", "apt-get update"):
        await run(["apt-get", "update"], env=env, what="apt-get update")
    with reporter.step("system", f"apt-get install {' '.join(missing)}"):
        await run(["apt-get", "install", "-y", *missing], env=env, what="apt-get")
    still = still_missing()
    if still:
        raise StackError(f"apt-get install finished but {' '.join(still)} is still missing")
