"""Run one tool invocation and measure it: wall time, CPU of the process tree, peak RSS, requests."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from .memory import TreeSampler
from .nginx import Traffic

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int
    errors: int  # HTTP responses other than 2xx/3xx
    returncode: int
    log: Path
    largest_process_mb: float = 0.0  # GNU time %M: the largest resident set of one process
    tree_pss_mb: float = 0.0  # sampled peak of the PSS summed over the whole process tree
    bytes_sent: int = 0  # HTTP bytes (headers and bodies) the upstream sent during the run
    connections: int = 0  # distinct TCP connections in the access log during the run

    def as_json(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "requests": self.requests,
        }


def _signal_group(proc: "subprocess.Popen[bytes]", sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def gnu_time() -> str:
    """GNU time (Debian package `time`)."""
    if os.path.exists("/usr/bin/time"):
        return "/usr/bin/time"
    raise RuntimeError("GNU time is not installed (Debian: apt-get install -y time)")


def clean_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment without proxies (both spellings) and without pip settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS and not k.startswith("PIP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(extra or {})
    return env


def run_measured(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    stdout_path: Optional[Path] = None,
    cwd: Optional[Path] = None,
    count_requests: Callable[[], Traffic],
    timeout: float = 3600.0,
    on_start: Optional[Callable[[int], None]] = None,
) -> RunResult:
    """Run `cmd` to completion under GNU time, which reports the CPU and peak RSS of its child;
    a sampler adds up the memory of the whole process tree (see memory.py).

    Not wait4 on our own child: a child forked from this (large) process keeps the parent's
    resident-set high-water mark across exec, so its ru_maxrss would be ours, not the tool's.
    """
    stats = log.with_suffix(".time")
    wrapped = [gnu_time(), "-f", "%e %U %S %M", "-o", str(stats), *cmd]
    count_requests()  # mark: requests before this run are not ours
    with open(log, "wb") as err, open(stdout_path or log.with_suffix(".stdout"), "wb") as out:
        start = time.perf_counter()
        # its own process group, so a timeout or Ctrl-C reaches the tool and not only `time`
        proc = subprocess.Popen(wrapped, env=dict(env), cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        timer = threading.Timer(timeout, _signal_group, (proc, signal.SIGKILL))
        timer.start()
        sampler = TreeSampler(proc.pid).start()
        try:
            if on_start is not None:
                on_start(proc.pid)
            proc.wait()
        except BaseException:
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            raise
        finally:
            timer.cancel()
            tree_peak_mb = sampler.stop()
        wall = time.perf_counter() - start
    traffic = count_requests()
    fields = stats.read_text().strip().splitlines()[-1].split()
    return RunResult(
        wall_s=wall,
        cpu_s=float(fields[1]) + float(fields[2]),
        # the largest single process (exact), or the sampled tree total when the tool forks workers
        peak_rss_mb=max(int(fields[3]) / 1024.0, tree_peak_mb),
        largest_process_mb=int(fields[3]) / 1024.0,
        tree_pss_mb=tree_peak_mb,
        requests=traffic.requests,
        errors=traffic.errors,
        returncode=int(proc.returncode),
        log=log,
        bytes_sent=traffic.bytes_sent,
        connections=traffic.connections,
    )
