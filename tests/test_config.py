"""Configuration: every key validated, errors name the key and the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from mirror_sync.cli import main
from mirror_sync.config import config_from_mapping, load_config
from mirror_sync.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mirror.yml"
    path.write_text(text)
    return path


def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "directory: m\nupstream: http://127.0.0.1:1/simple\n"))
    assert cfg.directory == (tmp_path / "m").resolve()
    assert cfg.upstream == "http://127.0.0.1:1/simple/"
    assert cfg.workers == 8 and cfg.delete is True and cfg.projects is None
    assert not cfg.filtered


@pytest.mark.parametrize(
    "text, key",
    [
        ("directory: m\nworkerz: 3\n", "workerz"),
        ("directory: m\nworkers: many\n", "workers"),
        ("directory: m\nworkers: true\n", "workers"),
        ("directory: m\nworkers: 0\n", "workers"),
        ("directory: m\ntimeout: -1\n", "timeout"),
        ("directory: m\nprojects: requests\n", "projects"),
        ("directory: m\nprojects: ['requests >>> 2']\n", "projects[0]"),
        ("directory: m\nprojects: [3]\n", "projects[0]"),
        ("directory: m\nexclude: ['foo @ http://x/y.whl']\n", "exclude[0]"),
        ("directory: m\nenvironments: [{python: '3.x'}]\n", "environments[0].python"),
        ("directory: m\nenvironments: [{python: '3.11', platform: beos}]\n", "environments[0].platform"),
        ("directory: m\nenvironments: [{python: '3.11', colour: red}]\n", "environments[0].colour"),
        ("directory: m\nenvironments: []\n", "environments"),
        ("directory: m\nlatest: 0\n", "latest"),
        ("directory: m\nmax_file_size: lots\n", "max_file_size"),
        ("directory: m\nmax_delete_ratio: 2\n", "max_delete_ratio"),
        ("directory: m\nupstream: ftp://example.invalid/\n", "upstream"),
        ("directory: m\nstatistics: {access_log: /x}\n", "statistics.access_log"),
        ("directory: m\nmetrics: {textfile_directory: 3}\n", "metrics.textfile_directory"),
        ("upstream: http://127.0.0.1:1/\n", "directory"),
        ("directory: m\ndelete: 'yes please'\n", "delete"),
        ("directory: m\nca_bundle: /nonexistent/ca.pem\n", "ca_bundle"),
        ("directory: m\nca_bundle: 3\n", "ca_bundle"),
        ("directory: m\nca_bundle: ''\n", "ca_bundle"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text + "upstream: http://127.0.0.1:1/simple/\n" if "upstream" not in text else text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"'{key}'" in str(err.value)
    assert str(path) in str(err.value)


def test_sizes_and_environments(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "directory: m\nupstream: http://127.0.0.1:1/\nmax_file_size: 50M\n"
            "environments: ['3.12', {python: '3.11', platform: linux, machine: x86_64}]\n",
        )
    )
    assert cfg.max_file_size == 50 * 1024 * 1024
    assert cfg.environments is not None and cfg.environments[0].python == "3.12"
    assert cfg.environments[1].platform == "linux"
    assert cfg.filtered


def test_ca_bundle_is_a_readable_path_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config(write(tmp_path, "directory: m\nupstream: http://127.0.0.1:1/\nca_bundle: ca.pem\n"))
    assert cfg.ca_bundle == tmp_path / "ca.pem"
    assert cfg.upstream_from_pip is False
    assert load_config(write(tmp_path, "directory: m\nupstream: http://127.0.0.1:1/\n")).ca_bundle is None


def test_every_key_of_the_readme_table_is_known() -> None:
    """The README's configuration table and the engine agree (the module's copy: test_module.py)."""
    keys = readme_config_keys()
    assert "ca_bundle" in keys
    base = {"directory": "m", "upstream": "http://127.0.0.1:1/"}
    for key in keys - set(base):
        config_from_mapping({**base, key: None}, Path("/x/mirror.yml"))  # None: as if left out, but known
    with pytest.raises(ConfigError, match="'no_such_key' is not a known"):
        config_from_mapping({**base, "no_such_key": None}, Path("/x/mirror.yml"))


def readme_config_keys() -> set[str]:
    """Top-level keys of the README's configuration table (`statistics.x` counts as `statistics`)."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = text.split("### Configuration (YAML)", 1)[1].split("\n\n", 2)[1]
    return {line.split("`")[1].split(".")[0] for line in table.splitlines() if line.startswith("| `")}


def test_default_upstream_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/pip-env/simple")
    cfg = load_config(write(tmp_path, "directory: m\n"))
    assert cfg.upstream == "http://127.0.0.1:9/pip-env/simple/"
    assert cfg.upstream_from_pip is True


def test_default_upstream_from_pip_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nindex-url = http://127.0.0.1:9/from-pip-conf/simple/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(pip_conf))
    cfg = load_config(write(tmp_path, "directory: m\n"))
    assert cfg.upstream == "http://127.0.0.1:9/from-pip-conf/simple/"


def test_default_upstream_is_pips_builtin_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pip._internal.models.index import PyPI

    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-dirs"))
    cfg = load_config(write(tmp_path, "directory: m\n"))
    assert cfg.upstream == PyPI.simple_url.rstrip("/") + "/"


def test_cli_reports_config_error_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "directory: m\nupstream: http://127.0.0.1:1/\nworkerz: 2\n")
    assert main(["-c", str(path), "sync"]) == 2
    err = capsys.readouterr().err
    assert "workerz" in err and "Traceback" not in err


def test_cli_json_error_is_one_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["-c", str(tmp_path / "missing.yml"), "status", "--json"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    doc = json.loads(out[0])
    assert doc["ok"] is False and "not found" in doc["error"]


def test_malformed_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        load_config(write(tmp_path, "directory: m\n  bad: [\n"))
