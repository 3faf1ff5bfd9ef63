"""Who leads the KRaft metadata quorum: the DescribeQuorum request (API key 55, KIP-595) that
`kafka-metadata-quorum describe --status` sends, which aiokafka's admin client does not offer.

Any broker answers it (it forwards to the active controller). Version 0 is enough: the leader's id and
epoch and the voters' log end offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

from invmon.stack.kafka_admin import admin_client

METADATA_TOPIC = "__cluster_metadata"


class DescribeQuorumResponse_v0(Response):  # type: ignore[misc]  # aiokafka ships no types
    API_KEY = 55
    API_VERSION = 0
    _REPLICA = (("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", CompactArray(*_REPLICA)),
                        ("observers", CompactArray(*_REPLICA)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):  # type: ignore[misc]
    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v0]) -> DescribeQuorumRequest_v0:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


class QuorumError(RuntimeError):
    """The broker answered DescribeQuorum with an error code."""


@dataclass(frozen=True, slots=True)
class Quorum:
    leader_id: int
    leader_epoch: int
    voters: tuple[int, ...]


async def describe_quorum(bootstrap: str, timeout_ms: int = 5000) -> Quorum:
    async with admin_client(bootstrap, timeout_ms) as client:
        response = await client._send_request(DescribeQuorumRequest())
    answer = response.to_object()
    if int(answer["error_code"]) != 0:
        raise QuorumError(f"DescribeQuorum error {answer['error_code']}")
    (partition,) = answer["topics"][0]["partitions"]
    if int(partition["error_code"]) != 0:
        raise QuorumError(f"DescribeQuorum partition error {partition['error_code']}")
    return Quorum(
        leader_id=int(partition["leader_id"]),
        leader_epoch=int(partition["leader_epoch"]),
        voters=tuple(int(v["replica_id"]) for v in partition["current_voters"]),
    )
