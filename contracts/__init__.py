"""Versioned pydantic v2 contracts for every command and event. Imports nothing of ours."""
