"""The policy's configuration keys (mirror_sync/policy/settings.py), as YAML hands them over."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from mirror_sync.errors import ConfigError
from mirror_sync.policy.settings import Block, PolicySettings, parse_policy


def parse(text: str, base: Path | None = None) -> PolicySettings:
    return parse_policy(yaml.safe_load(text) or {}, base)


def test_no_policy_keys_no_policy() -> None:
    settings = parse("directory: /srv/mirror\nworkers: 4\n")
    assert settings == PolicySettings() and not settings.active and not settings.time_rules


def test_every_key(tmp_path: Path) -> None:
    settings = parse("""
cooldown: 7d
cooldown_unknown: allow
uploaded_before: 2024-05-01T00:00:00Z
cooldown_exempt: ["urllib3>=2.2.3", Django]
advisories: osv/PyPI.zip
block: {malicious: true, vulnerable: high}
allow:
  GHSA-xxxx-xxxx-xxxx: ["jinja2<3", pillow]
  PYSEC-2024-1: [requests]
""", base=tmp_path)
    assert settings.cooldown == timedelta(days=7)
    assert settings.cooldown_unknown == "allow"
    assert settings.uploaded_before == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert [m.text for m in settings.cooldown_exempt] == ["urllib3>=2.2.3", "Django"]
    assert settings.advisories == tmp_path / "osv/PyPI.zip"
    assert settings.block == Block(malicious=True, vulnerable="high")
    assert [ident for ident, _ in settings.allow] == ["GHSA-xxxx-xxxx-xxxx", "PYSEC-2024-1"]
    assert settings.active and settings.time_rules


def test_defaults_when_advisories_are_set() -> None:
    settings = parse("advisories: /var/lib/osv/PyPI.zip\n")
    assert settings.block == Block(malicious=True, vulnerable="off") and settings.active
    assert parse("advisories: /x.zip\nblock: {}\n").block == Block(malicious=True, vulnerable="off")
    assert parse("advisories: /x.zip\nblock: {vulnerable: off}\n").block.vulnerable == "off"  # YAML 1.1: off is false
    assert parse("advisories: /x.zip\nblock: {vulnerable: MODERATE}\n").block.vulnerable == "moderate"
    assert not parse("advisories: /x.zip\nblock: {malicious: false}\n").active  # nothing to block by


def test_a_path_is_kept_without_a_base() -> None:
    assert parse("advisories: osv.zip\n").advisories == Path("osv.zip")
    assert parse("advisories: ~/osv.zip\n").advisories == Path.home() / "osv.zip"


def test_uploaded_before_as_yaml_dates() -> None:
    assert parse("uploaded_before: 2024-05-01\n").uploaded_before == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert parse("uploaded_before: 2024-05-01 02:00:00+02:00\n").uploaded_before == datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_releases_match_by_canonical_name_and_specifier() -> None:
    settings = parse("cooldown: 1d\ncooldown_exempt: ['URLLib3>=2.2.3', 'Zope.Interface', 'foo==2.0rc1']\n")
    assert settings.exempt("urllib3", "2.2.3") == "URLLib3>=2.2.3"
    assert settings.exempt("urllib3", "2.3.0rc1") == "URLLib3>=2.2.3"  # pre-releases count
    assert settings.exempt("urllib3", "2.2.2") is None
    assert settings.exempt("urllib3", None) is None and settings.exempt("urllib3", "not-a-version") is None
    assert settings.exempt("zope-interface", None) == "Zope.Interface"  # a bare name: every release
    assert settings.exempt("foo", "2.0rc1") == "foo==2.0rc1" and settings.exempt("foo", "2.0") is None


def test_allow_matches_any_name_of_the_advisory_without_case() -> None:
    settings = parse("advisories: /x.zip\nallow: {ghsa-abcd-efgh-ijkl: ['jinja2<3']}\n")
    names = frozenset({"PYSEC-1", "GHSA-abcd-efgh-ijkl"})
    assert settings.allowed(names, "jinja2", "2.11") == "ghsa-abcd-efgh-ijkl"
    assert settings.allowed(names, "jinja2", "3.0") is None
    assert settings.allowed(frozenset({"PYSEC-2"}), "jinja2", "2.11") is None


@pytest.mark.parametrize(("raw", "message"), [
    ({"cooldown": "7 days"}, "cooldown: '7 days' is not a duration (use 7d, 12h or P7D)"),
    ({"cooldown": "P1M"}, "cooldown: 'P1M' counts months or years"),
    ({"cooldown_unknown": "maybe"}, "cooldown_unknown: must be hold or allow, not 'maybe'"),
    ({"cooldown_unknown": True}, "cooldown_unknown: must be hold or allow, not True"),
    ({"uploaded_before": "2024-05-01T00:00:00"}, "uploaded_before: '2024-05-01T00:00:00' has no timezone"),
    ({"cooldown_exempt": "urllib3"}, "cooldown_exempt: must be a list of PEP 508 requirements"),
    ({"cooldown_exempt": ["urllib3>=", "x"]}, "cooldown_exempt[0]: 'urllib3>=' is not a valid PEP 508 requirement"),
    ({"cooldown_exempt": ["ok", 3]}, "cooldown_exempt[1]: must be a PEP 508 requirement"),
    ({"cooldown_exempt": ["foo; python_version<'3'"]}, "cooldown_exempt[0]: \"foo; python_version<'3'\" must be a project name with an optional version specifier"),
    ({"cooldown_exempt": ["foo[bar]"]}, "cooldown_exempt[0]: 'foo[bar]' must be a project name"),
    ({"cooldown_exempt": ["foo @ https://x.invalid/foo.whl"]}, "cooldown_exempt[0]: 'foo @ https://x.invalid/foo.whl' must be a project name"),
    ({"advisories": ""}, "advisories: must be the path of an OSV export"),
    ({"advisories": ["a.zip"]}, "advisories: must be the path of an OSV export"),
    ({"block": {"malicious": True}}, "block: needs 'advisories', the OSV export to judge releases by"),
    ({"allow": {"GHSA-x": ["a"]}}, "allow: needs 'advisories'"),
    ({"advisories": "/x.zip", "block": "strict"}, "block: must be a mapping with 'malicious' and 'vulnerable', not 'strict'"),
    ({"advisories": "/x.zip", "block": {"malware": True}}, "block.malware: is not a known key (malicious, vulnerable)"),
    ({"advisories": "/x.zip", "block": {"malicious": "yes"}}, "block.malicious: must be true or false, not 'yes'"),
    ({"advisories": "/x.zip", "block": {"vulnerable": "severe"}}, "block.vulnerable: must be one of off, low, moderate, high, critical, not 'severe'"),
    ({"advisories": "/x.zip", "block": {"vulnerable": True}}, "block.vulnerable: must be one of off, low, moderate, high, critical, not True"),
    ({"advisories": "/x.zip", "allow": ["GHSA-x"]}, "allow: must be a mapping of advisory ids to lists of requirements"),
    ({"advisories": "/x.zip", "allow": {"GHSA-x": "jinja2"}}, "allow.GHSA-x: must list the requirements it applies to"),
    ({"advisories": "/x.zip", "allow": {"GHSA-x": []}}, "allow.GHSA-x: must list the requirements it applies to"),
    ({"advisories": "/x.zip", "allow": {"GHSA-x": ["ok", "bad spec >="]}}, "allow.GHSA-x[1]: 'bad spec >=' is not a valid PEP 508 requirement"),
    ({"advisories": "/x.zip", "allow": {12: ["a"]}}, "allow: 12 is not an advisory id"),
])
def test_bad_values_name_their_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(raw)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_the_key_of_a_project_holds_only_what_bears_on_it() -> None:
    a = parse("cooldown: 1d\ncooldown_exempt: [foo>=2]\nadvisories: /x.zip\nallow: {GHSA-1: [bar]}\n")
    b = parse("cooldown: 1d\ncooldown_exempt: [foo>=2, baz]\nadvisories: /x.zip\nallow: {GHSA-1: [bar], GHSA-2: [baz]}\n")
    assert a.key_for("foo") == b.key_for("foo") and a.key_for("bar") == b.key_for("bar")
    assert a.key_for("baz") != b.key_for("baz")
    assert parse("cooldown: 1d\n").key_for("foo") != parse("cooldown: 2d\n").key_for("foo")
    assert parse("cooldown: 1d\n").key_for("foo") == parse("cooldown: 24h\n").key_for("foo")
