"""The per-session SSH key that the controller and Ansible use to reach every host as root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .commands import run

SSH_OPTIONS: tuple[str, ...] = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
    "-o", "IdentitiesOnly=yes",
)


@dataclass(frozen=True)
class SshKey:
    private: Path

    @property
    def public(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    @classmethod
    def generate(cls, directory: Path) -> SshKey:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = directory / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pypi-mirror-kit-fleet", "-f", str(key)])
        return cls(private=key)

    def ssh_argv(self, address: str, user: str = "root") -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-i", str(self.private), f"{user}@{address}"]
