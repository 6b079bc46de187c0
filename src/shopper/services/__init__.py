"""Services: the long-running parts (API ingest and serving, processor), wired to ports."""
