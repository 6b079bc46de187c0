"""HTTP API (FastAPI): event ingest, recommendation reads, catalog upserts, health."""
