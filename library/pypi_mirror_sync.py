#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pypi-mirror-kit contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: run the mirror_sync engine (``mirror-sync``) on the managed host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pypi_mirror_sync
short_description: Bring a PyPI mirror up to date, or verify it, with the mirror-sync engine
description:
  - Runs the C(mirror-sync) command line of the pypi-mirror-kit sync engine on the managed host and
    reports its JSON summary.
  - With O(state=synced) it runs C(mirror-sync sync); C(changed) is the engine's own verdict (something
    was downloaded, deleted or republished).
  - With O(state=verified) it runs C(mirror-sync verify), optionally re-hashing every file (O(full)) and
    repairing what is missing or corrupt (O(repair)).
  - The configuration is either an existing YAML file (O(config)) or given inline with options that
    mirror the configuration keys; the module then writes a temporary configuration file and removes
    it afterwards.
  - In check mode nothing is written; O(state=synced) returns the engine's plan (C(sync --dry-run)),
    what would be fetched and deleted, and how many bytes.
  - In diff mode the number of projects and files before and after the run is reported.
version_added: "0.1.0"
author:
  - pypi-mirror-kit contributors
options:
  state:
    description:
      - V(synced) brings the mirror up to date with upstream.
      - V(verified) checks pages and files against the mirror's state.
    type: str
    choices: [synced, verified]
    default: synced
  executable:
    description:
      - Path of the C(mirror-sync) program on the managed host.
    type: path
    default: /opt/pypi-mirror/venv/bin/mirror-sync
  config:
    description:
      - Path of an existing configuration file on the managed host.
      - Mutually exclusive with the inline configuration options (O(directory) and the rest).
    type: path
  directory:
    description:
      - Mirror root (inline configuration). Required unless O(config) is given.
    type: path
  upstream:
    description:
      - Root URL of the PEP 691/503 simple index to mirror.
      - Left out, the engine uses the index pip on the managed host would use.
    type: str
  ca_bundle:
    description:
      - PEM file (or directory of hashed certificates) on the managed host with the CAs to verify
        the upstream's TLS certificate with, instead of the system trust store.
      - Left out, the engine verifies as pip does, against the system trust store.
    type: path
  workers:
    description: Concurrent HTTP requests, 1 to 64.
    type: int
  timeout:
    description: Connect and read timeout of each request, in seconds.
    type: float
  deadline:
    description:
      - How long one request may take in all, in seconds, however slowly its answer arrives.
      - Files get one second more for every 128 KiB they are advertised to have.
    type: float
  max_page_size:
    description: Largest project page accepted once decoded (a size such as C(64M)).
    type: str
  max_root_size:
    description: Largest root index accepted once decoded (a size such as C(128M)).
    type: str
  retries:
    description: Retries with backoff on connection errors, timeouts, 429 and 5xx, 0 to 20.
    type: int
  projects:
    description:
      - Allowlist of PEP 508 requirements. Left out, everything upstream is mirrored.
    type: list
    elements: str
  exclude:
    description: Blocklist of PEP 508 requirements (a project, or some of its releases).
    type: list
    elements: str
  dependencies:
    description: With O(projects), mirror their dependency closure too.
    type: bool
  environments:
    description:
      - Target environments; each a mapping with C(python) and optional C(platform), C(machine),
        C(implementation), C(tags), C(markers), as in the engine's configuration.
    type: list
    elements: dict
  prereleases:
    description: Mirror pre- and dev releases.
    type: bool
  latest:
    description: Keep only the N newest releases of each project.
    type: int
  max_file_size:
    description: Skip larger files, e.g. V(50M), V(2G) or a number of bytes.
    type: str
  delete:
    description: Remove what upstream removed.
    type: bool
  max_delete_ratio:
    description: Refuse a run that would delete more than this share (0 to 1) of the mirror.
    type: float
  fsync:
    description: fsync files before publishing pages that link to them.
    type: bool
  statistics:
    description: The engine's C(statistics) section (C(access_log_pattern), C(output_directory)).
    type: dict
  metrics:
    description: The engine's C(metrics) section (C(textfile_directory)).
    type: dict
  repair:
    description:
      - With O(state=verified), re-fetch what is missing or corrupt and remove unreferenced files.
      - In check mode the mirror is only verified and C(changed) tells whether a repair would change it.
    type: bool
    default: false
  full:
    description: With O(state=verified), re-hash every file instead of comparing size and mtime.
    type: bool
    default: false
  allow_mass_delete:
    description: With O(state=synced), let this one run delete more than O(max_delete_ratio) allows.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Runs C(sync --dry-run) (or C(verify) without repair) and returns the plan.
  diff_mode:
    support: full
    description: Project and file counts before and after.
requirements:
  - The C(mirror-sync) engine installed on the managed host (the pypi_mirror_sync role does that).
notes:
  - Exit codes of the engine map to failures with its one-sentence error message, see RV(rc).
  - Run the task as the user that owns the mirror (O(ignore:become_user)), so that cron runs can update it.
"""

EXAMPLES = r"""
- name: Bring the mirror up to date from its configuration file
  pypi_mirror_sync:
    config: /etc/pypi-mirror/mirror.yml
  become: true
  become_user: pypi-mirror

- name: Mirror an allowlist with its dependencies, configured inline
  pypi_mirror_sync:
    directory: /srv/pypi-mirror
    upstream: http://127.0.0.1:8080/simple/
    projects:
      - requests>=2.31
    environments:
      - {python: "3.11", platform: linux, machine: x86_64}
    prereleases: false

- name: Show what a sync would fetch and delete, changing nothing
  pypi_mirror_sync:
    config: /etc/pypi-mirror/mirror.yml
  check_mode: true
  register: plan

- name: Re-hash every file and repair what is broken
  pypi_mirror_sync:
    config: /etc/pypi-mirror/mirror.yml
    state: verified
    full: true
    repair: true
"""

RETURN = r"""
rc:
  description:
    - Exit code of the engine. 0 all mirrored or clean, 1 some projects or files failed (or the
      state is damaged, and the message says how to rebuild it), 2 bad configuration or usage,
      3 another run holds the lock, 4 the deletion guard refused, 5 the filesystem is unsuitable
      or full, 130 stopped by SIGINT, 143 stopped by SIGTERM.
  returned: always
  type: int
  sample: 0
cmd:
  description: The command line that was run.
  returned: always
  type: list
  elements: str
  sample: [/opt/pypi-mirror/venv/bin/mirror-sync, -c, /etc/pypi-mirror/mirror.yml, sync, --json]
summary:
  description: The engine's complete JSON summary.
  returned: when the engine printed one
  type: dict
command:
  description: The engine command that produced the summary (V(sync) or V(verify)).
  returned: when the engine printed a summary
  type: str
  sample: sync
ok:
  description: Whether the engine considered the run a success.
  returned: when the engine printed a summary
  type: bool
dry_run:
  description: Whether the sync was a dry run (check mode).
  returned: with O(state=synced)
  type: bool
upstream:
  description: The upstream index that was mirrored.
  returned: with O(state=synced)
  type: str
directory:
  description: The mirror root.
  returned: with O(state=synced)
  type: str
started:
  description: When the run started (UTC, ISO 8601).
  returned: with O(state=synced)
  type: str
finished:
  description: When the run finished (UTC, ISO 8601).
  returned: with O(state=synced)
  type: str
duration_s:
  description: Wall time of the run in seconds.
  returned: with O(state=synced)
  type: float
upstream_serial:
  description: Upstream's last serial seen by the run.
  returned: with O(state=synced)
  type: int
mirror_serial:
  description: The mirror's serial after the run.
  returned: with O(state=synced)
  type: int
projects:
  description: Project counts (C(total), C(synced), C(deleted), C(failed)).
  returned: with O(state=synced)
  type: dict
  sample: {total: 10, synced: 2, deleted: 0, failed: 0}
files:
  description: File counts and bytes (C(total), C(downloaded), C(deleted), C(failed), C(bytes_total), C(bytes_downloaded)).
  returned: with O(state=synced)
  type: dict
failures:
  description: Projects or files that failed, each with a one-sentence C(error).
  returned: when the engine printed a summary
  type: list
  elements: dict
plan:
  description: What a sync would fetch and delete (C(fetch), C(delete), C(fetch_bytes), C(delete_bytes)).
  returned: in check mode with O(state=synced)
  type: dict
full:
  description: Whether every file was re-hashed.
  returned: with O(state=verified)
  type: bool
checked_pages:
  description: Pages checked.
  returned: with O(state=verified)
  type: int
checked_files:
  description: Files checked.
  returned: with O(state=verified)
  type: int
missing:
  description: Paths that are missing.
  returned: with O(state=verified)
  type: list
  elements: str
corrupt:
  description: Paths whose size or hash is wrong.
  returned: with O(state=verified)
  type: list
  elements: str
orphans:
  description: Files no page references.
  returned: with O(state=verified)
  type: list
  elements: str
repaired:
  description: Files re-fetched.
  returned: with O(state=verified)
  type: int
removed:
  description: Unreferenced files removed.
  returned: with O(state=verified)
  type: int
stderr_lines:
  description: The engine's log lines (stderr).
  returned: always
  type: list
  elements: str
"""

import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

INLINE_KEYS = (
    "directory",
    "upstream",
    "ca_bundle",
    "workers",
    "timeout",
    "deadline",
    "max_page_size",
    "max_root_size",
    "retries",
    "projects",
    "exclude",
    "dependencies",
    "environments",
    "prereleases",
    "latest",
    "max_file_size",
    "delete",
    "max_delete_ratio",
    "fsync",
    "statistics",
    "metrics",
)

# What the engine puts before its error sentence on stderr: a log record's time and level, or the CLI's prefix.
ENGINE_LOG_PREFIX = re.compile(r"^(?:\d{4}-\d\d-\d\dT\S+\s+(?:ERROR|CRITICAL)\s+|mirror-sync: error:\s*)")

EXIT_MEANING = {
    1: "some projects or files failed",
    2: "bad configuration or usage",
    3: "another run holds the mirror's lock",
    4: "the deletion guard refused the run",
    5: "the filesystem is unsuitable or full",
    130: "stopped by SIGINT",
    143: "stopped by SIGTERM",
}


def argument_spec():
    """The module's options, see DOCUMENTATION."""
    return dict(
        state=dict(type="str", choices=["synced", "verified"], default="synced"),
        executable=dict(type="path", default="/opt/pypi-mirror/venv/bin/mirror-sync"),
        config=dict(type="path"),
        directory=dict(type="path"),
        upstream=dict(type="str"),
        ca_bundle=dict(type="path"),
        workers=dict(type="int"),
        timeout=dict(type="float"),
        deadline=dict(type="float"),
        max_page_size=dict(type="str"),
        max_root_size=dict(type="str"),
        retries=dict(type="int"),
        projects=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str"),
        dependencies=dict(type="bool"),
        environments=dict(type="list", elements="dict"),
        prereleases=dict(type="bool"),
        latest=dict(type="int"),
        max_file_size=dict(type="str"),
        delete=dict(type="bool"),
        max_delete_ratio=dict(type="float"),
        fsync=dict(type="bool"),
        statistics=dict(type="dict"),
        metrics=dict(type="dict"),
        repair=dict(type="bool", default=False),
        full=dict(type="bool", default=False),
        allow_mass_delete=dict(type="bool", default=False),
    )


def inline_config(params):
    """The configuration mapping built from the inline options that were given."""
    data = {}
    for key in INLINE_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if key in ("max_file_size", "max_page_size", "max_root_size") and value.isdigit():
            value = int(value)
        data[key] = value
    return data


def write_temp_config(data):
    """Write the configuration as JSON (a subset of YAML) to a private temporary file."""
    fd, path = tempfile.mkstemp(prefix="pypi-mirror-sync-", suffix=".yml")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def build_command(params, config_path, check_mode):
    """The engine command line for the requested state."""
    cmd = [params["executable"], "-c", config_path]
    if params["state"] == "synced":
        cmd += ["sync", "--json"]
        if check_mode:
            cmd.append("--dry-run")
        elif params["allow_mass_delete"]:
            cmd.append("--allow-mass-delete")
    else:
        cmd += ["verify", "--json"]
        if params["full"]:
            cmd.append("--full")
        if params["repair"] and not check_mode:
            cmd.append("--repair")
    return cmd


def parse_summary(stdout):
    """The single JSON object the engine prints on stdout, or None."""
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        # Be lenient with stray lines: take the last line that is a JSON object.
        value = None
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                break
    return value if isinstance(value, dict) else None


def engine_error(stderr, rc):
    """The engine's one-sentence error: the last non-empty line of stderr."""
    for line in reversed(stderr.splitlines()):
        line = ENGINE_LOG_PREFIX.sub("", line.strip())
        if line:
            return line
    return "mirror-sync exited with code %d (%s)" % (rc, EXIT_MEANING.get(rc, "unknown error"))


def _sentence(text):
    """One line of engine text as a sentence (the engine's own words, with a final stop)."""
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def failure_message(state, summary, stderr, rc, shown=3):
    """The engine's own words for a failed run.

    A fatal error (bad configuration, lock, deletion guard, unreachable upstream, ...) is one sentence:
    the ``error`` of the JSON summary, else the last line of stderr. Failed projects or files are named
    with their errors, the first ``shown`` of them in full.
    """
    if summary is not None and summary.get("error"):
        return _sentence(summary["error"])
    failures = [f for f in (summary or {}).get("failures") or [] if isinstance(f, dict)]
    if failures:
        parts = []
        for failure in failures[:shown]:
            error = " ".join(str(failure.get("error") or "no reason given").split()).rstrip(".")
            project = failure.get("project")
            parts.append("%s: %s" % (project, error) if project and project not in error else error)
        more = len(failures) - shown
        tail = "; and %d more (see failures)" % more if more > 0 else ""
        noun = "project or file" if len(failures) == 1 else "projects or files"
        return "%d %s failed: %s%s." % (len(failures), noun, "; ".join(parts), tail)
    if state == "verified" and summary is not None:
        return "The mirror did not verify clean: %d missing, %d corrupt, %d orphaned file(s)." % (
            len(summary.get("missing") or []),
            len(summary.get("corrupt") or []),
            len(summary.get("orphans") or []),
        )
    return _sentence(engine_error(stderr, rc))


def is_changed(params, summary, check_mode):
    """Whether the run changed (or, in check mode, would change) the mirror."""
    if params["state"] == "synced":
        if summary.get("changed"):
            return True
        if check_mode:
            plan = summary.get("plan") or {}
            return bool(plan.get("fetch") or plan.get("delete"))
        return False
    if check_mode:
        return bool(params["repair"]) and bool(
            summary.get("missing") or summary.get("corrupt") or summary.get("orphans")
        )
    return bool(summary.get("repaired") or summary.get("removed") or summary.get("changed"))


def counts_from_status(module, params, config_path):
    """Project and file counts from ``mirror-sync status --json``; zeros for a new mirror."""
    rc, out, _err = module.run_command([params["executable"], "-c", config_path, "status", "--json"])
    status = parse_summary(out) if rc == 0 else None
    if not status:
        return {"projects": 0, "files": 0}
    return {"projects": int(status.get("projects") or 0), "files": int(status.get("files") or 0)}


def counts_after(before, summary, check_mode):
    """Project and file counts after the run, from the summary (or the plan in check mode)."""
    projects = summary.get("projects")
    files = summary.get("files")
    after = dict(before)
    if isinstance(projects, dict) and "total" in projects:
        after["projects"] = int(projects["total"])
    if check_mode:
        plan = summary.get("plan") or {}
        after["files"] = before["files"] + len(plan.get("fetch") or []) - len(plan.get("delete") or [])
    elif isinstance(files, dict) and "total" in files:
        after["files"] = int(files["total"])
    return after


def diff_text(counts):
    return "projects: %d\nfiles: %d\n" % (counts["projects"], counts["files"])


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("config", key) for key in INLINE_KEYS],
        required_one_of=[("config", "directory")],
        supports_check_mode=True,
    )
    params = module.params
    executable = params["executable"]
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        module.fail_json(msg="The mirror-sync executable %s does not exist or is not executable." % executable, rc=None)
    if params["state"] == "synced" and (params["repair"] or params["full"]):
        module.fail_json(msg="repair and full only apply to state=verified.")
    if params["state"] == "verified" and params["allow_mass_delete"]:
        module.fail_json(msg="allow_mass_delete only applies to state=synced.")

    temp_config = None
    if params["config"]:
        config_path = params["config"]
    else:
        temp_config = write_temp_config(inline_config(params))
        config_path = temp_config
    try:
        want_diff = module._diff and params["state"] == "synced"
        before = counts_from_status(module, params, config_path) if want_diff else None
        cmd = build_command(params, config_path, module.check_mode)
        rc, out, err = module.run_command(cmd)
    finally:
        if temp_config:
            os.unlink(temp_config)

    summary = parse_summary(out)
    result = dict(rc=rc, cmd=cmd, stderr_lines=err.splitlines(), changed=False)
    if summary is not None:
        result["summary"] = summary
        for key, value in summary.items():
            if key != "changed" and key not in ("rc", "cmd", "msg", "invocation", "diff", "failed"):
                result[key] = value

    repair_preview = (
        rc == 1
        and summary is not None
        and params["state"] == "verified"
        and params["repair"]
        and module.check_mode
        and not summary.get("failures")
    )
    if rc != 0 and not repair_preview:
        msg = failure_message(params["state"], summary, err, rc)
        result["changed"] = bool(summary) and is_changed(params, summary, module.check_mode)
        module.fail_json(msg=msg, **result)
    if summary is None:
        module.fail_json(msg="mirror-sync exited 0 but printed no JSON summary on stdout.", **result)

    result["changed"] = is_changed(params, summary, module.check_mode)
    if want_diff:
        after = counts_after(before, summary, module.check_mode)
        result["diff"] = dict(
            before=diff_text(before),
            after=diff_text(after),
            before_header="mirror (projects/files)",
            after_header="mirror (projects/files)",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
