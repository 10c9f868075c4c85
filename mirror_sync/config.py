"""Load and validate the YAML configuration.

Every key is checked: unknown keys and wrong types are errors that name the key and the file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import yaml

from .errors import ConfigError
from .pip_default import default_upstream

if TYPE_CHECKING:  # imported where parsed: a configuration without requirements never loads the parser
    from packaging.requirements import Requirement

    from .policy.settings import PolicySettings

# Every configuration key, a section's keys dotted (`statistics.output_directory`), with its default as the
# parsed Config holds it: the one declaration the parser and Config take their defaults from, and that
# tests/test_contract.py compares with the README's table, the Ansible module and the sync role.
# None: left out, the key is unset (`directory` is required; `upstream` left out is the index pip would use).
KEYS: dict[str, Any] = {
    "directory": None,
    "upstream": None,
    "ca_bundle": None,
    "workers": 8,
    "timeout": 30.0,
    "deadline": 600.0,  # seconds a request may take in all (a trickling answer fails after it)
    "max_page_size": 64 * 1024**2,  # bytes a project page may have once decoded (real ones: < 8 MiB)
    "max_root_size": 128 * 1024**2,  # bytes the root index may have once decoded (the real one: ~40 MB)
    "retries": 5,
    "projects": None,
    "exclude": (),
    "dependencies": True,
    "environments": None,
    "prereleases": True,
    "latest": None,
    "max_file_size": None,
    "delete": True,
    "max_delete_ratio": 0.2,
    "fsync": True,
    "statistics.access_log_pattern": None,
    "statistics.output_directory": None,  # None: <directory>/web/stats
    "metrics.textfile_directory": None,
    # policy (mirror_sync/policy/settings.py validates these)
    "cooldown": None,  # a file is mirrored once its upload-time is this old (7d, 12h, P7D)
    "cooldown_unknown": "hold",  # files without upload-time: hold (fail closed) or allow
    "uploaded_before": None,  # an RFC 3339 instant: only files uploaded before it
    "cooldown_exempt": (),  # PEP 508 requirements whose releases skip the time rules
    "advisories": None,  # an OSV export (the zip OSV publishes, or a directory of .json files)
    "block.malicious": True,  # with advisories: MAL- advisories block
    "block.vulnerable": "off",  # with advisories: off, low, moderate, high or critical
    "allow": (),  # advisory id -> requirements for which it is ignored (parsed: (id, requirements) pairs)
    # the organisation's own packages
    "local": None,  # a directory of wheels and sdists published into the same index
    "merge_upstream": (),  # local project names that also take upstream's files
    "public_url": None,  # the mirror's own base URL (for PEP 740 provenance links)
}
SECTIONS = frozenset(key.split(".", 1)[0] for key in KEYS if "." in key)  # keys whose value is a mapping of keys

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class Environment:
    """One target environment: used to evaluate markers and to filter wheels by tag."""

    python: str  # "3.11"
    platform: Optional[str] = None  # linux | macos | windows | None (any platform)
    machine: Optional[str] = None  # x86_64 | aarch64 | arm64 | amd64 | ...
    implementation: str = "cpython"
    tags: tuple[str, ...] = ()  # explicit wheel tags (interpreter-abi-platform), extend the derived ones
    markers: tuple[tuple[str, str], ...] = ()  # explicit marker values, override the derived ones


@dataclass(frozen=True)
class StatisticsConfig:
    access_log_pattern: Optional[str] = KEYS["statistics.access_log_pattern"]
    output_directory: Optional[str] = KEYS["statistics.output_directory"]


@dataclass(frozen=True)
class MetricsConfig:
    textfile_directory: Optional[str] = KEYS["metrics.textfile_directory"]


@dataclass(frozen=True)
class Config:
    path: Path
    upstream: str
    directory: Path
    upstream_from_pip: bool = False  # `upstream` left out: the index pip would use (and pip's CA setting)
    ca_bundle: Optional[Path] = KEYS["ca_bundle"]  # CA certificates to verify upstream with, instead of the system store
    workers: int = KEYS["workers"]
    timeout: float = KEYS["timeout"]
    deadline: float = KEYS["deadline"]
    max_page_size: int = KEYS["max_page_size"]
    max_root_size: int = KEYS["max_root_size"]
    retries: int = KEYS["retries"]
    projects: Optional[tuple[Requirement, ...]] = KEYS["projects"]
    exclude: tuple[Requirement, ...] = KEYS["exclude"]
    dependencies: bool = KEYS["dependencies"]
    environments: Optional[tuple[Environment, ...]] = KEYS["environments"]
    prereleases: bool = KEYS["prereleases"]
    latest: Optional[int] = KEYS["latest"]
    max_file_size: Optional[int] = KEYS["max_file_size"]
    delete: bool = KEYS["delete"]
    max_delete_ratio: float = KEYS["max_delete_ratio"]
    fsync: bool = KEYS["fsync"]
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    policy: PolicySettings = field(default_factory=lambda: _no_policy())
    local: Optional[Path] = KEYS["local"]
    merge_upstream: tuple[str, ...] = KEYS["merge_upstream"]  # canonical names
    public_url: Optional[str] = KEYS["public_url"]  # ends with "/"

    @property
    def web(self) -> Path:
        return self.directory / "web"

    @property
    def simple_dir(self) -> Path:
        return self.web / "simple"

    @property
    def packages_dir(self) -> Path:
        return self.web / "packages"

    @property
    def state_path(self) -> Path:
        return self.directory / "state.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.directory / ".lock"

    @property
    def filtered(self) -> bool:
        """True when the mirror holds a selection rather than everything upstream has."""
        return bool(
            self.projects is not None
            or self.exclude
            or self.environments is not None
            or not self.prereleases
            or self.latest is not None
            or self.max_file_size is not None
            or self.policy.active
        )


def _no_policy() -> PolicySettings:
    from .policy.settings import PolicySettings

    return PolicySettings()


_FROM_KEYS: Any = object()  # _Reader.get's default: the key's default in KEYS


class _Reader:
    """Validates one mapping, naming the file and the dotted key in every error.

    With ``declared``, the mapping is the configuration or one of its sections: a key's default is its
    entry in KEYS, and a key KEYS does not declare is unknown. Without, (an environment) every key
    read is known and defaults are given where read.
    """

    def __init__(self, data: dict[str, Any], file: Path, prefix: str = "", declared: bool = False) -> None:
        self.data = data
        self.file = file
        self.prefix = prefix
        self.declared = declared
        self.used: set[str] = set()

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.file}: key '{self.prefix}{key}' {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _FROM_KEYS, required: bool = False) -> Any:
        if default is _FROM_KEYS:
            name = self.prefix + key
            default = ({} if name in SECTIONS else KEYS[name]) if self.declared else None
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        # bool is a subclass of int: never accept it where a number is wanted, and vice versa
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {_kind_name(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {_kind_name(kinds)}, not {type(value).__name__} {value!r}")
        return value

    def finish(self) -> None:
        known = self.used
        if self.declared:  # what KEYS declares at this level, and the parser read
            known &= {k[len(self.prefix):].split(".", 1)[0] for k in KEYS if k.startswith(self.prefix)}
        unknown = sorted(set(self.data) - known)
        if unknown:
            raise self.fail(unknown[0], "is not a known configuration key")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_size(value: Any, what: Callable[[str], ConfigError]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise what("must be a positive size")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise what(f"must be a size such as 52428800, '50M' or '2G', not {value!r}")


def _requirements(reader: _Reader, key: str) -> Optional[tuple[Requirement, ...]]:
    items = reader.get(key, list)
    if items is None:
        return None
    if not items and key != "projects":  # an empty list: no parser to load (`projects: []` is refused below)
        return ()
    from packaging.requirements import InvalidRequirement, Requirement

    reqs = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise reader.fail(f"{key}[{i}]", f"must be a PEP 508 requirement string, not {item!r}")
        try:
            req = Requirement(item)
        except InvalidRequirement as exc:
            raise reader.fail(f"{key}[{i}]", f"is not a valid PEP 508 requirement ({item!r}): {exc}") from None
        if req.url:
            raise reader.fail(f"{key}[{i}]", f"must name a project, not a URL ({item!r})")
        reqs.append(req)
    return tuple(reqs)


_PLATFORMS = {"linux", "macos", "windows"}


def _environment(reader: _Reader, key: str, item: Any) -> Environment:
    if isinstance(item, (str, int, float)) and not isinstance(item, bool):
        item = {"python": str(item)}
    if not isinstance(item, dict):
        raise reader.fail(key, f"must be a mapping with 'python' and optional 'platform', not {item!r}")
    sub = _Reader(item, reader.file, f"{reader.prefix}{key}.")
    python = sub.get("python", (str, float, int), required=True)
    python = str(python)
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", python):
        raise sub.fail("python", f"must be a Python version such as '3.12', not {python!r}")
    platform = sub.get("platform", str)
    if platform is not None and platform not in _PLATFORMS:
        raise sub.fail("platform", f"must be one of {', '.join(sorted(_PLATFORMS))}, not {platform!r}")
    machine = sub.get("machine", str)
    implementation = sub.get("implementation", str, "cpython")
    if implementation not in ("cpython", "pypy"):
        raise sub.fail("implementation", f"must be cpython or pypy, not {implementation!r}")
    tags = sub.get("tags", list, [])
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or tag.count("-") != 2:
            raise sub.fail(f"tags[{i}]", f"must be a wheel tag such as 'cp312-cp312-manylinux_2_17_x86_64', not {tag!r}")
    markers = sub.get("markers", dict, {})
    for mk, mv in markers.items():
        if not isinstance(mv, str):
            raise sub.fail(f"markers.{mk}", f"must be a string, not {mv!r}")
    sub.finish()
    return Environment(
        python=python,
        platform=platform,
        machine=machine,
        implementation=implementation,
        tags=tuple(tags),
        markers=tuple(sorted(markers.items())),
    )


def _ca_bundle(reader: _Reader, file: Path) -> Optional[Path]:
    """`ca_bundle`: a readable PEM file (or a directory of hashed certificates, as c_rehash makes)."""
    raw = reader.get("ca_bundle", str)
    if raw is None:
        return None
    if not raw.strip():
        raise reader.fail("ca_bundle", "must be the path of a PEM file of CA certificates, not an empty string")
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        path = (file.parent / path).resolve()
    if not path.exists():
        raise reader.fail("ca_bundle", f"names {path}, which does not exist")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise reader.fail("ca_bundle", f"names the directory {path}, which this user cannot read")
        return path
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise reader.fail("ca_bundle", f"names {path}, which cannot be read ({exc.strerror})") from None
    return path


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read configuration file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the configuration must be a mapping of keys to values")
    return config_from_mapping(data, file)


def config_from_mapping(data: dict[str, Any], file: Path) -> Config:
    r = _Reader(data, file, declared=True)
    directory = r.get("directory", str, required=True)
    dir_path = Path(os.path.expanduser(directory))
    if not dir_path.is_absolute():
        dir_path = (file.parent / dir_path).resolve()

    upstream = r.get("upstream", str)
    upstream_from_pip = upstream is None
    if upstream is None:
        upstream = default_upstream()
    if not re.match(r"^(https?|file)://", upstream):
        raise r.fail("upstream", f"must be an http(s) URL of a simple index root, not {upstream!r}")
    if not upstream.endswith("/"):
        upstream += "/"

    workers = r.get("workers", int)
    if not 1 <= workers <= 64:
        raise r.fail("workers", f"must be between 1 and 64, not {workers}")
    timeout = float(r.get("timeout", (int, float)))
    if timeout <= 0:
        raise r.fail("timeout", "must be a positive number of seconds")
    deadline = float(r.get("deadline", (int, float)))
    if deadline < timeout:
        raise r.fail("deadline", f"must be a number of seconds no smaller than 'timeout' ({timeout:g}), not {deadline:g}")
    max_page_size = parse_size(r.get("max_page_size", (int, str)), lambda m: r.fail("max_page_size", m))
    if max_page_size < 64 * 1024:
        raise r.fail("max_page_size", f"must be at least 64K, not {max_page_size}")
    max_root_size = parse_size(r.get("max_root_size", (int, str)), lambda m: r.fail("max_root_size", m))
    if max_root_size < 64 * 1024:
        raise r.fail("max_root_size", f"must be at least 64K, not {max_root_size}")
    retries = r.get("retries", int)
    if not 0 <= retries <= 20:
        raise r.fail("retries", f"must be between 0 and 20, not {retries}")

    projects = _requirements(r, "projects")
    exclude = _requirements(r, "exclude") or ()
    dependencies = r.get("dependencies", bool)

    envs_raw = r.get("environments", list)
    environments = None
    if envs_raw is not None:
        if not envs_raw:
            raise r.fail("environments", "must list at least one environment, or be left out")
        environments = tuple(_environment(r, f"environments[{i}]", e) for i, e in enumerate(envs_raw))

    prereleases = r.get("prereleases", bool)
    latest = r.get("latest", int)
    if latest is not None and latest < 1:
        raise r.fail("latest", f"must be at least 1, not {latest}")
    max_size_raw = r.get("max_file_size", (int, str))
    max_file_size = None if max_size_raw is None else parse_size(max_size_raw, lambda m: r.fail("max_file_size", m))
    delete = r.get("delete", bool)
    ratio = float(r.get("max_delete_ratio", (int, float)))
    if not 0.0 <= ratio <= 1.0:
        raise r.fail("max_delete_ratio", f"must be between 0 and 1, not {ratio}")
    fsync = r.get("fsync", bool)
    ca_bundle = _ca_bundle(r, file)

    stats_raw = r.get("statistics", dict)
    sr = _Reader(stats_raw, file, "statistics.", declared=True)
    statistics = StatisticsConfig(
        access_log_pattern=sr.get("access_log_pattern", str),
        output_directory=sr.get("output_directory", str),
    )
    sr.finish()
    metrics_raw = r.get("metrics", dict)
    mr = _Reader(metrics_raw, file, "metrics.", declared=True)
    metrics = MetricsConfig(textfile_directory=mr.get("textfile_directory", str))
    mr.finish()
    policy = _policy(r, data, file)
    local_raw = r.get("local", str)
    local = None
    if local_raw is not None:
        local = Path(os.path.expanduser(local_raw))
        if not local.is_absolute():
            local = (file.parent / local).resolve()
    merge = r.get("merge_upstream", list)
    merge_upstream: tuple[str, ...] = ()
    if merge:
        from packaging.utils import canonicalize_name

        for i, name in enumerate(merge):
            if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", name):
                raise r.fail(f"merge_upstream[{i}]", f"must be a project name, not {name!r}")
        merge_upstream = tuple(sorted({canonicalize_name(n) for n in merge}))
        if local is None:
            raise r.fail("merge_upstream", "needs 'local', the directory of the organisation's own packages")
    public_url = r.get("public_url", str)
    if public_url is not None:
        if not re.match(r"^https?://[^/\s]+", public_url):
            raise r.fail("public_url", f"must be the mirror's base http(s) URL, such as https://pypi.example.org/, not {public_url!r}")
        public_url = public_url if public_url.endswith("/") else public_url + "/"
    r.finish()

    return Config(
        path=file,
        upstream=upstream,
        directory=dir_path,
        upstream_from_pip=upstream_from_pip,
        ca_bundle=ca_bundle,
        workers=workers,
        timeout=timeout,
        deadline=deadline,
        max_page_size=max_page_size,
        max_root_size=max_root_size,
        retries=retries,
        projects=projects,
        exclude=exclude,
        dependencies=dependencies,
        environments=environments,
        prereleases=prereleases,
        latest=latest,
        max_file_size=max_file_size,
        delete=delete,
        max_delete_ratio=ratio,
        fsync=fsync,
        statistics=statistics,
        metrics=metrics,
        policy=policy,
        local=local,
        merge_upstream=merge_upstream,
        public_url=public_url,
    )


def _policy(r: _Reader, data: dict[str, Any], file: Path) -> PolicySettings:
    """The policy keys, read (so that their types are checked and they count as known) and
    validated by the policy's own parser; its errors name the file too."""
    from .policy.settings import POLICY_KEYS, parse_policy

    kinds: dict[str, Any] = {"cooldown": (str, int), "cooldown_unknown": str, "cooldown_exempt": list, "advisories": str,
                             "block": dict, "allow": dict}
    raw: dict[str, Any] = {}
    for key in POLICY_KEYS:
        if key == "uploaded_before":
            r.used.add(key)  # YAML may give a datetime already; the policy's parser takes both
        else:
            r.get(key, kinds[key])
        if data.get(key) is not None:
            raw[key] = data[key]
    try:
        return parse_policy(raw, file.parent)
    except ConfigError as exc:
        key, _, rest = str(exc).partition(": ")
        joint = " " if rest.startswith(("must ", "is ", "needs ", "has ")) else ": "
        raise ConfigError(f"{file}: key '{key}'{joint}{rest}") from None
