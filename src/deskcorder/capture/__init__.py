"""The capture pipeline: gates, redaction, move sampling, batching (pipeline thread only)."""
