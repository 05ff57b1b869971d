"""Minimal peers the hub is measured against (see bench/README in RESULTS.md)."""
