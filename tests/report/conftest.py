"""The report (schema, outputs, progress lines) and the release gate (statistics, tampering, unknowns, redaction)."""
