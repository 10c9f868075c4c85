#!/usr/bin/python
# Copyright: pypi-mirror-kit contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: run the mirror_sync engine (``mirror-sync``) on the managed host."""



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
  cooldown:
    description:
      - Mirror a file only once its upload time is at least this old, a duration such as V(7d), V(12h) or V(P7D).
      - Left out, files are mirrored as soon as upstream has them.
    type: str
  cooldown_unknown:
    description:
      - With O(cooldown) or O(uploaded_before), what happens to files upstream gives no upload time for.
      - V(hold) holds them back (fail closed; the engine's default), V(allow) mirrors them.
    type: str
    choices: [allow, hold]
  uploaded_before:
    description:
      - Mirror only files uploaded before this RFC 3339 instant, such as V(2024-05-01T00:00:00Z).
    type: str
  cooldown_exempt:
    description:
      - PEP 508 requirements (a project and an optional version specifier, such as V(urllib3>=2.2.3)) whose
        releases skip O(cooldown) and O(uploaded_before).
    type: list
    elements: str
  advisories:
    description:
      - Path on the managed host of an OSV export of the PyPI ecosystem (the zip OSV publishes, or a directory of
        OSV JSON files) that O(block) judges releases by.
    type: path
  block:
    description:
      - Which releases the O(advisories) block; needs O(advisories). A blocked release is not mirrored, and is
        removed when its advisory arrives after it was mirrored.
    type: dict
    suboptions:
      malicious:
        description: Block releases a C(MAL-) advisory names (the engine's default is true).
        type: bool
      vulnerable:
        description:
          - Also block releases a vulnerability advisory of this severity or above names (the engine's default is
            V(off)). Quote V(off) in YAML, which would otherwise read it as false.
        type: str
        choices: ["off", low, moderate, high, critical]
  allow:
    description:
      - "Advisories to ignore for some releases, a mapping of advisory id (or alias) to a list of PEP 508
        requirements, such as C({GHSA-xxxx-xxxx-xxxx: [jinja2<3]}). Needs O(advisories)."
    type: dict
  local:
    description:
      - Directory on the managed host of the organisation's own wheels and sdists, published into the same index.
        Their project names are reserved; upstream's files of those names are not merged in.
    type: path
  merge_upstream:
    description: Local project names (see O(local)) that also take upstream's files.
    type: list
    elements: str
  public_url:
    description:
      - The mirror's own base URL, such as V(https://pypi.internal.example/). PEP 740 provenance links are
        published only with it.
    type: str
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
  - A failed run fails the task with the engine's own one-sentence message, taken from the JSON report the engine
    prints (RV(error), with RV(kind) and RV(exit_code)); only when there is no report (no engine, a crash) does the
    message come from the engine's last line on stderr.
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
    - Exit code of the engine (the engine's README lists them); 0 is success.
  returned: always
  type: int
  sample: 0
error:
  description: The engine's one-sentence message for a fatal error (the run stopped as a whole).
  returned: when the engine stopped with a fatal error
  type: str
  sample: another mirror-sync run holds /srv/pypi-mirror/.lock; not starting a second one
kind:
  description:
    - What the fatal error was, named by the engine (from its exception class), e.g. V(config), V(locked),
      V(delete_guard), V(filesystem), V(upstream), V(state_damaged), V(interrupted).
  returned: when the engine stopped with a fatal error
  type: str
  sample: locked
exit_code:
  description: The engine's exit code, as its report of a fatal error gives it (the same as RV(rc)).
  returned: when the engine stopped with a fatal error
  type: int
  sample: 3
cmd:
  description: The command line that was run.
  returned: always
  type: list
  elements: str
  sample: [/opt/pypi-mirror/venv/bin/mirror-sync, -c, /etc/pypi-mirror/mirror.yml, sync, --json]
summary:
  description: The engine's complete JSON report (its summary, or the report of a fatal error).
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
policy:
  description:
    - What the policy keeps out of the mirror, from the engine's summary; C(held) lists files held back (each with
      its C(rule) and the date it C(matures)), C(blocked) lists files blocked (each with its C(advisory)),
      C(reserved) names the projects reserved for local packages, and C(next_maturity) is the earliest date a
      held file matures.
  returned: with O(state=synced), when a policy or a local directory is configured
  type: dict
  sample: {held: [], blocked: [{project: evil, filename: evil-2.0-py3-none-any.whl, version: "2.0", rule: malicious,
           advisory: MAL-2026-1}], reserved: [], next_maturity: null}
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

# How an option reaches the engine.
RUN = "run"  # it chooses how and where the engine runs (the module reads it itself)
KEY = "key"  # a key of the engine's configuration: the inline configuration file the module writes


class Flag:
    """A command-line flag of one engine command, given when the option is true."""

    def __init__(self, flag, command, in_check_mode=True):
        self.flag = flag
        self.command = command
        self.in_check_mode = in_check_mode  # False: left out in check mode (it would change the mirror)


# What each state runs: the engine's command, and the flag that check mode adds to it.
STATES = {
    "synced": {"command": "sync", "check_mode_flag": "--dry-run"},
    "verified": {"command": "verify", "check_mode_flag": None},
}

# Every option once: its argument spec (see DOCUMENTATION) and how it reaches the engine.
OPTIONS = (
    ("state", {"type": "str", "choices": sorted(STATES), "default": "synced"}, RUN),
    ("executable", {"type": "path", "default": "/opt/pypi-mirror/venv/bin/mirror-sync"}, RUN),
    ("config", {"type": "path"}, RUN),
    ("directory", {"type": "path"}, KEY),
    ("upstream", {"type": "str"}, KEY),
    ("ca_bundle", {"type": "path"}, KEY),
    ("workers", {"type": "int"}, KEY),
    ("timeout", {"type": "float"}, KEY),
    ("deadline", {"type": "float"}, KEY),
    ("max_page_size", {"type": "str"}, KEY),
    ("max_root_size", {"type": "str"}, KEY),
    ("retries", {"type": "int"}, KEY),
    ("projects", {"type": "list", "elements": "str"}, KEY),
    ("exclude", {"type": "list", "elements": "str"}, KEY),
    ("dependencies", {"type": "bool"}, KEY),
    ("environments", {"type": "list", "elements": "dict"}, KEY),
    ("prereleases", {"type": "bool"}, KEY),
    ("latest", {"type": "int"}, KEY),
    ("max_file_size", {"type": "str"}, KEY),
    ("delete", {"type": "bool"}, KEY),
    ("max_delete_ratio", {"type": "float"}, KEY),
    ("fsync", {"type": "bool"}, KEY),
    ("statistics", {"type": "dict"}, KEY),
    ("metrics", {"type": "dict"}, KEY),
    ("cooldown", {"type": "str"}, KEY),
    ("cooldown_unknown", {"type": "str", "choices": ["allow", "hold"]}, KEY),
    ("uploaded_before", {"type": "str"}, KEY),
    ("cooldown_exempt", {"type": "list", "elements": "str"}, KEY),
    ("advisories", {"type": "path"}, KEY),
    ("block", {"type": "dict", "options": {
        "malicious": {"type": "bool"},
        "vulnerable": {"type": "str", "choices": ["off", "low", "moderate", "high", "critical"]},
    }}, KEY),
    ("allow", {"type": "dict"}, KEY),
    ("local", {"type": "path"}, KEY),
    ("merge_upstream", {"type": "list", "elements": "str"}, KEY),
    ("public_url", {"type": "str"}, KEY),
    ("full", {"type": "bool", "default": False}, Flag("--full", "verify")),
    ("repair", {"type": "bool", "default": False}, Flag("--repair", "verify", in_check_mode=False)),
    ("allow_mass_delete", {"type": "bool", "default": False}, Flag("--allow-mass-delete", "sync", in_check_mode=False)),
)

# What the engine puts before its error sentence on stderr: a log record's time and level, or the CLI's prefix.
ENGINE_LOG_PREFIX = re.compile(r"^(?:\d{4}-\d\d-\d\dT\S+\s+(?:ERROR|CRITICAL)\s+|mirror-sync:(?: error:)?\s*)")
# Result keys the module sets itself: a report's keys of the same name are not copied over them.
OWN_KEYS = ("changed", "rc", "cmd", "msg", "invocation", "diff", "failed", "stderr_lines", "summary")


# ----------------------------------------------------------------------------- derived from OPTIONS
def argument_spec():
    """The module's options: the argument specs of OPTIONS."""
    return {name: dict(spec) for name, spec, _via in OPTIONS}


def config_keys():
    """The options that are configuration keys of the engine."""
    return tuple(name for name, _spec, via in OPTIONS if via == KEY)


def flags():
    """(option, Flag) for every option that is a command-line flag."""
    return tuple((name, via) for name, _spec, via in OPTIONS if isinstance(via, Flag))


def inline_config(params):
    """The configuration mapping built from the configuration options that were given."""
    return {key: params[key] for key in config_keys() if params.get(key) is not None}


def misplaced_flags(params):
    """(option, the state it belongs to) for each flag option that was set for another state's command."""
    command = STATES[params["state"]]["command"]
    owner = {spec["command"]: state for state, spec in STATES.items()}
    return [(name, owner[flag.command]) for name, flag in flags() if params[name] and flag.command != command]


def command_line(params, config_path, check_mode):
    """The engine command line for the requested state."""
    state = STATES[params["state"]]
    cmd = [params["executable"], "-c", config_path, state["command"], "--json"]
    if check_mode and state["check_mode_flag"]:
        cmd.append(state["check_mode_flag"])
    for name, flag in flags():
        if flag.command == state["command"] and params[name] and (flag.in_check_mode or not check_mode):
            cmd.append(flag.flag)
    return cmd


# ----------------------------------------------------------------------------- the engine's answers
def parse_report(stdout):
    """The single JSON object the engine prints on stdout (its summary, or the report of a fatal error), or None."""
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


def _sentence(text):
    """One line of engine text as a sentence (the engine's own words, with a final stop)."""
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def last_words(stderr):
    """The last line the engine wrote on stderr, as a sentence without its log prefix; None if it wrote none."""
    for line in reversed(stderr.splitlines()):
        line = ENGINE_LOG_PREFIX.sub("", line.strip())
        if line:
            return _sentence(line)
    return None


def failure_message(report, stderr, rc, shown=3):
    """The engine's own words for a failed run.

    A fatal error (bad configuration, lock, deletion guard, unreachable upstream, a stop signal, ...) is
    the ``error`` sentence of the engine's JSON report (its ``kind`` and ``exit_code`` say which). Failed
    projects or files are named with their errors, the first ``shown`` of them in full.
    """
    if report is None:  # no engine, a crash, or a command line it refused: the generic fallback
        return last_words(stderr) or f"mirror-sync exited with code {rc} and printed no report on stdout."
    if report.get("error"):
        return _sentence(report["error"])
    failures = [f for f in report.get("failures") or [] if isinstance(f, dict)]
    if failures:
        parts = []
        for failure in failures[:shown]:
            error = " ".join(str(failure.get("error") or "no reason given").split()).rstrip(".")
            project = failure.get("project")
            parts.append(f"{project}: {error}" if project and project not in error else error)
        more = len(failures) - shown
        tail = f"; and {more} more (see failures)" if more > 0 else ""
        noun = "project or file" if len(failures) == 1 else "projects or files"
        return f"{len(failures)} {noun} failed: {'; '.join(parts)}{tail}."
    if report.get("command") == "verify":
        missing, corrupt, orphans = (len(report.get(key) or []) for key in ("missing", "corrupt", "orphans"))
        return f"The mirror did not verify clean: {missing} missing, {corrupt} corrupt, {orphans} orphaned file(s)."
    return last_words(stderr) or f"mirror-sync exited with code {rc}."


class Engine:
    """The mirror-sync program on the managed host, with one configuration file."""

    def __init__(self, module, config_path):
        self.module = module
        self.params = module.params
        self.config_path = config_path

    def run(self):
        """Run the state's command; the result so far (rc, cmd, the report and its keys) and the report."""
        cmd = command_line(self.params, self.config_path, self.module.check_mode)
        rc, out, err = self.module.run_command(cmd)
        report = parse_report(out)
        result = {"rc": rc, "cmd": cmd, "stderr_lines": err.splitlines(), "changed": False}
        if report is not None:
            result["summary"] = report
            result.update((key, value) for key, value in report.items() if key not in OWN_KEYS)
        return result, report, err

    def counts(self):
        """Project and file counts from ``mirror-sync status --json``; zeros for a new mirror."""
        rc, out, _err = self.module.run_command([self.params["executable"], "-c", self.config_path, "status", "--json"])
        status = parse_report(out) if rc == 0 else None
        if not status:
            return {"projects": 0, "files": 0}
        return {"projects": int(status.get("projects") or 0), "files": int(status.get("files") or 0)}


# ----------------------------------------------------------------------------- one handler per state
def sync_changed(report, check_mode):
    """Whether the sync changed the mirror (the engine's verdict) or, in check mode, its plan would."""
    if report.get("changed"):
        return True
    if check_mode:
        plan = report.get("plan") or {}
        return bool(plan.get("fetch") or plan.get("delete"))
    return False


def counts_after(before, report, check_mode):
    """Project and file counts after the run, from the report (or the plan in check mode)."""
    projects = report.get("projects")
    files = report.get("files")
    after = dict(before)
    if isinstance(projects, dict) and "total" in projects:
        after["projects"] = int(projects["total"])
    if check_mode:
        plan = report.get("plan") or {}
        after["files"] = before["files"] + len(plan.get("fetch") or []) - len(plan.get("delete") or [])
    elif isinstance(files, dict) and "total" in files:
        after["files"] = int(files["total"])
    return after


def diff_of(before, after):
    header = "mirror (projects/files)"

    def text(counts):
        return f"projects: {counts['projects']:d}\nfiles: {counts['files']:d}\n"

    return {"before": text(before), "after": text(after), "before_header": header, "after_header": header}


def state_synced(module, engine):
    """mirror-sync sync (sync --dry-run in check mode): (failure message or None, result)."""
    before = engine.counts() if module._diff else None
    result, report, err = engine.run()
    if result["rc"] != 0:
        result["changed"] = report is not None and sync_changed(report, module.check_mode)
        return failure_message(report, err, result["rc"]), result
    if report is None:
        return "mirror-sync exited 0 but printed no JSON report on stdout.", result
    result["changed"] = sync_changed(report, module.check_mode)
    if before is not None:
        result["diff"] = diff_of(before, counts_after(before, report, module.check_mode))
    return None, result


def verify_changed(params, report, check_mode):
    """Whether the verify repaired something or, in check mode, a repair would."""
    if check_mode:
        return bool(params["repair"]) and bool(report.get("missing") or report.get("corrupt") or report.get("orphans"))
    return bool(report.get("repaired") or report.get("removed") or report.get("changed"))


def state_verified(module, engine):
    """mirror-sync verify [--full] [--repair] (without --repair in check mode): (failure message or None, result)."""
    result, report, err = engine.run()
    # In check mode a repair only verifies: damage found (exit 1, no failures) is what the repair would change.
    preview = (module.check_mode and module.params["repair"] and result["rc"] == 1 and report is not None
               and not report.get("failures"))
    if result["rc"] != 0 and not preview:
        result["changed"] = report is not None and verify_changed(module.params, report, module.check_mode)
        return failure_message(report, err, result["rc"]), result
    if report is None:
        return "mirror-sync exited 0 but printed no JSON report on stdout.", result
    result["changed"] = verify_changed(module.params, report, module.check_mode)
    return None, result


HANDLERS = {"synced": state_synced, "verified": state_verified}


# ----------------------------------------------------------------------------- the module
def write_temp_config(data):
    """Write the configuration as JSON (a subset of YAML) to a private temporary file."""
    fd, path = tempfile.mkstemp(prefix="pypi-mirror-sync-", suffix=".yml")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("config", key) for key in config_keys()],
        required_one_of=[("config", "directory")],
        supports_check_mode=True,
    )
    params = module.params
    executable = params["executable"]
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        module.fail_json(msg=f"The mirror-sync executable {executable} does not exist or is not executable.", rc=None)
    misplaced = misplaced_flags(params)
    if misplaced:
        names = " and ".join(name for name, _state in misplaced)
        verb = "applies" if len(misplaced) == 1 else "apply"
        module.fail_json(msg=f"{names} only {verb} to state={misplaced[0][1]}.")

    temp_config = None if params["config"] else write_temp_config(inline_config(params))
    try:
        msg, result = HANDLERS[params["state"]](module, Engine(module, params["config"] or temp_config))
    finally:
        if temp_config:
            os.unlink(temp_config)
    if msg is not None:
        module.fail_json(msg=msg, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
