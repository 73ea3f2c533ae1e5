"""The ingest benchmark (`make bench`); see docs/benchmarks.md. Not collected by pytest."""
