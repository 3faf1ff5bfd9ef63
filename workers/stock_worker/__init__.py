"""The stock worker: applies stock commands from Kafka to PostgreSQL, one transaction per batch."""
