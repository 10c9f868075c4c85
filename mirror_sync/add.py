"""`mirror-sync add FILE...`: put the organisation's own distributions into the local directory
and publish them at once. Every file is validated before any is copied: a bad one changes nothing."""
from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import ConfigError
from .reports import AddReport


def add_files(config: Config, files: list[Path]) -> AddReport:
    if config.local is None:
        raise ConfigError(f"{config.path}: 'add' needs the key 'local', the directory of the organisation's own packages")
    from .local import add_distribution, validate_distribution
    from .sync import Syncer

    for path in files:  # all of them first: one bad file, nothing added
        validate_distribution(path)
    dists = [add_distribution(path, config.local) for path in files]
    published = Syncer(config).publish_local({d.canonical for d in dists})
    added = [{"project": d.canonical, "filename": d.filename, "version": d.version, "sha256": d.sha256, "size": d.size}
             for d in dists]
    return AddReport(added, published)
