"""Micro-benchmark: regenerate the root index of a mirror holding 700,000 projects.

The state is synthesised with the engine's own State (no files); the timed part is the engine's
Publisher.publish_root: read the project list from the state, render PEP 503 HTML and PEP 691 JSON,
write them atomically.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .names import canonical, project_names


@dataclass
class RootIndexResult:
    projects: int
    seconds: float
    html_bytes: int
    json_bytes: int
    phases: dict[str, float]


def run(projects: int = 700_000, fsync: bool = True, workdir: Path | None = None) -> RootIndexResult:
    from mirror_sync.publish import Publisher  # the engine; import here so the rest of bench works without it
    from mirror_sync.render import root_html, root_json
    from mirror_sync.state import State

    with tempfile.TemporaryDirectory(prefix="bench-root-", dir=workdir) as tmp:
        root = Path(tmp)
        web = root / "web"
        (web / "simple").mkdir(parents=True)
        state = State(root / "state.sqlite")
        names = project_names(projects, seed=7)
        state.begin()
        for serial, name in enumerate(names, start=1):
            state.save_project(canonical(name), name, serial, serial, None, "", None, ["1.0"], "0" * 64, "0" * 64, 0.0)
        state.commit()
        publisher = Publisher(state, web, None, fsync=fsync)
        start = time.perf_counter()
        publisher.publish_root(len(names))
        total = time.perf_counter() - start
        # the same work in phases, for the report
        t0 = time.perf_counter()
        entries = state.root_entries()
        t1 = time.perf_counter()
        html = root_html(entries)
        t2 = time.perf_counter()
        js = root_json(entries, len(names))
        t3 = time.perf_counter()
        state.close()
        return RootIndexResult(
            projects=projects,
            seconds=total,
            html_bytes=len(html),
            json_bytes=len(js),
            phases={"read_state": t1 - t0, "render_html": t2 - t1, "render_json": t3 - t2},
        )
