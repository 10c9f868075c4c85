"""`wrk` against the same nginx: the transport limit for the URLs a sync fetches."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

_LUA = r"""
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i], {["Accept"] = "application/vnd.pypi.simple.v1+json"})
end
"""


def run_wrk(base_url: str, paths: Sequence[str], workdir: Path, connections: int, seconds: int) -> Optional[float]:
    """Requests per second with `connections` keepalive connections, or None when wrk is not installed."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    list_file = workdir / "wrk-paths.txt"
    list_file.write_text("\n".join(paths) + "\n")
    script = workdir / "wrk.lua"
    script.write_text(_LUA % list_file)
    threads = max(1, min(2, connections))
    out = subprocess.run(
        [exe, "-t", str(threads), "-c", str(max(connections, threads)), "-d", f"{seconds}s", "-s", str(script), base_url + "/"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return float(match.group(1))
