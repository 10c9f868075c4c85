"""The engine's configuration keys are written down once in mirror_sync/config.py (``KEYS``: every key,
a section's keys dotted, with its default) and copied four times: the README's configuration table,
the Ansible module's option table (library/pypi_mirror_sync.py), and the pypi_mirror_sync role's
defaults, argument specs and configuration template. These tests hold the copies to the engine's, so
that adding a key is one line in each and forgetting one fails with the copy's name.

The exceptions are listed below, each with its reason.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror_sync.config import KEYS, SECTIONS, Config, config_from_mapping, load_config
from mirror_sync.errors import ConfigError
from mirror_sync.policy.settings import POLICY_KEYS
from tests.ansibleutil import REPO, render_template

ROLE = "pypi_mirror_sync"
DEFAULTS_FILE = f"roles/{ROLE}/defaults/main.yml"
SPECS_FILE = f"roles/{ROLE}/meta/argument_specs.yml"
TEMPLATE_FILE = f"roles/{ROLE}/templates/mirror.yml.j2"
MODULE_FILE = "library/pypi_mirror_sync.py"

# Keys whose line in the role's template reads another variable than the key's own, and why.
TEMPLATE_READS = {
    "upstream": ("pypi_mirror_sync__upstream", ("the role derives it (vars/main.yml): pypi_mirror_sync_upstream, else "
                                                "the first host of pypi_mirror_sync_upstream_mirror_group")),
    "advisories": ("pypi_mirror_sync__advisories", ("the role derives it (vars/main.yml): pypi_mirror_sync_advisories, "
                                                    "else, with pypi_mirror_sync_advisories_url, the file it downloads")),
}
# Role variables whose default is not the engine's, on purpose.
DELIBERATE_DEFAULTS = {
    "directory": "the engine requires the key; the role's default is the storage role's mount point",
    "statistics.access_log_pattern": "the log the nginx role writes; the template writes it only with "
                                     "pypi_mirror_sync_statistics_enabled",
}
# Role defaults that the template leaves out, as it does none, "" and [] (and an empty mapping), so that the
# engine's default applies.
LEFT_OUT_BY_TEMPLATE = {"latest": 0}  # 0 keeps every release (setup-mirror and the inventory use it)
LEFT_OUT: tuple[Any, ...] = (None, "", [], {})
# Keys the engine reads only beside another key (alone, it refuses them): what the tests give with them, and why.
NEEDS: dict[str, tuple[dict[str, Any], str]] = {
    "block.malicious": ({"advisories": "osv.zip"}, "block judges releases by the advisories"),
    "block.vulnerable": ({"advisories": "osv.zip"}, "block judges releases by the advisories"),
    "allow": ({"advisories": "osv.zip"}, "allow lifts advisories"),
    "merge_upstream": ({"local": "local"}, "it names projects of the local directory"),
}


def top(key: str) -> str:
    return key.split(".", 1)[0]


ENGINE = set(KEYS)
ENGINE_TOP = {top(key) for key in KEYS}


def needed(key: str) -> dict[str, Any]:
    """The keys a key needs beside it (NEEDS), or none."""
    return NEEDS[key][0] if key in NEEDS else {}


def role_variable(key: str) -> str:
    """The role's variable for a configuration key: pypi_mirror_sync_<key>, a section's key as <section>_<key>."""
    return f"{ROLE}_{key.replace('.', '_')}"


def same_keys(engine: set[str], copy: set[str], where: str, exceptions: frozenset[str] = frozenset()) -> list[str]:
    """One readable line per key that only one side has."""
    problems = [f"key {key} is in mirror_sync/config.py but not in {where}" for key in sorted(engine - copy - exceptions)]
    problems += [f"key {key} is in {where} but not in mirror_sync/config.py" for key in sorted(copy - engine - exceptions)]
    return problems


# --------------------------------------------------------------------------- the copies, read
def readme_keys() -> set[str]:
    """The keys of the README's configuration table, as they are written (`statistics.output_directory`)."""
    text = (REPO / "README.md").read_text()
    table = text.split("### Configuration (YAML)", 1)[1].split("\n\n", 2)[1]
    return {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}


def load_module() -> Any:
    spec = importlib.util.spec_from_file_location("pypi_mirror_sync_module", REPO / MODULE_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def role_defaults() -> dict[str, Any]:
    return yaml.safe_load((REPO / DEFAULTS_FILE).read_text())


def role_specs() -> dict[str, Any]:
    return yaml.safe_load((REPO / SPECS_FILE).read_text())["argument_specs"]["main"]["options"]


def template_lines() -> dict[str, str]:
    """The template's table of configuration keys: dotted key -> the expression its line renders."""
    text = (REPO / TEMPLATE_FILE).read_text()
    block = text.split("{% set pypi_mirror_sync__config = {", 1)[1].split("} %}", 1)[0]
    lines: dict[str, str] = {}
    section = None
    for line in block.splitlines():
        opening = re.fullmatch(r"\s*'(\w+)': \{", line)
        if opening:
            section = opening.group(1)
            continue
        if re.fullmatch(r"\s*\},?", line):
            section = None
            continue
        entry = re.fullmatch(r"\s*'(\w+)': (.+?),?", line)
        if entry:
            lines[f"{section}.{entry.group(1)}" if section else entry.group(1)] = entry.group(2)
    return lines


# --------------------------------------------------------------------------- the engine's own declaration
def test_the_parser_reads_every_declared_key_and_no_other() -> None:
    """KEYS is what the parser knows: each key is read (a value of a wrong type is refused, naming it),
    and a key it does not declare is unknown."""
    base = {"directory": "m", "upstream": "http://127.0.0.1:1/"}
    for key in sorted(ENGINE - set(base)):
        section, _, sub = key.rpartition(".")
        value: dict[str, Any] = {section: {sub: object()}} if section else {key: object()}
        # the policy's own parser words it "key 'cooldown': ... is not a duration"
        with pytest.raises(ConfigError, match=rf"key '{re.escape(key)}':? (must be|.* is not)"):
            config_from_mapping({**base, **needed(key), **value}, Path("/x/mirror.yml"))
    for unknown in ({"no_such_key": 1}, {"statistics": {"no_such_key": 1}}):
        with pytest.raises(ConfigError, match="is not a known configuration key"):
            config_from_mapping({**base, **unknown}, Path("/x/mirror.yml"))


def test_an_empty_configuration_has_the_declared_defaults() -> None:
    base = {"directory": "m", "upstream": "http://127.0.0.1:1/"}
    for key, default in KEYS.items():
        if key in ("directory", "upstream"):
            continue
        config = config_from_mapping({**base, **needed(key)}, Path("/x/mirror.yml"))
        assert engine_value(config, key) == default, key
    assert Config(path=Path("m.yml"), upstream="u", directory=Path("/m")).workers == KEYS["workers"]


def engine_value(config: Config, key: str) -> Any:
    """The parsed value of a key: a section's key in its section, the policy's keys in config.policy."""
    holder: Any = config.policy if top(key) in POLICY_KEYS else config
    section, _, sub = key.rpartition(".")
    return getattr(getattr(holder, section), sub) if section else getattr(holder, key)


# --------------------------------------------------------------------------- the four copies
def test_the_readme_table_lists_the_engines_keys() -> None:
    problems = same_keys(ENGINE, readme_keys(), "README.md's configuration table")
    assert not problems, "\n".join(problems)


def test_the_module_has_an_option_for_each_key() -> None:
    """Sections are one option each (a dict), as in the configuration file."""
    module = load_module()
    problems = same_keys(ENGINE_TOP, set(module.config_keys()), f"{MODULE_FILE}'s OPTIONS (as configuration keys)")
    documented = set(yaml.safe_load(module.DOCUMENTATION)["options"])  # == OPTIONS: test_ansible_static.py
    problems += [f"key {key} is in mirror_sync/config.py but not in {MODULE_FILE}'s DOCUMENTATION"
                 for key in sorted(ENGINE_TOP - documented)]
    spec = module.argument_spec()
    problems += [f"{MODULE_FILE}: option {key} has a default ({spec[key]['default']!r}); left out, the engine's "
                 "default must apply" for key in module.config_keys() if spec[key].get("default") is not None]
    assert not problems, "\n".join(problems)


def test_the_role_has_a_variable_for_each_key() -> None:
    defaults, specs = role_defaults(), role_specs()
    wanted = {role_variable(key): key for key in ENGINE}
    problems = [f"key {key} is in mirror_sync/config.py but {variable} is not in {where}"
                for variable, key in sorted(wanted.items())
                for where, names in ((DEFAULTS_FILE, defaults), (SPECS_FILE, specs)) if variable not in names]
    problems += [f"{SPECS_FILE}: {variable}'s description does not name the configuration key {key}"
                 for variable, key in sorted(wanted.items())
                 if variable in specs and key not in " ".join(_as_list(specs[variable].get("description")))]
    assert not problems, "\n".join(problems)


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value or "")]


def test_the_role_template_writes_each_key_from_its_variable() -> None:
    lines = template_lines()
    problems = same_keys(ENGINE, set(lines), TEMPLATE_FILE)
    for key, expression in sorted(lines.items()):
        variable = TEMPLATE_READS[key][0] if key in TEMPLATE_READS else role_variable(key)
        if not re.search(rf"\b{re.escape(variable)}\b", expression):
            problems.append(f"{TEMPLATE_FILE}: the line of key {key} reads {expression!r}, not {variable}")
    assert not problems, "\n".join(problems)


def test_module_and_role_give_a_key_the_same_type() -> None:
    """A key is the same kind of value for the module and the role (sections: the role has one variable per key)."""
    spec, role = load_module().argument_spec(), role_specs()
    problems = []
    for key in sorted(ENGINE_TOP - SECTIONS):
        theirs, ours = role.get(role_variable(key), {}), spec.get(key, {})
        for field in ("type", "elements"):
            if theirs.get(field, "str" if field == "type" else None) != ours.get(field, "str" if field == "type" else None):
                problems.append(f"key {key}: {field} {ours.get(field)!r} in {MODULE_FILE}, {theirs.get(field)!r} in {SPECS_FILE}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- defaults
def test_the_roles_defaults_are_the_engines() -> None:
    """Where the role sets a value for a key, the engine reads it as its own default (or the difference is
    deliberate, see DELIBERATE_DEFAULTS); none, "" and [] leave the key out."""
    defaults = role_defaults()
    base = {"directory": "/m", "upstream": "http://127.0.0.1:9/simple/"}
    problems = []
    for key in sorted(ENGINE - set(DELIBERATE_DEFAULTS) - {"upstream"}):
        value = defaults.get(role_variable(key))
        if value in LEFT_OUT or (key in LEFT_OUT_BY_TEMPLATE and value == LEFT_OUT_BY_TEMPLATE[key]):
            continue
        section, _, sub = key.rpartition(".")
        config = config_from_mapping({**base, **needed(key), **({section: {sub: value}} if section else {key: value})},
                                     Path("/x/mirror.yml"))
        if engine_value(config, key) != KEYS[key]:
            problems.append(f"{DEFAULTS_FILE}: {role_variable(key)} is {value!r}, which the engine reads as "
                            f"{engine_value(config, key)!r}, but its default for {key} is {KEYS[key]!r}")
    assert not problems, "\n".join(problems)


def test_the_configuration_the_role_renders_from_its_defaults_is_the_engines_default(tmp_path: Path) -> None:
    """The template's conversions included: what it writes from the role's defaults, loaded by the engine."""
    path = render_template(ROLE, "mirror.yml.j2", tmp_path / "mirror.yml", tmp_path, {})
    written = yaml.safe_load(path.read_text())
    config = load_config(path)
    problems = []
    for key in sorted(ENGINE - set(DELIBERATE_DEFAULTS) - {"upstream"}):
        if any(top(other) not in written for other in needed(key)):
            assert top(key) not in written, f"{TEMPLATE_FILE} from {DEFAULTS_FILE} writes {key} without {list(needed(key))}"
            continue  # the engine refuses it alone: left out, as it should be
        if engine_value(config, key) != KEYS[key]:
            problems.append(f"{TEMPLATE_FILE} from {DEFAULTS_FILE} writes {key} as {written.get(top(key))!r}: the engine "
                            f"reads {engine_value(config, key)!r}, its default is {KEYS[key]!r}")
    assert "upstream" not in written and config.upstream_from_pip  # empty: the index pip on the host uses
    assert not problems, "\n".join(problems)


def test_the_exceptions_are_real_keys() -> None:
    """An exception for a key that is gone would hide nothing and mislead."""
    for key in {**TEMPLATE_READS, **DELIBERATE_DEFAULTS, **LEFT_OUT_BY_TEMPLATE, **NEEDS}:
        assert key in ENGINE, f"tests/test_contract.py lists an exception for {key}, which is no configuration key"
