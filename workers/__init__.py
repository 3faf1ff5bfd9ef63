"""Worker processes: they apply commands to PostgreSQL and relay events."""
