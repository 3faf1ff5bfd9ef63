"""The WebSocket relay (live protocol v1, docs/live-protocol.md): its own process, stateless, several side
by side. `protocol` holds the pure decisions; `feed` follows Redis; `hub` fans out; `session` serves one
connection; `main` wires it all."""
