"""Benchmark: mirror-sync against bandersnatch 8.2 on a synthetic upstream served by nginx on loopback.

Run it with ``python -m bench`` (see bench/README.md). Nothing here is part of the mirror-sync package.
"""
