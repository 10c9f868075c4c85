"""Run ansible / ansible-playbook against a fleet inventory and read the PLAY RECAP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


def ansible_tool(name: str) -> str | None:
    """An Ansible CLI from the running interpreter's environment first, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


@dataclass
class AnsibleResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return f"$ {' '.join(self.argv)}\n{self.stdout}\n{self.stderr}"

    def total(self, counter: str) -> int:
        return sum(counts.get(counter, 0) for counts in self.recap.values())


def parse_recap(stdout: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    lines = stdout.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        return recap
    for line in lines[start + 1:]:
        m = _RECAP_LINE.match(line.strip())
        if m:
            recap[m["host"]] = {k: int(v) for k, v in (kv.split("=") for kv in m["counts"].split())}
    return recap


def ansible_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    cfg = repo / "ansible.cfg"
    if cfg.is_file():
        env["ANSIBLE_CONFIG"] = str(cfg)
    elif (repo / "library").is_dir():
        env["ANSIBLE_LIBRARY"] = str(repo / "library")
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_RETRY_FILES_ENABLED": "False", "PYTHONUNBUFFERED": "1"})
    return env


def run_ansible(
    tool: str,
    inventory: Path,
    args: Sequence[str],
    *,
    repo: Path,
    extra_vars: Mapping[str, object] | None = None,
    vars_file: Path | None = None,
    timeout: float = 1200,
) -> AnsibleResult:
    """Run `tool -i inventory [-e @vars.json] args...` from the repository root (its ansible.cfg)."""
    path = ansible_tool(tool)
    if path is None:
        raise FileNotFoundError(f"{tool} not found (install ansible-core: pip install '.[test]')")
    argv = [path, "-i", str(inventory)]
    if extra_vars:
        target = vars_file or inventory.with_name("extra-vars.json")
        target.write_text(json.dumps(dict(extra_vars), indent=2))
        argv += ["-e", f"@{target}"]
    argv += list(args)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=repo, env=ansible_env(repo), check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return AnsibleResult(argv, -1, out, f"timed out after {timeout:.0f} s")
    return AnsibleResult(argv, proc.returncode, proc.stdout, proc.stderr, parse_recap(proc.stdout))


def missing_collections(names: Sequence[str], *, repo: Path) -> list[str]:
    """Which of the collections `names` ansible-galaxy cannot see (with the repo's ansible.cfg)."""
    galaxy = ansible_tool("ansible-galaxy")
    if galaxy is None:
        return list(names)
    proc = subprocess.run(
        [galaxy, "collection", "list", "--format", "json"], capture_output=True, text=True, timeout=120,
        cwd=repo, env=ansible_env(repo), check=False,
    )
    try:
        listing = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        listing = {}
    found = {name for path in listing.values() for name in path}
    return [name for name in names if name not in found]
