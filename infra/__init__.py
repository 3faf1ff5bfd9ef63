"""Shared plumbing for every inventory-monitor process: settings, logging, metrics, Kafka client setup."""
