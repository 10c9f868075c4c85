"""Micro-benchmark: parse a 700,000-project upstream root, JSON and HTML, each in a fresh process.

    python -m bench.root_parse                 # 700,000 projects
    python -m bench.root_parse --projects 100000

The roots are generated first (realistic names from bench.names, half of them differing from
their canonical form, serials up to ~45,000,000): JSON as the real index spells it (", "
separators, a serial per project), HTML as the real index sends it (`<a href="c/">Name</a>` a
line). Each is then parsed by a child process that imports what a sync imports
(mirror_sync.upstream), feeds the file to pages.parse_root_stream in 256 KiB chunks (as
Upstream.root feeds response.iter_content) and checks the result. The child runs under
`/usr/bin/time -v` when it exists: its "Maximum resident set size" is the whole process's peak
RSS; the parse time (wall and CPU) is measured inside the child.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .names import canonical, project_names

CHUNK = 256 * 1024


def write_roots(directory: Path, count: int) -> tuple[Path, Path]:
    names = project_names(count, seed=7)
    rng = random.Random(7)
    serials = [rng.randrange(1, 45_000_000) for _ in names]
    js = directory / "root.json"
    with js.open("w", encoding="utf-8") as f:
        f.write('{"meta": {"api-version": "1.1", "_last-serial": 45000000}, "projects": [')
        f.write(", ".join(f'{{"name": "{n}", "_last-serial": {s}}}' for n, s in zip(names, serials)))
        f.write("]}")
    page = directory / "root.html"
    with page.open("w", encoding="utf-8") as f:
        f.write("<!DOCTYPE html><html><body>\n")
        f.write("".join(f'<a href="{canonical(n)}/">{n}</a>\n' for n in names))
        f.write("</body></html>\n")
    return js, page


def child(path: str, fmt: str) -> int:
    """In the fresh process: parse, check, print one JSON line."""
    import time

    import mirror_sync.upstream  # noqa: F401  (what a sync process has loaded)
    from mirror_sync.pages import parse_root_stream

    def chunks():
        with open(path, "rb") as f:
            while True:
                block = f.read(CHUNK)
                if not block:
                    return
                yield block

    start, cpu = time.perf_counter(), time.process_time()
    root = parse_root_stream(chunks(), is_json=fmt == "json", header_serial=None, unchanged_at=None)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    first = next(iter(root.projects))
    t0 = time.perf_counter()
    hits = sum(1 for c in root.projects if c in root.projects)
    lookup_s = time.perf_counter() - t0
    print(json.dumps({"format": fmt, "projects": len(root.projects), "parse_s": round(seconds, 3), "parse_cpu_s": round(cpu, 3),
                      "first": [first, *root.projects[first]], "all_found": hits == len(root.projects),
                      "iterate_and_lookup_all_s": round(lookup_s, 3)}))
    return 0


def _measure(path: Path, fmt: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "bench.root_parse", "--child", str(path), fmt]
    timer = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None  # GNU time: -v
    if timer:
        cmd = [timer, "-v", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    e = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr)
    out["peak_rss_mb"] = round(int(m.group(1)) / 1024, 1) if m else None
    out["process_wall"] = e.group(1) if e else None
    out["bytes"] = path.stat().st_size
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.root_parse", description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=700_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory(prefix="bench-rootparse-", dir=args.workdir) as tmp:
        js, page = write_roots(Path(tmp), args.projects)
        rows = [_measure(js, "json"), _measure(page, "html")]
    print(f"{'format':<6} {'projects':>9} {'MB':>6} {'parse s':>8} {'parse CPU s':>12} {'peak RSS MB':>12} {'process':>8} "
          f"{'iterate+lookup all s':>21}")
    for r in rows:
        size_mb = int(r["bytes"]) / 1e6  # type: ignore[call-overload]
        print(f"{r['format']:<6} {r['projects']:>9} {size_mb:>6.1f} {r['parse_s']:>8} {r['parse_cpu_s']:>12} {r['peak_rss_mb']!s:>12} "
              f"{r['process_wall']!s:>8} {r['iterate_and_lookup_all_s']:>21}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
