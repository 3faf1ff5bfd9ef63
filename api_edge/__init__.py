"""The thin HTTP edge: validates and publishes commands, serves reads from PostgreSQL and live events."""
