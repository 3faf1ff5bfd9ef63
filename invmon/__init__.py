"""inventory-monitor: Kafka commands applied exactly once to PostgreSQL, with live notifications."""
