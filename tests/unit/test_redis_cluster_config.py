"""Which master the Sentinels' own config files name (they rewrite them after a failover): what `up` uses to
bring a node that died as master back as a replica instead of forcing it back."""

from __future__ import annotations

from pathlib import Path

from invmon.stack.paths import StackPaths
from invmon.stack.redis_cluster import cluster_dir, recorded_master


def sentinel_conf(paths: StackPaths, n: int, master_port: int) -> None:
    conf = cluster_dir(paths) / f"sentinel-{n}" / "sentinel.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        f"port 2638{n}\n"
        "sentinel monitor other 127.0.0.1 7000 2\n"
        f"sentinel monitor invmon 127.0.0.1 {master_port} 2\n"
        "sentinel down-after-milliseconds invmon 3000\n"
    )


def test_no_sentinel_yet_names_none(tmp_path: Path) -> None:
    assert recorded_master(StackPaths(tmp_path)) is None


def test_the_master_most_sentinels_name_wins(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    sentinel_conf(paths, 1, 6380)
    sentinel_conf(paths, 2, 6380)
    sentinel_conf(paths, 3, 6379)  # one that missed the failover
    assert recorded_master(paths) == 6380
    assert recorded_master(paths, "other") == 7000
