"""The command-worker mechanism every command topic shares: per-record decoding with dead letters, one
PostgreSQL transaction per batch with idempotency claims and an outbox, offsets committed only after it."""
