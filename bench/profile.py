"""Optional sampling profiles of mirror-sync runs with py-spy (installed in the bench venv, never a
project dependency): py-spy attaches to the running process, so its own CPU is not charged to the run,
but it shares the two cores — timings of a profiled run are a little pessimistic.

Only samples of the thread holding the GIL are kept (`--gil`): the engine is CPU-bound in Python, and
without it every worker thread waiting for the GIL inside a socket call would look like I/O time."""
from __future__ import annotations

import collections
import subprocess
import time
from pathlib import Path
from typing import Optional


class PySpy:
    def __init__(self, exe: Path, outdir: Path) -> None:
        self.exe = exe
        self.outdir = outdir
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.raw: Optional[Path] = None

    def attach(self, time_pid: int, label: str) -> None:
        """Attach to the tool, the child of the GNU time process `time_pid`."""
        self.outdir.mkdir(parents=True, exist_ok=True)
        pid = _child_of(time_pid)
        if pid is None:
            return
        self.raw = self.outdir / f"{label}.folded"
        self.proc = subprocess.Popen(
            [str(self.exe), "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking", "--gil",
             "--subprocesses",
             "--output", str(self.raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )

    def finish(self) -> Optional[Path]:
        """Wait for py-spy (it stops when the target exits) and write <label>.top.txt."""
        if self.proc is None or self.raw is None:
            return None
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if not self.raw.exists():
            return None
        top = self.raw.with_suffix(".top.txt")
        top.write_text(summarise(self.raw))
        return top


def _child_of(pid: int, wait_s: float = 5.0) -> Optional[int]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        time.sleep(0.005)
    return None


def _package(frame: str) -> str:
    """'Session.send (requests/sessions.py:784)' -> 'requests'; stdlib modules by file name."""
    where = frame[frame.rfind("(") + 1 : frame.rfind(":")] if "(" in frame else frame
    if "site-packages/" in where:
        where = where.split("site-packages/", 1)[1]
    parts = where.split("/")
    if len(parts) > 1:
        return parts[0] if parts[0] != "mirror_sync" else f"mirror_sync/{parts[1].split('.')[0]}"
    return where.replace("<frozen ", "").rstrip(">").split(".")[0]


def summarise(folded: Path, limit: int = 25) -> str:
    """Self and inclusive shares per function (line numbers merged) and self share per package."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        merged = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in frames]
        own[merged[-1]] += n
        pkg[_package(frames[-1])] += n
        for f in set(merged):
            incl[f] += n
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples", "", "self %  package/module"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in pkg.most_common(limit)]
    lines += ["", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in own.most_common(limit)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(limit * 2)]
    return "\n".join(lines) + "\n"
