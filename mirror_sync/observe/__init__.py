"""Observability: reading the mirror's state and logs for people and for Prometheus.

``status`` (what the state says: last runs, serials, lag, size), ``metrics`` (node_exporter's
textfile), ``stats`` with ``logparse`` (download statistics from nginx's access logs) and
``frontpage`` (the mirror's ``web/index.html``). Nothing here is on the sync's path: the CLI calls
these after a command has finished, and a failure here never changes a run's outcome.
"""
