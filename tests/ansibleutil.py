"""Helpers for the Ansible tests: find the ansible tools of this interpreter's environment, run them
with the repository's ansible.cfg, and render a role template with the real template module."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
ROLES = REPO / "roles"
REQUIRED_COLLECTIONS = ("community.general", "ansible.posix")


def tool(name: str) -> Optional[str]:
    """An ansible program from the environment of the running interpreter, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def ansible_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PIP_"))}
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
            [str(REPO / ".ansible" / "collections"), str(Path.home() / ".ansible" / "collections"),
             "/usr/share/ansible/collections"]
        ),
    )
    return env


def run(args: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=ansible_env(tmp), capture_output=True, text=True, timeout=timeout)


def missing_collections(tmp: Path) -> list[str]:
    galaxy = tool("ansible-galaxy")
    if galaxy is None:
        return list(REQUIRED_COLLECTIONS)
    proc = run([galaxy, "collection", "list", "--format", "json"], tmp, timeout=120)
    found: set[str] = set()
    if proc.returncode == 0 and proc.stdout.strip():
        for collections in json.loads(proc.stdout).values():
            found.update(collections)
    return [c for c in REQUIRED_COLLECTIONS if c not in found]


def render_template(role: str, template: str, dest: Path, tmp: Path, overrides: dict[str, Any],
                    inventory: Optional[Path] = None) -> Path:
    """Render roles/<role>/templates/<template> to dest with the role's defaults plus overrides,
    through ansible.builtin.template on localhost (the same code path as a converge). `inventory`
    (which must hold localhost with ansible_connection=local) gives the templates groups and hostvars."""
    ansible = tool("ansible")
    assert ansible, "ansible (ansible-core) is not installed in the test environment"
    extra = tmp / f"vars-{role}-{dest.name}.json"
    extra.write_text(json.dumps(overrides))
    # the role's vars/main.yml (derived values the templates use), below the overrides
    role_vars = ROLES / role / "vars" / "main.yml"
    vars_args = ["-e", f"@{role_vars}"] if role_vars.is_file() else []
    proc = run(
        [ansible, "localhost", "-i", str(inventory) if inventory else "localhost,", "-c", "local",
         "-m", "ansible.builtin.template",
         "-a", json.dumps({"src": str(ROLES / role / "templates" / template), "dest": str(dest), "mode": "0644"}),
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{ROLES / role / 'defaults' / 'main.yml'}", *vars_args, "-e", f"@{extra}"],
        tmp,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest
