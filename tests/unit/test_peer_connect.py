"""bench.peer_connect's pure parts: the peer's records and issue 20's ratios (the bench is never in CI)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench import load
from bench.peer_connect import Figures, partition_of, peer_ratios, peer_records


def test_records_carry_the_struct_key_and_each_partitions_own_sequence() -> None:
    generated = load.generate(2_000, 50, seed=3, bad_per_mille=5.0)
    valid = [(k, v) for k, v in generated.records if k != b"WRONG-KEY" and b"command_id" in v]

    records, left_out = peer_records(generated.records, 6)

    assert left_out == generated.bad > 0
    assert len(records) == len(valid) == generated.valid
    per_partition: Counter[int] = Counter()
    for (key, _), (peer_key, peer_value) in zip(valid, records, strict=True):
        schema_key, value = json.loads(peer_key), json.loads(peer_value)
        assert schema_key["schema"]["type"] == "struct"
        assert schema_key["payload"] == {"sku": key.decode()}
        payload = value["payload"]
        # The partition the producer picks for the plain SKU key, as the stock worker's records have it.
        assert payload["kafka_partition"] == partition_of(key, 6)
        assert payload["partition_seq"] == per_partition[payload["kafka_partition"]]
        per_partition[payload["kafka_partition"]] += 1
        assert [f["field"] for f in value["schema"]["fields"]] == list(payload)


def test_each_valid_command_becomes_one_record_with_its_fields() -> None:
    generated = load.generate(500, 10, seed=1, bad_per_mille=0.0)
    records, left_out = peer_records(generated.records, 3)

    assert left_out == 0
    for (key, value), (peer_key, peer_value) in zip(generated.records, records, strict=True):
        command = json.loads(value)
        payload = json.loads(peer_value)["payload"]
        assert json.loads(peer_key)["payload"] == {"sku": key.decode()}
        assert payload["command_type"] == command["type"]
        assert payload["command_id"] == command["command_id"]
        assert payload["quantity"] == command.get("quantity")
        assert payload["delta"] == command.get("delta")
        assert isinstance(payload["issued_at"], int)


def test_records_the_stock_worker_dead_letters_are_left_out() -> None:
    good = load.generate(1, 1, seed=1, bad_per_mille=0.0).records[0]
    bad = [(b"X", b"{not json"), (b"WRONG-KEY", good[1]), (good[0], b'{"type": "receive_stock"}')]

    records, left_out = peer_records([*bad, good], 6)

    assert left_out == 3
    assert len(records) == 1
    assert json.loads(records[0][1])["payload"]["partition_seq"] == 0


def test_partition_matches_the_java_client_murmur2() -> None:
    # Kafka's UtilsTest.testMurmur2 vectors; Java's toPositive is `& 0x7fffffff`.
    assert partition_of(b"21", 1_000) == (-973932308 & 0x7FFFFFFF) % 1_000
    assert partition_of(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
    assert {partition_of(load.sku_name(i).encode(), 6) for i in range(200)} == set(range(6))


def test_ratios_compare_two_stock_workers_with_the_peer_on_medians() -> None:
    peer = [Figures(15_000, 95, 20, 2), Figures(17_000, 90, 20, 2), Figures(14_000, 100, 20, 2)]
    stock = {
        1: [Figures(5_000, 110, 65, 5)],
        2: [Figures(10_500, 90, 55, 4), Figures(11_500, 88, 57, 3)],
    }

    ratios = peer_ratios(peer, stock)

    assert ratios["stock_workers"] == 2
    assert ratios["rate_ratio"] == pytest.approx(11_000 / 15_000)
    assert ratios["rate_target_met"] is False
    assert ratios["cpu_ratio"] == pytest.approx((89 + 56 + 3.5) / (95 + 20 + 2))
    assert ratios["cpu_target_met"] is False


def test_ratios_met_and_fallback_to_the_most_workers() -> None:
    ratios = peer_ratios(
        [Figures(10_000, 100, 10, 10)], {1: [Figures(5_000, 50, 30, 5)], 3: [Figures(12_000, 40, 30, 5)]}
    )

    assert ratios["stock_workers"] == 3
    assert ratios["rate_target_met"] is True
    assert ratios["cpu_target_met"] is True
    assert peer_ratios([], {2: [Figures(1, 1, 1, 1)]}) == {}
