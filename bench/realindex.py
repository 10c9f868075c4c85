"""Mirror real allowlists from the default upstream (the index pip itself uses here), install from
the mirror alone with pip and with uv, re-sync, and print one table row per allowlist.

    python -m bench.realindex [--only NAME] [--workdir DIR] [--keep]

No registry host is written here: the upstream is what pip's configuration names at run time.
Clients see no other index: PIP_CONFIG_FILE=/dev/null, no PIP_*/UV_* variables, uv --no-config.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

LINUX_311 = {"python": "3.11", "platform": "linux", "machine": "x86_64"}
LINUX_312 = {"python": "3.12", "platform": "linux", "machine": "x86_64"}


@dataclass(frozen=True)
class Case:
    name: str
    config: dict[str, Any]
    install: tuple[str, ...]  # what a client asks for


CASES = (
    Case("readme", {"projects": ["flask>=3", "requests"], "environments": [LINUX_311], "prereleases": False, "latest": 3},
         ("flask>=3", "requests")),
    Case("django", {"projects": ["django"], "environments": [LINUX_311], "latest": 2}, ("django",)),
    Case("fastapi-celery", {"projects": ["fastapi[standard]", "celery[redis]"], "environments": [LINUX_311, LINUX_312],
                            "prereleases": False, "latest": 2}, ("fastapi[standard]", "celery[redis]")),
    Case("data-science", {"projects": ["jupyterlab", "pandas", "matplotlib", "scikit-learn"], "environments": [LINUX_311],
                          "prereleases": False, "latest": 2}, ("jupyterlab", "pandas", "matplotlib", "scikit-learn")),
    Case("tools", {"projects": ["black[d]", "httpx[http2,socks]", "pytest"], "environments": [LINUX_311],
                   "prereleases": False, "latest": 2}, ("black[d]", "httpx[http2,socks]", "pytest")),
)


def clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1", "UV_NO_CONFIG": "1"})
    env.update(extra or {})
    return env


def timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """(process, wall seconds, peak RSS in KiB) of one command under /usr/bin/time -v."""
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.monotonic() - start
    rss = 0
    for line in proc.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[1])
    return proc, wall, rss


def sync(config: Path, timeout: float) -> tuple[dict[str, Any], float, int, int]:
    proc, wall, rss = timed([sys.executable, "-m", "mirror_sync", "-c", str(config), "sync", "--json"], clean_env(), timeout)
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {"ok": False, "error": proc.stderr[-500:]}
    return summary, wall, rss, proc.returncode


class Server:
    """python -m http.server over the mirror's web/ on a free loopback port."""

    def __init__(self, web: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "0", "-b", "127.0.0.1", "-d", str(web)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...)"
        self.url = f"http://127.0.0.1:{line.split(' port ')[1].split()[0]}/simple/"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def install(work: Path, index: str, reqs: tuple[str, ...], tool: str) -> tuple[bool, str]:
    venv = work / f"venv-{tool}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip" if tool == "uv" else "--clear", str(venv)], check=True, env=clean_env())
    if tool == "pip":
        cmd = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--index-url", index, *reqs]
    else:
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        cmd = [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "--index-url", index,
               "--cache-dir", str(work / "uv-cache"), *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=1800)
    return proc.returncode == 0, (proc.stderr or proc.stdout)[-800:]


def run_case(case: Case, base: Path, upstream: str) -> dict[str, Any]:
    work = base / case.name
    work.mkdir(parents=True, exist_ok=True)
    config = work / "mirror.yml"
    config.write_text(yaml.safe_dump({"upstream": upstream, "directory": str(work / "mirror"), **case.config}))
    first, wall, rss, rc = sync(config, 3600)
    row: dict[str, Any] = {"case": case.name, "rc": rc, "wall_s": round(wall, 1), "rss_mb": rss // 1024,
                           "projects": first.get("projects", {}).get("total"), "files": first.get("files", {}).get("total"),
                           "mb": round(first.get("files", {}).get("bytes_total", 0) / 1e6, 1),
                           "failures": first.get("failures", first.get("error"))}
    server = Server(work / "mirror" / "web")
    try:
        for tool in ("pip", "uv"):
            ok, tail = install(work, server.url, case.install, tool)
            row[tool] = "ok" if ok else f"FAILED: {tail}"
    finally:
        server.close()
    resyncs = []
    for _ in range(2):
        again, wall2, rss2, rc2 = sync(config, 600)
        resyncs.append({"rc": rc2, "wall_s": round(wall2, 2), "rss_mb": rss2 // 1024, "downloaded": again["files"]["downloaded"],
                        "deleted": again["files"]["deleted"] + again["projects"]["deleted"], "changed": again["changed"]})
    row["resync"] = resyncs
    return row


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.realindex", description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", help="run only these cases: " + ", ".join(c.name for c in CASES))
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from mirror_sync.pip_default import default_upstream

    upstream = default_upstream()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="realindex-"))
    rows = []
    try:
        for case in CASES:
            if args.only and case.name not in args.only:
                continue
            row = run_case(case, base, upstream)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    print("\n| allowlist | first sync | peak RSS | projects | files | MB | pip | uv | re-sync (wall, RSS, downloaded, deleted) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    for r in rows:
        rs = "; ".join(f"{x['wall_s']} s, {x['rss_mb']} MB, {x['downloaded']}, {x['deleted']}" for x in r["resync"])
        print(f"| {r['case']} | {r['wall_s']} s | {r['rss_mb']} MB | {r['projects']} | {r['files']} | {r['mb']} | "
              f"{r['pip'][:6]} | {r['uv'][:6]} | {rs} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["rc"] == 0 and r["pip"] == "ok" and r["uv"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
