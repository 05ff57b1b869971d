"""Benchmarks of the hub against socket.io peers: ``python -m bench.run --quick``."""
