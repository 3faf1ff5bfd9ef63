"""The outbox relay: publishes committed events to the Kafka event stream and Redis pub/sub."""
