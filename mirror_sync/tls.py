"""TLS trust, as pip does it: which certificates an upstream's certificate is verified against.

Most specific first: the configuration's `ca_bundle`; REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE; when
`upstream` is left out (the index pip would use), pip's own CA setting (PIP_CERT, then `cert` in
pip's configuration); else the system trust store, through `truststore` (what pip itself uses), so a
run under cron or Ansible's `become`, with no variable set, trusts what the host trusts. A bundle
replaces the system store, as it does for requests and curl.
"""
from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Optional
from urllib.parse import urlsplit

import requests

from .errors import ConfigError

ENV_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SYSTEM = "the system trust store"


@dataclass(frozen=True)
class Trust:
    """Where certificates are verified: `path` (a PEM file or a directory of hashed certificates)
    set by `source`, or the system trust store when `path` is None."""

    source: str = SYSTEM  # "ca_bundle", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "pip's 'global.cert'"
    path: Optional[str] = None


SYSTEM_TRUST = Trust()


def choose_trust(
    ca_bundle: Optional[str],
    environ: Mapping[str, str],
    pip_cert: Optional[Callable[[], Optional[tuple[str, str]]]] = None,
) -> Trust:
    """The trust that applies, most specific first. `pip_cert` (asked only when needed) gives
    pip's (source, path); pass it only when the upstream is the one pip would use."""
    if ca_bundle:
        return Trust("ca_bundle", ca_bundle)
    for var in ENV_BUNDLES:
        if environ.get(var):
            return Trust(var, environ[var])
    if pip_cert is not None:
        found = pip_cert()
        if found:
            return Trust(*found)
    return SYSTEM_TRUST


def trust_for(ca_bundle: Optional[str], upstream_from_pip: bool, check: bool = True) -> Trust:
    """choose_trust for this process's environment and pip's configuration. With `check` (an
    https upstream) the bundle is loaded now: a missing or malformed one is a configuration error
    before any request; otherwise it is loaded at the first https request, if any."""
    from .pip_default import pip_cert

    trust = choose_trust(ca_bundle, os.environ, pip_cert if upstream_from_pip else None)
    if check:
        context(trust)
    return trust


def _system_context() -> ssl.SSLContext:
    try:
        import truststore  # Python >= 3.10
    except ImportError:  # Python 3.9: OpenSSL's default paths, which is the system store on Linux
        ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _bundle_context(trust: Trust) -> ssl.SSLContext:
    from urllib3.util.ssl_ import create_urllib3_context  # what requests builds for a bundle

    assert trust.path is not None
    ctx = create_urllib3_context()
    try:
        if os.path.isdir(trust.path):
            ctx.load_verify_locations(capath=trust.path)
        else:
            ctx.load_verify_locations(cafile=trust.path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc.__class__.__name__
        raise ConfigError(
            f"{trust.source} names {trust.path}, which holds no usable CA certificate ({reason}); "
            "point it at a PEM file of CA certificates"
        ) from None
    return ctx


_contexts: dict[Trust, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def context(trust: Trust) -> ssl.SSLContext:
    """The SSLContext for `trust`, built once per process and shared by every connection pool (a
    bundle is parsed once, not once per connection)."""
    with _contexts_lock:
        ctx = _contexts.get(trust)
        if ctx is None:
            ctx = _system_context() if trust.path is None else _bundle_context(trust)
            _contexts[trust] = ctx
        return ctx


_process_trust: Optional[Trust] = None


def use(trust: Trust) -> None:
    """Make `trust` what every HttpClient of this process verifies with (the CLI sets it from the
    configuration once; forked workers inherit it)."""
    global _process_trust
    _process_trust = trust


def process_trust() -> Trust:
    """The trust set with use(), else the one that needs no configuration (variables, system store)."""
    return _process_trust if _process_trust is not None else choose_trust(None, os.environ)


class TLSError(requests.exceptions.SSLError):
    """A TLS failure in one sentence: which server, why, and what to set."""


def _verification_failure(exc: BaseException) -> Optional[BaseException]:
    """The certificate-verification error inside a requests/urllib3 error chain, if that is what it is."""
    seen = 0
    todo: list[object] = [exc]
    while todo and seen < 32:  # bounded: error chains are short
        item = todo.pop()
        seen += 1
        if isinstance(item, ssl.SSLCertVerificationError):  # also ssl.CertificateError: a hostname mismatch
            return item
        if isinstance(item, BaseException):
            todo.extend(a for a in item.args if isinstance(a, BaseException))
            for attr in ("reason", "__cause__", "__context__"):
                nested = getattr(item, attr, None)
                if isinstance(nested, BaseException):
                    todo.append(nested)
    return None


def _ssl_reason(exc: BaseException) -> str:
    """OpenSSL's short reason ('wrong version number'), not the whole nested repr."""
    todo: list[object] = [exc]
    for _ in range(32):
        if not todo:
            break
        item = todo.pop()
        if isinstance(item, ssl.SSLError) and item.reason:
            return str(item.reason).replace("_", " ").lower()
        if isinstance(item, BaseException):
            todo.extend(a for a in item.args if isinstance(a, BaseException))
            reason = getattr(item, "reason", None)
            if isinstance(reason, BaseException):
                todo.append(reason)
    return exc.__class__.__name__


_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def tls_error(url: str, exc: BaseException, trust: Trust) -> TLSError:
    """One sentence for a TLS failure talking to `url`."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")  # never the credentials
    bad = _verification_failure(exc)
    if bad is not None:
        why = getattr(bad, "verify_message", None) or str(bad)
        if getattr(bad, "verify_code", None) in _NAME_MISMATCH:
            return TLSError(f"{origin}: the certificate is not valid for {parts.hostname} ({why}); name the host it is issued for in 'upstream'")
        return TLSError(f"{origin}: certificate not trusted by {trust.source} ({why}); set 'ca_bundle' to its CA's PEM file")
    return TLSError(f"TLS with {origin} failed ({_ssl_reason(exc)}); check that 'upstream' names an HTTPS server")
