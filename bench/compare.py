"""What a mirror holds: (filename, sha256) of every file under its web/packages, against the upstream."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


def mirror_files(packages_dir: Path) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for dirpath, _dirs, files in os.walk(packages_dir):
        for name in files:
            if name.startswith("."):
                continue  # temporary files of an interrupted download
            with open(os.path.join(dirpath, name), "rb") as fh:
                out.add((name, hashlib.sha256(fh.read()).hexdigest()))
    return out


@dataclass
class Comparison:
    label: str
    missing: set[tuple[str, str]]  # upstream has it, the mirror does not
    extra: set[tuple[str, str]]  # the mirror has it, upstream no longer does

    @property
    def exact(self) -> bool:
        return not self.missing and not self.extra

    def line(self) -> str:
        if self.exact:
            return f"{self.label}: identical to upstream"
        sample = sorted(self.missing)[:3] + sorted(self.extra)[:3]
        return f"{self.label}: {len(self.missing)} missing, {len(self.extra)} extra (e.g. {[n for n, _ in sample]})"


def compare(label: str, packages_dir: Path, expected: set[tuple[str, str]]) -> Comparison:
    have = mirror_files(packages_dir)
    return Comparison(label, expected - have, have - expected)
