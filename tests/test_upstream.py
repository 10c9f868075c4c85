"""The upstream reader's small pure parts."""
from __future__ import annotations

from mirror_sync.upstream import Validators, public_url


def test_messages_never_carry_credentials() -> None:
    assert public_url("https://user:secret@index.example.invalid/simple/") == "https://index.example.invalid/simple/"
    assert public_url("https://tok%40en@index.example.invalid:8443/s/") == "https://index.example.invalid:8443/s/"
    assert public_url("http://127.0.0.1:8080/simple/x/") == "http://127.0.0.1:8080/simple/x/"


def test_validators_become_conditional_request_headers() -> None:
    assert Validators('"abc"', "Tue, 01 Dec 2026 00:00:00 GMT").headers() == {
        "If-None-Match": '"abc"', "If-Modified-Since": "Tue, 01 Dec 2026 00:00:00 GMT"}
    assert Validators(None, None).headers() == {}
