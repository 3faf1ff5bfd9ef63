"""The Kafka broker's jars, fetched from Maven Central into one folder with a throwaway POM.

There is no release tarball on Maven Central, only the artifacts; the published kafka_2.13 POM brings the
broker and its runtime dependencies but not the slf4j binding the tarball adds, so we add it ourselves:
log4j-slf4j-impl at the exact version of the log4j-core kafka pulls (4.x), or reload4j (3.x).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from invmon.stack.procs import StackError, run
from invmon.stack.rendering import render

COMPLETE_MARKER = ".complete"
_SLF4J_BINDINGS = (
    "log4j-slf4j-impl",
    "log4j-slf4j2-impl",
    "slf4j-reload4j",
    "slf4j-log4j12",
    "logback-classic",
)


@dataclass(frozen=True, slots=True)
class KafkaDist:
    version: str
    libs: Path

    @property
    def major(self) -> int:
        head = self.version.split(".", 1)[0]
        if not head.isdigit():
            raise StackError(f"kafka_version {self.version!r} is not a release version")
        return int(head)

    @property
    def uses_log4j2(self) -> bool:
        return self.major >= 4

    @property
    def complete(self) -> bool:
        return (self.libs / COMPLETE_MARKER).exists()

    @property
    def classpath(self) -> str:
        # Java expands the trailing star itself; the string goes to exec unquoted by any shell.
        return f"{self.libs}/*"


async def fetch(dist: KafkaDist, workdir: Path) -> str:
    """Download (or copy from ~/.m2) every runtime jar into dist.libs; return a short outcome text."""
    staging = _prepare(dist, workdir)
    mvn = ["mvn", "-q", "-B", "-f", str(workdir / "pom.xml")]
    copy = ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    if dist.uses_log4j2:
        log4j_version = await _log4j_core_version(mvn, workdir)
        await run(
            [*mvn, "-Plog4j2-binding", f"-Dlog4j.version={log4j_version}", *copy],
            what="mvn copy-dependencies",
        )
    else:
        await run([*mvn, "-Preload4j-binding", *copy], what="mvn copy-dependencies")
    return _install(dist, staging)


def _prepare(dist: KafkaDist, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pom.xml").write_text(render("pom.xml", kafka_version=dist.version))
    staging = dist.libs.with_name(dist.libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _install(dist: KafkaDist, staging: Path) -> str:
    outcome = _verify(dist, staging)
    shutil.rmtree(dist.libs, ignore_errors=True)
    staging.rename(dist.libs)
    # Written last: a folder without the marker is an interrupted download and is fetched again.
    (dist.libs / COMPLETE_MARKER).write_text(outcome + "\n")
    return outcome


async def _log4j_core_version(mvn: list[str], workdir: Path) -> str:
    listing = workdir / "dependencies.txt"
    await run(
        [*mvn, "dependency:list", "-DincludeScope=runtime", f"-DoutputFile={listing}"],
        what="mvn dependency:list",
    )
    versions = set(re.findall(r"org\.apache\.logging\.log4j:log4j-core:jar:([^:\s]+)", listing.read_text()))
    if len(versions) != 1:
        raise StackError(
            f"expected one log4j-core version among kafka's dependencies, found {sorted(versions)}"
        )
    return str(versions.pop())


def _verify(dist: KafkaDist, libs: Path) -> str:
    jars = sorted(p.name for p in libs.glob("*.jar"))
    if f"kafka_2.13-{dist.version}.jar" not in jars:
        raise StackError(f"kafka_2.13-{dist.version}.jar missing from {libs}")
    bindings = [j for j in jars if j.startswith(_SLF4J_BINDINGS)]
    if len(bindings) != 1:
        raise StackError(f"expected exactly one slf4j binding in {libs}, found {bindings}")
    if dist.uses_log4j2:
        cores = [j for j in jars if j.startswith("log4j-core-")]
        if len(cores) != 1:
            raise StackError(f"expected exactly one log4j-core jar in {libs}, found {cores}")
        core_version = cores[0].removeprefix("log4j-core-").removesuffix(".jar")
        if bindings[0] != f"log4j-slf4j-impl-{core_version}.jar":
            raise StackError(f"binding {bindings[0]} does not match {cores[0]}")
        return f"{len(jars)} jars, {cores[0]}, {bindings[0]}"
    return f"{len(jars)} jars, {bindings[0]}"
