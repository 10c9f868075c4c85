"""The pypi_mirror_sync Ansible module, run the way Ansible runs a module: a separate Python process
reading its arguments from a JSON file ({"ANSIBLE_MODULE_ARGS": {...}}) and printing one JSON result.

The engine it drives is either a small real program (``fake-mirror-sync``, written per test) that
records its command line and prints a given JSON summary with a given exit code, or the real
``mirror-sync`` against a generated upstream served on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.support.index_tree import IndexTree
from tests.support.upstream_server import UpstreamServer

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "library" / "pypi_mirror_sync.py"

FAKE_ENGINE = r'''#!{python}
"""Stand-in for mirror-sync: record argv (and the config file's text), answer from a behaviour file."""
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "behaviour.json")) as fh:
    behaviour = json.load(fh)
argv = sys.argv[1:]
config = argv[argv.index("-c") + 1]
with open(config) as fh:
    config_text = fh.read()
with open(os.path.join(here, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps({{"argv": argv, "config_text": config_text}}) + "\n")
command = argv[argv.index("-c") + 2]
answer = behaviour[command]
sys.stderr.write(answer.get("stderr", "level=info msg=working\n"))
if answer.get("summary") is not None:
    sys.stdout.write(json.dumps(answer["summary"]) + "\n")
sys.exit(answer.get("rc", 0))
'''


def sync_summary(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "command": "sync",
        "ok": True,
        "dry_run": False,
        "upstream": "http://127.0.0.1:9/simple/",
        "directory": "/srv/pypi-mirror",
        "started": "2026-11-24T13:00:00Z",
        "finished": "2026-11-24T13:00:01Z",
        "duration_s": 1.2,
        "upstream_serial": 123,
        "mirror_serial": 123,
        "projects": {"total": 10, "synced": 2, "deleted": 0, "failed": 0},
        "files": {"total": 30, "downloaded": 3, "deleted": 1, "failed": 0, "bytes_total": 123456, "bytes_downloaded": 2345},
        "changed": True,
        "failures": [],
    }
    summary.update(overrides)
    return summary


def verify_summary(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "command": "verify",
        "ok": True,
        "full": False,
        "checked_pages": 5,
        "checked_files": 8,
        "missing": [],
        "corrupt": [],
        "orphans": [],
        "repaired": 0,
        "removed": 0,
        "failures": [],
    }
    summary.update(overrides)
    return summary


class FakeEngine:
    """A real executable whose answers are set per test and whose calls are recorded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir()
        self.path = directory / "fake-mirror-sync"
        self.path.write_text(FAKE_ENGINE.format(python=sys.executable))
        self.path.chmod(0o755)
        self.behaviour: dict[str, dict[str, Any]] = {
            "sync": {"summary": sync_summary()},
            "verify": {"summary": verify_summary()},
            "status": {"summary": {"command": "status", "projects": 8, "files": 28}},
        }

    def answer(self, command: str, summary: Optional[dict[str, Any]] = None, rc: int = 0, stderr: str = "") -> None:
        self.behaviour[command] = {"summary": summary, "rc": rc, "stderr": stderr}

    def write(self) -> None:
        (self.directory / "behaviour.json").write_text(json.dumps(self.behaviour))

    def calls(self) -> list[dict[str, Any]]:
        log = self.directory / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


def run_module(tmp_path: Path, args: dict[str, Any], check_mode: bool = False, diff: bool = False,
               env: Optional[dict[str, str]] = None) -> tuple[int, dict[str, Any]]:
    """Run the module as Ansible does; (exit code, parsed result)."""
    module_args = dict(args)
    module_args["_ansible_check_mode"] = check_mode
    module_args["_ansible_diff"] = diff
    module_args["_ansible_tmpdir"] = str(tmp_path)
    module_args["_ansible_remote_tmp"] = str(tmp_path)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    proc_env["TMPDIR"] = str(tmp_path)
    if env:
        proc_env.update(env)
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True,
                          timeout=300, env=proc_env, cwd=tmp_path)
    assert proc.stdout.strip(), f"module printed nothing; stderr: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def engine(tmp_path: Path) -> FakeEngine:
    fake = FakeEngine(tmp_path / "engine")
    fake.write()
    return fake


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mirror.yml"
    path.write_text("directory: /srv/pypi-mirror\nprojects: [requests]\n")
    return path


def test_sync_reports_the_engines_summary(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 0, result
    assert result["changed"] is True
    assert result["rc"] == 0
    assert result["projects"] == {"total": 10, "synced": 2, "deleted": 0, "failed": 0}
    assert result["files"]["bytes_downloaded"] == 2345
    assert result["mirror_serial"] == 123
    assert result["summary"]["command"] == "sync"
    assert "failed" not in result or result["failed"] is False
    calls = engine.calls()
    assert [c["argv"] for c in calls] == [["-c", str(config_file), "sync", "--json"]]


def test_unchanged_sync_is_not_changed(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    engine.answer("sync", sync_summary(changed=False, files={"total": 30, "downloaded": 0, "deleted": 0, "failed": 0,
                                                             "bytes_total": 1, "bytes_downloaded": 0}))
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 0, result
    assert result["changed"] is False


def test_check_mode_runs_a_dry_run_and_returns_the_plan(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    plan = {"fetch": [{"project": "foo", "filename": "foo-1.0-py3-none-any.whl", "size": 1234}], "delete": [],
            "fetch_bytes": 1234, "delete_bytes": 0}
    engine.answer("sync", sync_summary(dry_run=True, changed=False, plan=plan))
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)}, check_mode=True)
    assert rc == 0, result
    assert result["plan"] == plan
    assert result["dry_run"] is True
    # something would be fetched, so the task would change the mirror
    assert result["changed"] is True
    assert [c["argv"] for c in engine.calls()] == [["-c", str(config_file), "sync", "--json", "--dry-run"]]


def test_check_mode_with_an_empty_plan_is_not_changed(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    plan = {"fetch": [], "delete": [], "fetch_bytes": 0, "delete_bytes": 0}
    engine.answer("sync", sync_summary(dry_run=True, changed=False, plan=plan))
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)}, check_mode=True)
    assert rc == 0, result
    assert result["changed"] is False


def test_inline_options_become_a_temporary_config(tmp_path: Path, engine: FakeEngine) -> None:
    args = {
        "executable": str(engine.path),
        "directory": "/srv/m",
        "upstream": "http://127.0.0.1:9/simple/",
        "ca_bundle": "/etc/pypi-mirror/upstream-ca.pem",
        "projects": ["requests>=2.31", "uvicorn[standard]"],
        "environments": [{"python": "3.11", "platform": "linux", "machine": "x86_64"}],
        "prereleases": False,
        "latest": 5,
        "max_file_size": "50M",
        "workers": 3,
        "statistics": {"access_log_pattern": "/var/log/nginx/m.log*"},
    }
    rc, result = run_module(tmp_path, args)
    assert rc == 0, result
    (call,) = engine.calls()
    config_path = call["argv"][1]
    assert json.loads(call["config_text"]) == {
        "directory": "/srv/m",
        "upstream": "http://127.0.0.1:9/simple/",
        "ca_bundle": "/etc/pypi-mirror/upstream-ca.pem",
        "projects": ["requests>=2.31", "uvicorn[standard]"],
        "environments": [{"python": "3.11", "platform": "linux", "machine": "x86_64"}],
        "prereleases": False,
        "latest": 5,
        "max_file_size": "50M",
        "workers": 3,
        "statistics": {"access_log_pattern": "/var/log/nginx/m.log*"},
    }
    assert not Path(config_path).exists(), "the temporary config must be removed"


def test_without_a_report_the_last_line_on_stderr_is_the_message(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    """The generic fallback, for an engine that printed no JSON report (argparse refusing its command
    line, a crash): the engine's last words on stderr."""
    sentence = f"{config_file}: workers must be between 1 and 64, not 99."
    engine.answer("sync", None, rc=2, stderr=f"level=info msg=starting\n{sentence}\n")
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1
    assert result["failed"] is True
    assert result["msg"] == sentence
    assert result["rc"] == 2
    assert result["changed"] is False


@pytest.mark.parametrize("code", [3, 4, 5])
def test_without_a_report_or_stderr_the_exit_code_is_the_message(tmp_path: Path, engine: FakeEngine, config_file: Path, code: int) -> None:
    engine.answer("sync", None, rc=code, stderr="")
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1 and result["failed"] is True and result["rc"] == code
    assert f"exited with code {code}" in result["msg"]


def test_partial_failure_lists_the_failures(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    failures = [{"project": "foo", "error": "upstream answered 500 for foo."}, {"project": "bar", "error": "x."}]
    engine.answer("sync", sync_summary(ok=False, failures=failures), rc=1)
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == "2 projects or files failed: upstream answered 500 for foo; bar: x."
    assert result["failures"] == failures
    assert result["summary"]["ok"] is False
    assert result["changed"] is True


def test_fatal_error_carries_the_engines_sentence(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    """A fatal error is the engine's JSON report ({"ok": false, "error": ..., "kind": ...}), with no failures
    list: its sentence is the message, whatever stderr says last."""
    sentence = "project requests: malformed _last-serial '37059094'"
    engine.answer("sync", {"command": "sync", "ok": False, "error": sentence, "exit_code": 1, "kind": "upstream"}, rc=1,
                  stderr=f"2026-11-24T13:00:00 ERROR {sentence}\nsomething else entirely\n")
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == sentence + "."
    assert result["kind"] == "upstream" and result["exit_code"] == 1 and result["rc"] == 1
    assert "0 failure" not in result["msg"]


@pytest.mark.parametrize("code, kind", [(3, "locked"), (4, "delete_guard"), (5, "filesystem"), (143, "interrupted")])
def test_the_meaning_of_an_exit_code_comes_from_the_engines_report(tmp_path: Path, engine: FakeEngine, config_file: Path,
                                                                    code: int, kind: str) -> None:
    sentence = f"the engine's own sentence for exit {code}"
    engine.answer("sync", {"command": "sync", "ok": False, "error": sentence, "exit_code": code, "kind": kind}, rc=code)
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == sentence + "."
    assert (result["rc"], result["kind"]) == (code, kind)


def test_many_failures_name_the_first_few(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    failures = [{"project": f"p{i}", "error": f"upstream answered 404 for p{i}."} for i in range(5)]
    engine.answer("sync", sync_summary(ok=False, failures=failures), rc=1)
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)})
    assert rc == 1
    assert result["msg"] == (
        "5 projects or files failed: upstream answered 404 for p0; upstream answered 404 for p1; "
        "upstream answered 404 for p2; and 2 more (see failures)."
    )


def test_verify_with_repair_and_full(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    engine.answer("verify", verify_summary(full=True, missing=["packages/aa/bb/x.whl"], repaired=1))
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file),
                                       "state": "verified", "repair": True, "full": True})
    assert rc == 0, result
    assert result["changed"] is True
    assert result["repaired"] == 1
    assert [c["argv"] for c in engine.calls()] == [["-c", str(config_file), "verify", "--json", "--full", "--repair"]]


def test_clean_verify_is_not_changed(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file), "state": "verified"})
    assert rc == 0, result
    assert result["changed"] is False
    assert result["checked_files"] == 8


def test_verify_that_finds_damage_fails_without_repair(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    engine.answer("verify", verify_summary(ok=False, corrupt=["packages/aa/bb/x.whl"]), rc=1)
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file), "state": "verified"})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == "The mirror did not verify clean: 0 missing, 1 corrupt, 0 orphaned file(s)."


def test_repair_in_check_mode_only_verifies(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    engine.answer("verify", verify_summary(ok=False, missing=["packages/aa/bb/x.whl"]), rc=1)
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file),
                                       "state": "verified", "repair": True}, check_mode=True)
    assert rc == 0, result
    assert result["changed"] is True
    assert [c["argv"] for c in engine.calls()] == [["-c", str(config_file), "verify", "--json"]]


def test_diff_mode_shows_counts_before_and_after(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)}, diff=True)
    assert rc == 0, result
    assert result["diff"]["before"] == "projects: 8\nfiles: 28\n"
    assert result["diff"]["after"] == "projects: 10\nfiles: 30\n"
    assert [c["argv"][2] for c in engine.calls()] == ["status", "sync"]


def test_diff_mode_on_a_new_mirror_starts_from_zero(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    engine.answer("status", None, rc=2, stderr="no state yet.\n")
    plan = {"fetch": [{"project": "a", "filename": "a-1.whl", "size": 1}, {"project": "b", "filename": "b-1.whl", "size": 1}],
            "delete": [], "fetch_bytes": 2, "delete_bytes": 0}
    engine.answer("sync", sync_summary(dry_run=True, changed=True, plan=plan,
                                       projects={"total": 2, "synced": 0, "deleted": 0, "failed": 0}))
    engine.write()
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file)},
                            check_mode=True, diff=True)
    assert rc == 0, result
    assert result["diff"]["before"] == "projects: 0\nfiles: 0\n"
    assert result["diff"]["after"] == "projects: 2\nfiles: 2\n"


def test_config_and_inline_options_exclude_each_other(tmp_path: Path, engine: FakeEngine, config_file: Path) -> None:
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file), "directory": "/x"})
    assert rc == 1 and result["failed"] is True
    assert "mutually exclusive" in result["msg"]
    assert engine.calls() == []


# --------------------------------------------------------------------------- the option table, unit by unit
def load_module() -> Any:
    """The module's source as a Python module (its functions are pure: no AnsibleModule is made)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pypi_mirror_sync_module", MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params(**given: Any) -> dict[str, Any]:
    """Module parameters as AnsibleModule hands them over: every option, its default where not given."""
    spec = load_module().argument_spec()
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(given)
    return values


@pytest.mark.parametrize("given, check_mode, tail", [
    ({}, False, ["sync", "--json"]),
    ({}, True, ["sync", "--json", "--dry-run"]),
    ({"allow_mass_delete": True}, False, ["sync", "--json", "--allow-mass-delete"]),
    ({"allow_mass_delete": True}, True, ["sync", "--json", "--dry-run"]),  # a dry run deletes nothing anyway
    ({"state": "verified"}, False, ["verify", "--json"]),
    ({"state": "verified", "full": True, "repair": True}, False, ["verify", "--json", "--full", "--repair"]),
    ({"state": "verified", "full": True, "repair": True}, True, ["verify", "--json", "--full"]),  # check mode: no repair
])
def test_the_command_line_is_derived_from_the_option_table(given: dict[str, Any], check_mode: bool, tail: list[str]) -> None:
    module = load_module()
    cmd = module.command_line(params(executable="/x/mirror-sync", **given), "/etc/m.yml", check_mode)
    assert cmd == ["/x/mirror-sync", "-c", "/etc/m.yml"] + tail


def test_the_inline_configuration_is_the_given_configuration_options() -> None:
    module = load_module()
    given = params(directory="/srv/m", workers=4, prereleases=False, max_file_size="50M", state="synced", full=False)
    assert module.inline_config(given) == {"directory": "/srv/m", "workers": 4, "prereleases": False, "max_file_size": "50M"}
    assert "state" not in module.config_keys() and "full" not in module.config_keys()
    assert module.argument_spec()["ca_bundle"] == {"type": "path"}


def test_a_flag_of_the_other_state_is_named_with_its_state() -> None:
    module = load_module()
    assert module.misplaced_flags(params(repair=True)) == [("repair", "verified")]
    assert module.misplaced_flags(params(full=True, repair=True)) == [("full", "verified"), ("repair", "verified")]
    assert module.misplaced_flags(params(state="verified", allow_mass_delete=True)) == [("allow_mass_delete", "synced")]
    assert module.misplaced_flags(params(state="verified", repair=True, full=True)) == []


def test_a_missing_executable_is_a_clear_failure(tmp_path: Path, config_file: Path) -> None:
    missing = tmp_path / "nowhere" / "mirror-sync"
    rc, result = run_module(tmp_path, {"executable": str(missing), "config": str(config_file)})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == f"The mirror-sync executable {missing} does not exist or is not executable."


@pytest.mark.parametrize("given, msg", [
    ({"repair": True}, "repair only applies to state=verified."),
    ({"repair": True, "full": True}, "full and repair only apply to state=verified."),
    ({"state": "verified", "allow_mass_delete": True}, "allow_mass_delete only applies to state=synced."),
])
def test_flags_need_their_state(tmp_path: Path, engine: FakeEngine, config_file: Path, given: dict[str, Any], msg: str) -> None:
    rc, result = run_module(tmp_path, {"executable": str(engine.path), "config": str(config_file), **given})
    assert rc == 1 and result["msg"] == msg
    assert engine.calls() == []


# --------------------------------------------------------------------------- the real engine
def real_engine() -> Optional[Path]:
    candidate = Path(sys.executable).parent / "mirror-sync"
    return candidate if candidate.exists() else None


@pytest.fixture
def local_upstream(index_tree: IndexTree, upstream: UpstreamServer) -> str:
    """A generated index served by the suite's loopback upstream (tests.support)."""
    index_tree.add_wheel("alpha", "1.0", requires_dist=["beta>=1"])
    index_tree.add_wheel("beta", "1.0")
    index_tree.add_wheel("unrelated", "1.0")
    index_tree.write()
    return upstream.url


@pytest.mark.skipif(real_engine() is None, reason="mirror-sync is not installed in this interpreter's environment")
def test_real_engine_fatal_error_is_its_report(tmp_path: Path) -> None:
    """The real engine refuses a bad configuration with its JSON report: the module's message is its sentence."""
    args = {"executable": str(real_engine()), "directory": str(tmp_path / "mirror"), "upstream": "http://127.0.0.1:9/simple/",
            "workers": 99}
    rc, result = run_module(tmp_path, args)
    assert rc == 1 and result["failed"] is True
    assert (result["rc"], result["kind"], result["exit_code"]) == (2, "config", 2)
    assert "key 'workers' must be between 1 and 64, not 99" in result["msg"]
    assert result["msg"] == result["error"] + "."


@pytest.mark.skipif(real_engine() is None, reason="mirror-sync is not installed in this interpreter's environment")
def test_real_engine_plan_sync_and_verify(tmp_path: Path, local_upstream: str) -> None:
    executable = str(real_engine())
    directory = tmp_path / "mirror"
    args = {"executable": executable, "directory": str(directory), "upstream": local_upstream,
            "projects": ["alpha"], "workers": 2, "timeout": 10.0, "retries": 1}

    rc, plan = run_module(tmp_path, args, check_mode=True, diff=True)
    assert rc == 0, plan
    assert plan["changed"] is True
    assert sorted(f["filename"] for f in plan["plan"]["fetch"]) == ["alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl"]
    assert plan["diff"]["after"].endswith("files: 2\n")
    on_disk = [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []
    assert not [p for p in on_disk if "web" in p.parts], f"check mode published files: {on_disk}"

    rc, synced = run_module(tmp_path, args)
    assert rc == 0, synced
    assert synced["changed"] is True
    assert synced["files"]["downloaded"] == 2
    assert (directory / "web" / "simple" / "alpha" / "index.v1_json").is_file()

    rc, again = run_module(tmp_path, args)
    assert rc == 0, again
    assert again["changed"] is False

    verify_args = {k: v for k, v in args.items()}
    verify_args.update(state="verified", full=True)
    rc, verified = run_module(tmp_path, verify_args)
    assert rc == 0, verified
    assert verified["changed"] is False
    assert verified["checked_files"] == 2


@pytest.mark.skipif(real_engine() is None, reason="mirror-sync is not installed in this interpreter's environment")
def test_real_engine_takes_the_policy_options(tmp_path: Path, index_tree: IndexTree, local_upstream: str) -> None:
    """The policy options reach the engine as its keys (block's suboptions that are not given, None, are its
    defaults): a MAL- advisory keeps a release out of the plan, the previous one is mirrored instead. Blocking
    without advisories is the engine's sentence."""
    from tests.support.osv_export import advisory, dumps, write_zip

    index_tree.add_wheel("unrelated", "0.9")
    index_tree.write()
    export = write_zip(tmp_path / "PyPI.zip", {"MAL-2026-7.json": dumps(advisory("MAL-2026-7", "unrelated", versions=["1.0"]))})
    args = {"executable": str(real_engine()), "directory": str(tmp_path / "mirror"), "upstream": local_upstream,
            "projects": ["alpha", "unrelated"], "workers": 2, "timeout": 10.0, "retries": 1,
            "advisories": str(export), "block": {"malicious": True}, "cooldown_exempt": ["alpha"],
            "cooldown_unknown": "allow", "public_url": "http://127.0.0.1:9/"}
    rc, plan = run_module(tmp_path, args, check_mode=True)
    assert rc == 0, plan
    assert sorted(f["filename"] for f in plan["plan"]["fetch"]) == [
        "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "unrelated-0.9-py3-none-any.whl"]
    assert [(b["filename"], b["advisory"]) for b in plan["policy"]["blocked"]] == [("unrelated-1.0-py3-none-any.whl", "MAL-2026-7")]

    rc, refused = run_module(tmp_path, {**{k: v for k, v in args.items() if k != "advisories"}, "block": {"vulnerable": "high"}},
                             check_mode=True)
    assert rc == 1 and refused["kind"] == "config", refused
    assert "key 'block'" in refused["msg"] and "needs 'advisories'" in refused["msg"]
