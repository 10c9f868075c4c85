"""Loop block devices backed by sparse image files, to hand to a host as its mirror volume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .commands import run


@dataclass
class LoopDevice:
    image: Path
    device: str

    @classmethod
    def attach(cls, image: Path, size_mb: int) -> LoopDevice:
        image.parent.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        device = run(["losetup", "--find", "--show", str(image)], timeout=30).stdout.strip()
        return cls(image=image, device=device)

    def detach(self) -> None:
        if any(device == self.device and back.startswith(str(self.image)) for device, back in attached()):
            run(["losetup", "--detach", self.device], timeout=30, check=False)
        self.image.unlink(missing_ok=True)


def attached() -> list[tuple[str, str]]:
    """(device, backing file) of every loop device attached now."""
    out = run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], timeout=30, check=False)
    pairs = (line.split(None, 1) for line in out.stdout.splitlines())
    return [(words[0], words[1].strip()) for words in pairs if len(words) == 2]
