"""The upstream pip itself would use: its configuration, else its built-in default.

No registry host is written here: both answers come from pip's own code and files.
"""
from __future__ import annotations

import os

from .errors import ConfigError



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
        # get_value merges every file pip reads (site, user, PIP_CONFIG_FILE) in pip's own order
        for key in ("install.index-url", "download.index-url", "global.index-url"):
            try:
                value = conf.get_value(key)
            except Exception:  # pip's ConfigurationError: the key is not set anywhere
                continue
            if value:
                configured = str(value).split()[0]
                break
    except Exception:
        configured = None
    return configured or PyPI.simple_url
