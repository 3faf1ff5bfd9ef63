"""One bench stack per stack profile, and a benchmark run on several profiles in one invocation.

    python -m bench.stock_throughput --profiles run,test [--profile-rounds 2] [its own options]
    python -m bench.live_e2e --profiles run,test [--profile-rounds 2] [its own options]

The `run` profile is what users run (PostgreSQL fsync and synchronous commit on, Redis persisted); `test`
trades durability for speed. The `run` stack is the one the environment names (INVMON_STACK_DIR and the
ports of INVMON_KAFKA_BOOTSTRAP, INVMON_KAFKA_CONTROLLER_PORT, INVMON_DATABASE_URL, INVMON_REDIS_URL); the
`test` stack lives in `<INVMON_STACK_DIR>-test` on the same ports + 500. Each stack is brought up and
migrated if needed (`invmon stack up`, `invmon db upgrade`), then the benchmark runs as a child process
once per profile and round, alternating (run, test, run, test, ...), so that the box's changing load falls
on both; the stacks stay up (`invmon stack down` with the same environment stops them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PROFILES = ("run", "test")
PORT_SHIFT = {"run": 0, "test": 500}
PORTED = ("INVMON_KAFKA_BOOTSTRAP", "INVMON_KAFKA_CONTROLLER_PORT", "INVMON_DATABASE_URL", "INVMON_REDIS_URL")
Figure = Callable[[dict[str, Any]], float]


def default_stack(stack_dir: object) -> bool:
    """Whether `stack_dir` is a developer's own stack (`.stack`) or the test suite's (`.stack-test`),
    which a benchmark must not wipe unless told to (--force)."""
    return Path(str(stack_dir)).name in (".stack", ".stack-test")


def _shift(value: str, by: int) -> str:
    """The port in a URL, host:port or bare port, moved by `by`."""
    if value.isdigit():
        return str(int(value) + by)
    return re.sub(r":(\d+)(?=/|$)", lambda m: f":{int(m.group(1)) + by}", value, count=1)


def stack_env(profile: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the bench stack of `profile`, derived from the `run` stack's environment."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    env = dict(os.environ if base is None else base)
    stack_dir = env.get("INVMON_STACK_DIR", "")
    if stack_dir.rstrip("/") in ("", ".stack", ".stack-test"):
        raise SystemExit("set INVMON_STACK_DIR to a bench stack of your own (and its ports)")
    missing = [name for name in PORTED if name not in env]
    if missing:
        raise SystemExit(f"set {', '.join(missing)}: both stacks' ports derive from them")
    shift = PORT_SHIFT[profile]
    env.update({name: _shift(env[name], shift) for name in PORTED})
    env["INVMON_STACK_PROFILE"] = profile
    env["INVMON_STACK_DIR"] = stack_dir.rstrip("/") + ("" if shift == 0 else f"-{profile}")
    env.setdefault("INVMON_ENVIRONMENT", "local")  # a bench box: the local-only JWT key will do
    return env


def ensure_stack(env: Mapping[str, str]) -> None:
    """Bring the stack of `env` up (a no-op when it runs) and migrate it to head."""
    invmon = str(Path(sys.executable).with_name("invmon"))
    for command in ([invmon, "stack", "up"], [invmon, "db", "upgrade"]):
        done = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[1:])} failed:\n{done.stdout}{done.stderr}")


def without(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """argv without `options` and their values (`--opt value` or `--opt=value`)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not any(arg.startswith(f"{o}=") for o in options):
            out.append(arg)
    return out


def parse_profiles(text: str) -> list[str]:
    profiles = [p.strip() for p in text.split(",") if p.strip()]
    for p in profiles:
        if p not in PROFILES:
            raise SystemExit(f"unknown profile {p!r}; one of {', '.join(PROFILES)}")
    return profiles


def run_profiles(
    module: str,
    argv: Sequence[str],
    profiles: Sequence[str],
    rounds: int,
    figures: Mapping[str, Figure],
    json_path: str | None = None,
) -> int:
    """Run `python -m module argv --json ...` on each profile's stack, `rounds` times alternating; print
    each run's own report, then the median of each figure per profile and the ratio of the first profile
    to each other one."""
    envs = {p: stack_env(p) for p in profiles}
    for profile, env in envs.items():
        print(
            f"stack {profile}: {env['INVMON_STACK_DIR']} (kafka {env['INVMON_KAFKA_BOOTSTRAP']})", flush=True
        )
        ensure_stack(env)
    child_argv = without(argv, ("--profiles", "--profile-rounds", "--json"))
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in profiles}
    failed = 0
    out_dir = Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    for round_no in range(1, rounds + 1):
        for profile in profiles:
            path = out_dir / f"{profile}-{round_no}.json"
            print(f"\n===== {module} on profile {profile}, round {round_no} of {rounds} =====", flush=True)
            done = subprocess.run(
                [sys.executable, "-m", module, *child_argv, "--json", str(path)],
                env=envs[profile],
                check=False,
            )
            failed += done.returncode != 0
            if path.exists():
                results[profile].append(json.loads(path.read_text()))
    summary = summarize(results, figures)
    print("\n" + "\n".join(summary_lines(summary, profiles)))
    if json_path:
        Path(json_path).write_text(json.dumps({"runs": results, "summary": summary}, indent=2, default=str))
    return 1 if failed else 0


def _figure(run: dict[str, Any], get: Figure) -> float | None:
    try:
        return float(get(run))
    except (KeyError, TypeError, ZeroDivisionError, ValueError):
        return None


def summarize(
    results: Mapping[str, Sequence[dict[str, Any]]], figures: Mapping[str, Figure]
) -> dict[str, dict[str, Any]]:
    """Per figure: each profile's values, their median, and the first profile's median / each other's."""
    out: dict[str, dict[str, Any]] = {}
    profiles = list(results)
    for name, get in figures.items():
        values = {p: [v for r in results[p] if (v := _figure(r, get)) is not None] for p in profiles}
        medians = {p: statistics.median(v) if v else None for p, v in values.items()}
        first = medians[profiles[0]] if profiles else None
        ratios = {
            f"{profiles[0]}/{p}": (first / m if first is not None and m else None) for p, m in medians.items()
        }
        ratios.pop(f"{profiles[0]}/{profiles[0]}", None)
        out[name] = {"values": values, "median": medians, "ratio": ratios}
    return out


def summary_lines(summary: Mapping[str, dict[str, Any]], profiles: Sequence[str]) -> list[str]:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f}"

    head = ["figure", *[f"{p} (median; runs)" for p in profiles], "ratio"]
    rows = [head]
    for name, one in summary.items():
        rows.append(
            [
                name,
                *[
                    f"{fmt(one['median'][p])}; " + ", ".join(fmt(v) for v in one["values"][p])
                    for p in profiles
                ],
                ", ".join(f"{k} {fmt(v)}" for k, v in one["ratio"].items()),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"by profile ({', '.join(profiles)}), alternating runs:"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """`--profiles` and `--profile-rounds`, the same on every benchmark that runs on both profiles."""
    parser.add_argument("--profiles", help="stack profiles to run on, alternating, e.g. run,test")
    parser.add_argument("--profile-rounds", type=int, default=1, help="with --profiles: runs per profile")


def run_profiles_if_asked(module: str, args: argparse.Namespace, figures: Mapping[str, Figure]) -> None:
    """With --profiles: run `module` on each profile (this process only drives) and exit with its status."""
    if args.profiles:
        sys.exit(
            run_profiles(
                module, sys.argv[1:], parse_profiles(args.profiles), args.profile_rounds, figures, args.json
            )
        )
