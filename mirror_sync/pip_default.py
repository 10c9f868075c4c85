"""What pip itself would use: its index (configuration, else its built-in default) and its CA bundle.

No registry host is written here: both answers come from pip's own code and files.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from .errors import ConfigError

# pip's option sections, most specific first: `pip install`/`pip download` read their own section
# before [global]
_SECTIONS = ("install", "download", "global")


def _pip_configuration() -> Any:
    """pip's Configuration with every file pip reads loaded (site, user, PIP_CONFIG_FILE), or None."""
    try:
        from pip._internal.configuration import Configuration

        conf = Configuration(isolated=False)
        conf.load()
        return conf
    except Exception:  # pip missing, its internals moved, or an unreadable file: pip's defaults
        return None


def _configured(conf: Any, option: str) -> Optional[tuple[str, str]]:
    """(section.option, value) of the first section that sets `option`, in pip's own order."""
    if conf is None:
        return None
    for section in _SECTIONS:
        key = f"{section}.{option}"
        try:
            value = conf.get_value(key)
        except Exception:  # pip's ConfigurationError: the key is not set anywhere
            continue
        if value:
            return key, str(value)
    return None


def default_upstream() -> str:
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env.split()[0]
    try:
        from pip._internal.models.index import PyPI
    except Exception as exc:  # pip missing or its internals moved
        raise ConfigError(
            f"key 'upstream' is not set and pip's defaults cannot be read ({exc.__class__.__name__}); "
            "set 'upstream' to the URL of a simple index"
        ) from None
    configured = _configured(_pip_configuration(), "index-url")
    return configured[1].split()[0] if configured else PyPI.simple_url


def pip_cert() -> Optional[tuple[str, str]]:
    """(where it is set, path) of the CA bundle pip would verify its index with: PIP_CERT, else
    pip's `cert` setting; None when pip uses its default trust."""
    env = os.environ.get("PIP_CERT")
    if env:
        return "PIP_CERT", env
    configured = _configured(_pip_configuration(), "cert")
    if configured is None:
        return None
    return f"pip's '{configured[0]}'", configured[1]
