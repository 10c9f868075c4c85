"""The upstream pip itself would use: its configuration, else its built-in default.

No registry host is written here: both answers come from pip's own code and files.
"""
from __future__ import annotations

import os

from .errors import ConfigError

# pip reads these sections in this order for `pip install`; later ones win, the environment wins last.
_SECTIONS = ("global", "install", "download")


def default_upstream() -> str:
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env.split()[0]
    try:
        from pip._internal.configuration import Configuration
        from pip._internal.models.index import PyPI
    except Exception as exc:  # pip missing or its internals moved
        raise ConfigError(
            f"key 'upstream' is not set and pip's defaults cannot be read ({exc.__class__.__name__}); "
            "set 'upstream' to the URL of a simple index"
        ) from None
    configured = None
    try:
        conf = Configuration(isolated=False)
        conf.load()
        values = dict(conf.items())
        for section in _SECTIONS:
            value = values.get(f"{section}.index-url")
            if value:
                configured = str(value).split()[0]
    except Exception:
        configured = None
    return configured or PyPI.simple_url
