"""Adapters: one module per external system, plus the in-memory (embedded) versions."""
