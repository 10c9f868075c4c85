"""Which releases and files of a project the mirror keeps."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Optional

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config import Config
from ..environments import FileFilter, environment_label
from ..models import ProjectPage, UpstreamFile

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from ..policy.rules import Policy, Refusal


@dataclass
class Want:
    """What is asked of one project: a union of specifiers (None = every release) and extras."""

    specifiers: set[Optional[str]] = field(default_factory=set)
    extras: set[str] = field(default_factory=set)

    def add(self, req: Requirement) -> bool:
        """Merge a requirement; True when that widened what is wanted."""
        spec = str(req.specifier) or None
        before = (len(self.specifiers), len(self.extras))
        self.specifiers.add(spec)
        self.extras.update(canonicalize_name(e) for e in req.extras)
        return (len(self.specifiers), len(self.extras)) != before

    def copy(self) -> "Want":
        return Want(set(self.specifiers), set(self.extras))

    def within(self, key: Optional[str]) -> bool:
        """Whether this want asks for nothing that the want written as `key` did not (same
        specifiers or fewer, same extras or fewer). Each specifier selects on its own, so on the
        same page this want selects a subset of what that one did."""
        if key is None or "[" not in key:
            return False
        specs, _, extras = key.rpartition("[")
        theirs = {None if s == "*" else s for s in specs.split("|")} if specs else set()
        their_extras = {e for e in extras.rstrip("]").split(",") if e}
        return self.specifiers <= theirs and self.extras <= their_extras

    def key(self) -> str:
        specs = sorted("*" if s is None else s for s in self.specifiers)
        return "|".join(specs) + "[" + ",".join(sorted(self.extras)) + "]"


class Selector:
    def __init__(self, config: Config, policy: Optional[Policy] = None) -> None:
        self.config = config
        # the policy (cooldown, advisories): one more rule of the selection, so that `latest`
        # and the closure choose among the releases that passed it
        self.policy = policy if policy is not None and policy.active else None
        self.file_filter = FileFilter(config.environments)
        self.excluded: dict[str, list[SpecifierSet]] = {}
        for req in config.exclude:
            self.excluded.setdefault(canonicalize_name(req.name), []).append(req.specifier)

    def project_excluded(self, canonical: str) -> bool:
        """The whole project is on the blocklist (a bare name)."""
        return any(len(spec) == 0 for spec in self.excluded.get(canonical, []))

    def admits(self, f: UpstreamFile) -> bool:
        """Whether a file can be selected at all, whatever is asked of its project: the size
        limit and the target environments."""
        if self.config.max_file_size is not None and f.size is not None and f.size > self.config.max_file_size:
            return False
        return self.file_filter.keep(f.filename, f.requires_python)

    def select(self, page: ProjectPage, want: Optional[Want]) -> tuple[list[UpstreamFile], list[str]]:
        """The files to mirror and the PEP 700 versions list to publish (see _select)."""
        return self._select(page, want, self.policy)

    def refusals(self, page: ProjectPage, want: Optional[Want]) -> list[tuple[UpstreamFile, Refusal]]:
        """The files the policy keeps out that the selection would pick without it, with why."""
        policy = self.policy
        if policy is None:
            return []
        would, _versions = self._select(page, want, None)
        out = []
        for f in would:
            if f.local:
                continue
            refusal = policy.judge(page.canonical, f.version, f.upload_time)
            if refusal is not None:
                out.append((f, refusal))
        return out

    def _select(self, page: ProjectPage, want: Optional[Want], policy: Optional[Policy]) -> tuple[list[UpstreamFile], list[str]]:
        """The files to mirror and the PEP 700 versions list to publish.

        Monotone in `want`: asking for more (another specifier, another extra) never selects
        fewer files. The dependency closure relies on it to reach one fixpoint whatever the order
        in which requirements are met. With `latest`, each configured environment gets the N
        newest releases (of those a specifier admits) that it can install: requires-python and
        wheel tags, or an sdist; the mirror keeps the union.
        """
        cfg = self.config
        keep = self.file_filter
        if page.status is not None and page.status.get("status") == "quarantined":
            return [], []  # PEP 792: a quarantined project offers no files
        by_version: dict[Optional[Version], list[UpstreamFile]] = {}
        for f in page.files:
            if not self.admits(f):
                continue
            # the organisation's own files pass: no cooldown or advisories for them
            if policy is not None and not f.local and policy.judge(page.canonical, f.version, f.upload_time) is not None:
                continue
            try:
                v: Optional[Version] = Version(f.version) if f.version else None
            except InvalidVersion:
                v = None
            by_version.setdefault(v, []).append(f)
        versions = sorted((v for v in by_version if v is not None), reverse=True)
        exclude_specs = self.excluded.get(page.canonical, [])
        if exclude_specs:
            versions = [v for v in versions if not any(s.contains(v, prereleases=True) for s in exclude_specs)]
        specs: list[Optional[str]] = [None] if want is None else sorted(want.specifiers, key=lambda s: s or "")
        envs = range(len(keep.matchers)) if keep.matchers is not None else [None]
        chosen: set[Version] = set()
        for spec_text in specs:
            # each specifier picks on its own (its pre-releases too), so that another one
            # added to the want never changes what this one picks
            spec = SpecifierSet(spec_text or "")
            explicit_pre = bool(spec_text) and bool(spec.prereleases)
            matching = [
                v for v in versions
                if spec.contains(v, prereleases=True) and (cfg.prereleases or not v.is_prerelease or explicit_pre)
            ]
            if cfg.latest is None:
                chosen.update(matching)
                continue
            for env in envs:
                installable = (
                    v for v in matching
                    if env is None or any(keep.fits(env, f.filename, f.requires_python) for f in by_version[v])
                )
                chosen.update(islice(installable, cfg.latest))
        # files whose version cannot be parsed belong to no release: kept only when nothing
        # filters by version (a bare requirement asks for every release)
        version_filtering = None not in specs or cfg.latest is not None or not cfg.prereleases or bool(exclude_specs)
        files: list[UpstreamFile] = []
        for v, group in by_version.items():
            if (v is None and not version_filtering) or (v is not None and v in chosen):
                files.extend(group)
        files.sort(key=lambda f: f.filename)
        if not cfg.filtered and page.versions is not None:
            published_versions = list(page.versions)
        else:
            published_versions = sorted({f.version for f in files if f.version}, key=_version_key)
        return files, published_versions

    def uninstallable(self, files: list[UpstreamFile]) -> list[str]:
        """The configured environments that can install none of `files` (their labels)."""
        keep = self.file_filter
        if keep.envs is None:
            return [] if files else ["any environment"]
        return [
            environment_label(env)
            for i, env in enumerate(keep.envs)
            if not any(keep.fits(i, f.filename, f.requires_python) for f in files)
        ]


def _version_key(text: str) -> tuple[int, object]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)
