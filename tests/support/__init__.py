"""Test support: a fake but real upstream index.

- :mod:`tests.support.dists` builds installable wheels and sdists in memory.
- :mod:`tests.support.index_tree` writes a static PEP 503/691/700/658 + legacy-JSON tree.
- :mod:`tests.support.upstream_server` serves such a tree on 127.0.0.1 with fault injection.
"""
