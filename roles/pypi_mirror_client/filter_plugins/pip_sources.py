"""Filter for the client role: settings on a host that make pip or uv take packages from somewhere
other than the mirror (extra indexes, find-links, another index URL), found in pip's and uv's
configuration files, shell start-up files and the environment. Pure functions, no I/O."""

from __future__ import annotations

import configparser
import re

# pip reads these options from every section of its configuration files ([global], [install], ...).
PIP_INDEX_OPTIONS = ("index-url", "extra-index-url", "find-links")
# The environment variables that set them for pip, and uv's own.
ENV_VARIABLES = (
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE",
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
)
_ASSIGNMENT = re.compile(
    r"^\s*(?:export\s+)?(?P<name>(?:PIP|UV)_[A-Z_]+)=(?P<value>\"[^\"]*\"|'[^']*'|\S*)"
)
_TOML_KEY = re.compile(r"^\s*(?P<key>index-url|extra-index-url|find-links|url)\s*=\s*(?P<value>.+?)\s*$")


def _same_index(value: str, mirror: str) -> bool:
    return value.strip().rstrip("/") == mirror.strip().rstrip("/")


def _values(raw: str) -> list[str]:
    return [v for v in re.split(r"\s+", raw.strip()) if v]


def _pip_conf_findings(path: str, text: str, mirror: str) -> list[str]:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        return [f"{path}: pip cannot read it ({exc.__class__.__name__}), check it by hand"]
    found = []
    for section in parser.sections():
        for option, raw in parser.items(section):
            key = option.replace("_", "-")
            if key not in PIP_INDEX_OPTIONS:
                continue
            for value in _values(raw):
                if key == "index-url" and _same_index(value, mirror):
                    continue
                found.append(_sentence(f"{path} [{section}] {key} = {value}", key, value))
    return found


def _uv_toml_findings(path: str, text: str, mirror: str) -> list[str]:
    found = []
    for line in text.splitlines():
        match = _TOML_KEY.match(line.split("#", 1)[0])
        if not match:
            continue
        key, raw = match["key"], match["value"]
        for value in re.findall(r"[\"']([^\"']+)[\"']", raw) or [raw]:
            if key in ("index-url", "url") and _same_index(value, mirror):
                continue
            kind = "index-url" if key == "url" else key
            found.append(_sentence(f"{path}: {key} = {value}", kind, value))
    return found


def _shell_findings(path: str, text: str, mirror: str) -> list[str]:
    found = []
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and match["name"] in ENV_VARIABLES:
            value = match["value"].strip("\"'")
            found.extend(_env_finding(f"{path}: {match['name']}={value}", match["name"], value, mirror))
    return found


def _env_finding(where: str, name: str, value: str, mirror: str) -> list[str]:
    if not value:
        return []
    if name in ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        return [] if _same_index(value, mirror) else [_sentence(where, "index-url", value)]
    if name == "PIP_CONFIG_FILE":
        if value == "/dev/null":
            return [f"{where}: pip reads no configuration file, so not the mirror's either"]
        return [f"{where}: pip also reads that file, whose settings win over /etc/pip.conf"]
    kind = "find-links" if name.endswith("FIND_LINKS") else "extra-index-url"
    return [_sentence(where, kind, value)]


def _sentence(where: str, kind: str, value: str) -> str:
    if kind == "find-links":
        return f"{where}: pip or uv also takes files from {value}, beside the mirror"
    if kind == "extra-index-url":
        return f"{where}: pip or uv also asks the index {value}, beside the mirror"
    return f"{where}: installs come from {value} instead of the mirror"


def foreign_package_sources(files: dict, environment: dict, mirror: str) -> list:
    """Sentences naming every setting that adds a package source other than `mirror` (or replaces it).

    files: {path: text} of pip.conf/pip.ini, uv.toml and shell start-up files (/etc/environment,
    /etc/profile.d/*.sh, ~/.profile, ...); environment: variables of the session Ansible runs in.
    """
    found: list[str] = []
    for path in sorted(files):
        text = files[path] or ""
        name = path.rsplit("/", 1)[-1]
        if name in ("pip.conf", "pip.ini"):
            found += _pip_conf_findings(path, text, mirror)
        elif name == "uv.toml":
            found += _uv_toml_findings(path, text, mirror)
        else:
            found += _shell_findings(path, text, mirror)
    for name in ENV_VARIABLES:
        if environment.get(name):
            found += _env_finding(f"environment of the Ansible session: {name}={environment[name]}", name,
                                  str(environment[name]), mirror)
    return found


class FilterModule:
    def filters(self):
        return {"pypi_mirror_client_foreign_sources": foreign_package_sources}
