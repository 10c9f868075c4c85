"""Static checks of the Ansible layer: syntax, ansible-lint (production profile), the module's
documentation, role argument specs against defaults, the inventory's defaults, and the engine
configuration the sync role renders (loaded with the engine's own config loader)."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansibleutil import (
    REPO,
    ROLES,
    missing_collections,
    render_template,
    run,
    tool,
)

ROLE_NAMES = ["pypi_mirror_storage", "pypi_mirror_sync", "pypi_mirror_nginx", "pypi_mirror_client"]
PLAYBOOKS = ["mirror.yml", "clients.yml", "site.yml", "remove.yml"]
SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "raw": (object,),
}


@pytest.fixture(scope="module")
def ansible_ready(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ansible tools and the collections the roles use must be installed: fail loudly otherwise."""
    tmp = tmp_path_factory.mktemp("ansible")
    for name in ("ansible", "ansible-playbook", "ansible-doc", "ansible-galaxy", "ansible-lint", "ansible-inventory"):
        assert tool(name), f"{name} is not installed in the test environment"
    missing = missing_collections(tmp)
    assert not missing, (
        f"collections {missing} are missing: install them with `ansible-galaxy collection install -r requirements.yml` "
        "or the `ansible` package, which bundles them"
    )
    return tmp


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(ansible_ready: Path, playbook: str) -> None:
    proc = run([tool("ansible-playbook") or "", "--syntax-check", "-i", "inventory.example", f"playbooks/{playbook}"],
               ansible_ready)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile(ansible_ready: Path) -> None:
    proc = run([tool("ansible-lint") or "", "--offline", "--profile", "production", "--nocolor"], ansible_ready, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_module_documentation_renders(ansible_ready: Path) -> None:
    doc = tool("ansible-doc") or ""
    proc = run([doc, "-M", "library", "pypi_mirror_sync"], ansible_ready)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in ("OPTIONS", "EXAMPLES", "RETURN VALUES", "check_mode"):
        assert heading in proc.stdout, heading


def module_argument_spec() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("pypi_mirror_sync_module", REPO / "library" / "pypi_mirror_sync.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.argument_spec()


def test_module_documentation_matches_its_argument_spec(ansible_ready: Path) -> None:
    proc = run([tool("ansible-doc") or "", "-M", "library", "--json", "pypi_mirror_sync"], ansible_ready)
    assert proc.returncode == 0, proc.stderr
    documented = json.loads(proc.stdout)["pypi_mirror_sync"]["doc"]["options"]
    spec = module_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name


def test_module_examples_use_only_documented_options() -> None:
    source = (REPO / "library" / "pypi_mirror_sync.py").read_text()
    tree = ast.parse(source)
    examples = next(
        node.value.value for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXAMPLES"
    )
    spec = module_argument_spec()
    tasks = yaml.safe_load(examples)
    assert tasks
    for task in tasks:
        assert set(task["pypi_mirror_sync"]) <= set(spec), task["name"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_layout(role: str) -> None:
    base = ROLES / role
    for part in ("defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml", "tasks/main.yml", "handlers/main.yml"):
        assert (base / part).is_file(), f"{role}: {part} is missing"
    if role != "pypi_mirror_storage":  # the storage role writes no files of its own
        templates = base / "templates"
        assert templates.is_dir() and any(templates.iterdir()), f"{role}: templates/ is empty"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults), f"only in specs: {set(options) - set(defaults)}, only in defaults: {set(defaults) - set(options)}"
    for name, value in defaults.items():
        option = options[name]
        assert name.startswith(role + "_"), f"{name} is not prefixed with {role}_"
        assert option.get("description"), f"{name} has no description"
        assert option.get("default") == value, f"{name}: spec default {option.get('default')!r} != {value!r}"
        kind = option.get("type", "str")
        if value is None:  # an unset option (null in both files) leaves its key out
            continue
        assert isinstance(value, SPEC_TYPES[kind]), f"{name}: default {value!r} is not a {kind}"
        if kind == "bool":
            continue
        assert not isinstance(value, bool) or kind == "raw", f"{name}: a boolean default for a {kind}"
        if "choices" in option:
            assert value in option["choices"], name


def test_inventory_example_stands_up_a_mirror_on_this_machine(ansible_ready: Path) -> None:
    proc = run([tool("ansible-inventory") or "", "-i", "inventory.example", "--list"], ansible_ready)
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    (host,) = inventory["mirror"]["hosts"]
    hostvars = inventory["_meta"]["hostvars"][host]
    assert hostvars["ansible_connection"] == "local"
    # the default upstream is whatever pip on the host uses: the playbook must not name one
    assert "pypi_mirror_sync_upstream" not in hostvars
    # no device named: a loop-backed image
    assert "pypi_mirror_storage_device" not in hostvars
    assert hostvars["pypi_mirror_storage_image"].startswith("/")
    # a small allowlist, so the first sync takes minutes
    assert isinstance(hostvars["pypi_mirror_sync_projects"], list) and 0 < len(hostvars["pypi_mirror_sync_projects"]) <= 5
    assert "clients" in inventory["all"]["children"]
    # downstream mirrors have their own (empty) group, so that playbooks/mirror.yml's second play matches it
    assert "mirror_downstream" in inventory["all"]["children"]
    assert not inventory.get("mirror_downstream", {}).get("hosts")


def test_requirements_name_the_collections_the_roles_use() -> None:
    required = {c["name"] for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]}
    used: set[str] = set()
    for path in ROLES.rglob("tasks/*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            for key in task:
                if key.count(".") == 2 and not key.startswith("ansible.builtin."):
                    used.add(key.rsplit(".", 1)[0])
    assert used and used <= required, f"used {used}, required {required}"


def load_with_engine(config: Path) -> Any:
    pytest.importorskip("mirror_sync.config")
    from mirror_sync.config import load_config

    return load_config(config)


def test_rendered_sync_config_is_accepted_by_the_engine(tmp_path: Path) -> None:
    overrides = {
        "pypi_mirror_sync_directory": str(tmp_path / "mirror"),
        "pypi_mirror_sync_upstream": "http://127.0.0.1:9/simple/",
        "pypi_mirror_sync_projects": ["requests>=2.31", "uvicorn[standard]"],
        "pypi_mirror_sync_exclude": ["foo<2"],
        "pypi_mirror_sync_environments": [{"python": "3.11", "platform": "linux", "machine": "x86_64"}],
        "pypi_mirror_sync_prereleases": False,
        "pypi_mirror_sync_latest": 5,
        "pypi_mirror_sync_max_file_size": "50M",
        "pypi_mirror_sync_workers": 4,
        "pypi_mirror_sync_statistics_enabled": True,
        "pypi_mirror_sync_statistics_output_directory": str(tmp_path / "stats"),
        "pypi_mirror_sync_metrics_textfile_directory": str(tmp_path / "prom"),
    }
    path = render_template("pypi_mirror_sync", "mirror.yml.j2", tmp_path / "mirror.yml", tmp_path, overrides)
    document = yaml.safe_load(path.read_text())
    assert document["projects"] == ["requests>=2.31", "uvicorn[standard]"]
    assert document["latest"] == 5 and document["max_file_size"] == "50M"
    assert document["statistics"] == {"access_log_pattern": "/var/log/nginx/pypi-mirror.access.log*",
                                      "output_directory": str(tmp_path / "stats")}
    config = load_with_engine(path)
    assert str(config.directory) == str(tmp_path / "mirror")
    assert config.upstream.startswith("http://127.0.0.1:9/simple")
    assert config.latest == 5 and config.max_file_size == 50 * 1024 * 1024
    assert config.prereleases is False and config.workers == 4
    assert config.environments is not None and len(config.environments) == 1
    assert config.metrics.textfile_directory == str(tmp_path / "prom")


def test_rendered_sync_config_from_defaults_leaves_optional_keys_out(tmp_path: Path) -> None:
    overrides = {"pypi_mirror_sync_directory": str(tmp_path / "mirror"), "pypi_mirror_sync_projects": ["requests"],
                 "pypi_mirror_sync_upstream": "http://127.0.0.1:9/simple/"}
    path = render_template("pypi_mirror_sync", "mirror.yml.j2", tmp_path / "mirror.yml", tmp_path, overrides)
    document = yaml.safe_load(path.read_text())
    for key in ("environments", "latest", "max_file_size", "statistics", "metrics"):
        assert key not in document, key
    config = load_with_engine(path)
    assert config.latest is None and config.environments is None


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_documentation_renders(ansible_ready: Path, role: str) -> None:
    proc = run([tool("ansible-doc") or "", "-t", "role", "-r", "roles", role], ansible_ready)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{role}_" in proc.stdout


def test_mirror_playbook_converges_the_primary_before_its_downstream_mirrors() -> None:
    plays = yaml.safe_load((REPO / "playbooks" / "mirror.yml").read_text())
    assert [play["hosts"] for play in plays] == ["mirror", "mirror_downstream"]
    for play in plays:
        assert [r["role"] for r in play["roles"]] == ["pypi_mirror_storage", "pypi_mirror_sync", "pypi_mirror_nginx"]
    sync = next(r for r in plays[1]["roles"] if r["role"] == "pypi_mirror_sync")["vars"]
    assert sync["pypi_mirror_sync_upstream_mirror_group"] == "mirror"
    assert sync["pypi_mirror_sync_all_projects"] is True
    assert "pypi_mirror_sync_upstream_mirror_group" not in next(
        r for r in plays[0]["roles"] if r["role"] == "pypi_mirror_sync").get("vars", {})


DOWNSTREAM_INVENTORY = """
[mirror]
primary1 ansible_host=198.18.0.11 pypi_mirror_nginx_port=8080
primary2 ansible_host=198.18.0.12

[mirror_downstream]
localhost ansible_connection=local

[clients]
other ansible_host=198.18.0.13
"""


@pytest.mark.parametrize(
    ("overrides", "upstream"),
    [
        ({"pypi_mirror_sync_upstream_mirror_group": "mirror"}, "http://198.18.0.11:8080/simple/"),
        ({"pypi_mirror_sync_upstream_mirror_group": "clients"}, "http://198.18.0.13/simple/"),
        ({"pypi_mirror_sync_upstream_mirror_group": "mirror",
          "pypi_mirror_sync_upstream": "http://127.0.0.1:9/simple/"}, "http://127.0.0.1:9/simple/"),
        ({}, None),
    ],
)
def test_downstream_upstream_is_the_first_host_of_the_primary_group(
    tmp_path: Path, overrides: dict[str, Any], upstream: Any
) -> None:
    inventory = tmp_path / "inventory"
    inventory.write_text(DOWNSTREAM_INVENTORY)
    values = {"pypi_mirror_sync_directory": str(tmp_path / "mirror"), "pypi_mirror_sync_all_projects": True,
              **overrides}
    path = render_template("pypi_mirror_sync", "mirror.yml.j2", tmp_path / "mirror.yml", tmp_path, values,
                           inventory=inventory)
    document = yaml.safe_load(path.read_text())
    assert document.get("upstream") == upstream
    assert "projects" not in document  # everything the primary holds
    if upstream is not None:
        assert load_with_engine(path).upstream.rstrip("/") == upstream.rstrip("/")


@pytest.mark.parametrize(
    ("group", "url"),
    [("mirror", "http://198.18.0.11:8080/simple/"), ("mirror_downstream", "http://localhost/simple/")],
)
def test_clients_follow_their_mirror_group_and_its_port(tmp_path: Path, group: str, url: str) -> None:
    inventory = tmp_path / "inventory"
    inventory.write_text(DOWNSTREAM_INVENTORY)
    path = render_template("pypi_mirror_client", "uv.toml.j2", tmp_path / "uv.toml", tmp_path,
                           {"pypi_mirror_client_mirror_group": group}, inventory=inventory)
    assert f'url = "{url}"' in path.read_text()


def test_statistics_read_the_log_the_nginx_role_writes() -> None:
    """The stats job's glob covers the nginx role's access log (and its rotations), by default and
    in both plays of playbooks/mirror.yml; nginx serves the engine's default stats directory."""
    sync = yaml.safe_load((ROLES / "pypi_mirror_sync" / "defaults" / "main.yml").read_text())
    nginx = yaml.safe_load((ROLES / "pypi_mirror_nginx" / "defaults" / "main.yml").read_text())
    assert sync["pypi_mirror_sync_statistics_access_log_pattern"] == nginx["pypi_mirror_nginx_access_log"] + "*"
    for play in yaml.safe_load((REPO / "playbooks" / "mirror.yml").read_text()):
        roles = {r["role"]: r.get("vars", {}) for r in play["roles"]}
        pattern = roles["pypi_mirror_sync"]["pypi_mirror_sync_statistics_access_log_pattern"]
        assert "pypi_mirror_nginx_access_log" in pattern and pattern.strip().endswith("*"), play["hosts"]
        assert roles["pypi_mirror_nginx"]["pypi_mirror_nginx_root"].endswith("/web")
    assert sync["pypi_mirror_sync_statistics_output_directory"] == ""  # engine default: <directory>/web/stats
    assert "location /stats/" in (ROLES / "pypi_mirror_nginx" / "templates" / "vhost.conf.j2").read_text()


# -- the operator's path (issue 14): a table of contents, a way back, nothing more than needed -----------------

PHASES = {
    "pypi_mirror_storage": ["preflight", "install", "configure", "remove"],
    "pypi_mirror_nginx": ["preflight", "install", "configure", "remove"],
    "pypi_mirror_sync": ["preflight", "install", "configure", "schedule", "sync", "remove"],
    "pypi_mirror_client": ["preflight", "configure", "report"],
}


@pytest.mark.parametrize("role", sorted(PHASES))
def test_role_tasks_main_is_a_tagged_table_of_contents(role: str) -> None:
    tasks = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
    phases = []
    for task in tasks:
        include = task.get("ansible.builtin.include_tasks")
        assert include is not None, f"{role}: {task['name']} is not an include"
        assert (ROLES / role / "tasks" / include["file"]).is_file(), include
        tags = set(task["tags"])
        assert role in tags and tags & set(include["apply"]["tags"]) == set(include["apply"]["tags"]), task["name"]
        phases.append(next(t for t in include["apply"]["tags"] if t != role))
    assert list(dict.fromkeys(phases)) == PHASES[role], phases


@pytest.mark.parametrize("role", ["pypi_mirror_storage", "pypi_mirror_sync", "pypi_mirror_nginx", "pypi_mirror_client"])
def test_every_role_has_a_state_absent_path(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert defaults[f"{role}_state"] == "present"
    assert spec[f"{role}_state"]["choices"] == ["present", "absent"]
    main = (ROLES / role / "tasks" / "main.yml").read_text()
    assert f"{role}_state" in main or role == "pypi_mirror_client"


def _all_tasks(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in yaml.safe_load(path.read_text()) or []:
        found.append(task)
        found += task.get("block", [])
    return found


def _tasks_deep(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every task, those inside blocks (and their rescue and always parts) included."""
    found: list[dict[str, Any]] = []
    for task in tasks or []:
        found.append(task)
        for part in ("block", "rescue", "always"):
            found += _tasks_deep(task.get(part, []))
    return found


CHECKS = ("ansible.builtin.assert", "ansible.builtin.fail", "assert", "fail")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_assertion_is_in_the_preflight(role: str) -> None:
    """As prometheus-community's roles do: a role's checks are in tasks/preflight.yml, run first (tag always)."""
    misplaced = [f"{path.relative_to(REPO)}: {task.get('name')}"
                 for path in sorted((ROLES / role / "tasks").glob("*.yml")) if path.name != "preflight.yml"
                 for task in _tasks_deep(yaml.safe_load(path.read_text())) if any(check in task for check in CHECKS)]
    assert not misplaced, "assertions outside tasks/preflight.yml:\n" + "\n".join(misplaced)
    preflight = ROLES / role / "tasks" / "preflight.yml"
    assert any(check in task for task in _tasks_deep(yaml.safe_load(preflight.read_text())) for check in CHECKS), role


def test_packages_are_installed_without_recommends() -> None:
    """cron and logrotate recommend a mail server: every apt task installs only what it names."""
    apt_tasks = [t for path in ROLES.rglob("tasks/*.yml") for t in _all_tasks(path) if "ansible.builtin.apt" in t]
    assert apt_tasks
    for task in apt_tasks:
        role = next(p for p in ROLES.iterdir() if p.is_dir() and task in [x for f in p.rglob("tasks/*.yml") for x in _all_tasks(f)])
        if role.name == "pypi_mirror_nginx":  # another role's owner decides there; nginx recommends nothing big
            continue
        assert task["ansible.builtin.apt"].get("install_recommends") is False, (role.name, task["name"])


def test_remove_playbook_undoes_the_mirror_playbook_in_reverse() -> None:
    plays = yaml.safe_load((REPO / "playbooks" / "remove.yml").read_text())
    mirror_play = next(p for p in plays if "mirror" in p["hosts"])
    roles = [(r["role"], r["vars"]) for r in mirror_play["roles"]]
    assert [r for r, _ in roles] == ["pypi_mirror_nginx", "pypi_mirror_sync", "pypi_mirror_storage"]
    for role, values in roles:
        assert values[f"{role}_state"] == "absent"
    assert "purge" in str(roles[1][1]) and "purge" in str(roles[2][1])
    assert mirror_play["post_tasks"][0]["ansible.builtin.include_tasks"] == "tasks/restore_host.yml"
    clients = next(p for p in plays if p["hosts"] == "clients")
    assert clients["roles"][0]["vars"]["pypi_mirror_client_state"] == "absent"
    for play in yaml.safe_load((REPO / "playbooks" / "mirror.yml").read_text()):
        assert play["pre_tasks"][0]["ansible.builtin.include_tasks"] == "tasks/record_host.yml"
        assert play["vars"]["pypi_mirror_ledger"] == mirror_play["vars"]["pypi_mirror_ledger"]


def test_the_cron_job_runs_the_job_script_that_reloads_nginx(tmp_path: Path) -> None:
    """With pypi_mirror_sync_reload_nginx, cron runs the job script as root; it runs the engine as the mirror
    user and reloads nginx (after nginx -t) when serials.map changed, with or without systemd. Off (the
    default: the nginx role's njs needs no reload), the script only runs the engine."""
    schedule = yaml.safe_load((ROLES / "pypi_mirror_sync" / "tasks" / "schedule.yml").read_text())
    sync_job = next(t for t in schedule if t["name"] == "Schedule the sync")["ansible.builtin.cron"]
    assert "/bin/pypi-mirror-sync" in sync_job["job"]
    assert sync_job["user"] == "{{ 'root' if pypi_mirror_sync_reload_nginx | bool else pypi_mirror_sync_user }}"
    overrides = {"pypi_mirror_sync_directory": "/srv/m", "pypi_mirror_sync_home": "/opt/pm",
                 "pypi_mirror_sync_reload_nginx": True}
    job = render_template("pypi_mirror_sync", "pypi-mirror-sync.j2", tmp_path / "job", tmp_path, overrides).read_text()
    assert "runuser -u pypi-mirror" in job and "/opt/pm/bin/pypi-mirror-reload-nginx" in job
    assert "map=/srv/m/serials.map" in job
    reload = render_template("pypi_mirror_sync", "pypi-mirror-reload-nginx.j2", tmp_path / "reload", tmp_path,
                             overrides).read_text()
    assert "nginx -t" in reload and "nginx -s reload" in reload and "systemctl reload nginx" in reload
    off = render_template("pypi_mirror_sync", "pypi-mirror-sync.j2", tmp_path / "job-off", tmp_path,
                          {**overrides, "pypi_mirror_sync_reload_nginx": False}).read_text()
    assert "runuser -u pypi-mirror" in off
    assert "reload-nginx" not in off.split("set -u", 1)[1]


def test_rendered_sync_config_carries_the_ca_bundle(tmp_path: Path) -> None:
    overrides = {"pypi_mirror_sync_directory": str(tmp_path / "mirror"), "pypi_mirror_sync_projects": ["requests"],
                 "pypi_mirror_sync_ca_bundle": "/etc/ssl/certs/corporate.pem"}
    document = yaml.safe_load(render_template("pypi_mirror_sync", "mirror.yml.j2", tmp_path / "m.yml", tmp_path,
                                              overrides).read_text())
    assert document["ca_bundle"] == "/etc/ssl/certs/corporate.pem"


def _foreign_sources() -> Any:
    path = ROLES / "pypi_mirror_client" / "filter_plugins" / "pip_sources.py"
    spec = importlib.util.spec_from_file_location("pip_sources", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.foreign_package_sources


MIRROR = "http://mirror.internal/simple/"


def test_client_report_names_other_indexes_and_find_links() -> None:
    found = _foreign_sources()(
        {
            "/etc/pip.conf": f"[global]\nindex-url = {MIRROR}\ntrusted-host = mirror.internal\n",
            "/root/.config/pip/pip.conf": "[install]\nfind-links = /opt/wheels\n  /opt/more\nextra_index_url=http://x/simple\n",
            "/home/u/.pip/pip.conf": "[global]\nindex-url = http://other/simple\n",
            "/etc/profile.d/proxy.sh": "export PIP_EXTRA_INDEX_URL='http://y/simple'\nPIP_CERT=/x.pem\n",
            "/etc/uv/uv.toml": f'[[index]]\nname = "m"\nurl = "{MIRROR}"\ndefault = true\n',
            "/root/.config/uv/uv.toml": 'extra-index-url = ["http://z/simple"]\n',
        },
        {"PIP_FIND_LINKS": "/srv/wheels", "PIP_INDEX_URL": MIRROR.rstrip("/"), "HOME": "/root"},
        MIRROR,
    )
    text = "\n".join(found)
    for expected in ("find-links = /opt/wheels", "find-links = /opt/more", "extra-index-url = http://x/simple",
                     "index-url = http://other/simple: installs come from http://other/simple instead",
                     "PIP_EXTRA_INDEX_URL=http://y/simple", "extra-index-url = http://z/simple",
                     "environment of the Ansible session: PIP_FIND_LINKS=/srv/wheels"):
        assert expected in text, expected
    assert len(found) == 7, found  # the mirror's own settings, PIP_CERT and the same index URL are not reported
    assert "/etc/pip.conf" not in text and "/etc/uv/uv.toml" not in text


def test_client_report_is_empty_for_a_host_that_only_knows_the_mirror() -> None:
    assert _foreign_sources()({"/etc/pip.conf": f"[global]\nindex-url = {MIRROR}\n", "/root/.bashrc": "alias ll='ls -l'\n"},
                              {}, MIRROR) == []
    assert "pip reads no configuration file" in _foreign_sources()({}, {"PIP_CONFIG_FILE": "/dev/null"}, MIRROR)[0]
