"""Realistic-looking, unique project names (deterministic for a seed)."""
from __future__ import annotations

import random
import re

_WORDS = (
    "async aws azure backend beautiful cache celery click cloud config core crypto dash data db debug "
    "deploy django docker docs fast flask flow frame gcp geo graph grpc http image io json jupyter kafka "
    "kube lab lib lint log math media meta ml mock model mongo net notebook numpy oauth object open "
    "pandas parser path plot plugin proto py pytest query queue redis rest rpc schema scrapy sdk "
    "search secure serial server simple slack spark sql stats storage stream task tensor test text "
    "time toml tool torch trace type ui unit utils vector view web widget xml yaml zip admin agent "
    "api app archive audio auth batch bio bot build chart chat client color compat compute connect "
    "cron csv daemon date dev diff dns email engine env event export extra file filter font form "
    "gateway git hash helper hook html index ini jwt kit lambda lang layer light link list loader "
    "lock mail map markdown message metric micro migrate mini monitor multi nlp node odoo orm pack "
    "page pay pdf pipe pool postgres print profile pub qt random record report request retry robot "
    "route rule run s3 scan scheduler secret sensor session shell signal sign site sms socket sort "
    "spec sphinx ssh stack state stub style sync table tag template terminal thread token tree twisted "
    "unicode upload url user uuid valid version video watch wave wsgi zope"
).split()
_PREFIXES = ("py", "django-", "flask-", "pytest-", "types-", "sphinxcontrib-", "azure-", "jupyter-", "odoo-addon-", "")
_SUFFIXES = ("", "", "", "-utils", "-tools", "-client", "-sdk", "-plugin", "-core", "-cli", "2", "3", "-ng", "x", "-lite")
_SEPARATORS = ("-", "-", "-", "_", ".")
_CANON_RE = re.compile(r"[-_.]+")


def canonical(name: str) -> str:
    """PEP 503 normalisation."""
    return _CANON_RE.sub("-", name).lower()


def _styled(parts: list[str], rng: random.Random) -> str:
    style = rng.random()
    if style < 0.08:  # CamelCase: FooBar
        return "".join(p.capitalize() for p in parts)
    sep = rng.choice(_SEPARATORS)
    name = sep.join(parts)
    if style < 0.15:
        name = name.capitalize()
    return name


def _candidate(rng: random.Random) -> str:
    count = rng.choices((1, 2, 3), weights=(3, 6, 2))[0]
    parts = rng.sample(_WORDS, count)
    name = _styled(parts, rng)
    if rng.random() < 0.3:
        prefix = rng.choice(_PREFIXES)
        name = prefix + name
    if rng.random() < 0.3:
        name += rng.choice(_SUFFIXES)
    return name


def project_names(count: int, seed: int = 1) -> list[str]:
    """`count` display names whose canonical forms are unique."""
    rng = random.Random(seed)
    names: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(names) < count:
        attempts += 1
        name = _candidate(rng)
        if attempts > count * 4:  # the word space is running out: add a number to stay unique
            name = f"{name}{rng.randrange(10**6)}"
        canon = canonical(name)
        if canon in seen or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", name):
            continue
        seen.add(canon)
        names.append(name)
    return names
