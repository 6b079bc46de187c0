"""Bundled rehearsal profiles (`shopper rehearse --profile NAME`): TOML files, see
docs/rehearsal.md."""
