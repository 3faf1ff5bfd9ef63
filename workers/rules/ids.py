"""Deterministic event ids: `uuid.uuid5(command_id, str(index))`, the same value at half the cost.

Every applied command makes one or more events; the stdlib's uuid5 spends most of its time in
`UUID.__init__`'s argument checks, which a SHA-1 digest of known length does not need.
"""

from __future__ import annotations

import hashlib
import uuid

_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version nibble and variant bits (RFC 4122)
_SET = (5 << 76) | (0x8000 << 48)  # version 5, RFC 4122 variant
_NAMES = tuple(str(i).encode() for i in range(16))  # the event indexes of a command, spelled once
# Read once: every read of an enum member goes through enum's descriptor, which cost more than the hash.
_UNKNOWN = uuid.SafeUUID.unknown
_sha1 = hashlib.sha1
_new = object.__new__
# UUID's slots, set through their descriptors, as __init__ sets them (UUID is immutable: no __setattr__).
_set_int = uuid.UUID.__dict__["int"].__set__
_set_is_safe = uuid.UUID.__dict__["is_safe"].__set__


def event_id(namespace: bytes, index: int) -> uuid.UUID:
    """`uuid.uuid5(UUID(bytes=namespace), str(index))`."""
    name = _NAMES[index] if index < 16 else str(index).encode()
    value = int.from_bytes(_sha1(namespace + name).digest()[:16]) & _CLEAR | _SET
    result = _new(uuid.UUID)
    _set_int(result, value)
    _set_is_safe(result, _UNKNOWN)
    return result
