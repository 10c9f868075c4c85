"""An Ansible inventory (YAML) describing a running fleet: groups, addresses, key, interpreter."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from .host import Host
from .sshkey import SSH_OPTIONS, SshKey


def inventory_data(
    hosts: Iterable[Host], key: SshKey, group_vars: Mapping[str, Mapping[str, object]] | None = None
) -> dict[str, object]:
    groups: dict[str, dict[str, object]] = {}
    ungrouped: dict[str, object] = {}
    for host in hosts:
        hostvars: dict[str, object] = {"ansible_host": host.address, **dict(host.spec.hostvars)}
        if not host.spec.groups:
            ungrouped[host.name] = hostvars
        for group in host.spec.groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = hostvars  # type: ignore[index]
    for group, gvars in (group_vars or {}).items():
        if group != "all":
            groups.setdefault(group, {"hosts": {}})["vars"] = dict(gvars)
    all_vars: dict[str, object] = {
        "ansible_user": "root",
        "ansible_connection": "ssh",
        "ansible_ssh_private_key_file": str(key.private),
        "ansible_ssh_common_args": shlex.join(SSH_OPTIONS),
        "ansible_python_interpreter": "/usr/bin/python3",
        **dict((group_vars or {}).get("all", {})),
    }
    data: dict[str, object] = {"vars": all_vars, "children": groups}
    if ungrouped:
        data["hosts"] = ungrouped
    return {"all": data}


def write_inventory(
    path: Path,
    hosts: Iterable[Host],
    key: SshKey,
    group_vars: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory_data(hosts, key, group_vars), sort_keys=False))
    return path
