"""Features: one pure function per feature, over one entity's events up to a time.

The stream processor (online) and the batch backfill (offline) both run these functions
through `FeatureEngine`, so the values they write are equal by construction. Pure: standard
library and numpy only, no I/O. `docs/features.md` defines every feature and window.
"""
