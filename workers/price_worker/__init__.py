"""The price worker: applies price commands from Kafka to PostgreSQL, one transaction per batch."""
