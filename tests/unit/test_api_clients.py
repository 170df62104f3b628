"""API clients (schemas/api_clients.py): the declared line, keys stored only as hashes, constant-time checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from zonesync.schemas.api_clients import ApiClients, Scope, key_sha256, new_client, read_clients
from zonesync.schemas.errors import ConfigError

BOTH: frozenset[Scope] = frozenset({"push", "update"})


def _declared(tmp_path: Path, *lines: str) -> ApiClients:
    path = tmp_path / "clients.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_clients(path)


def test_the_printed_line_declares_a_client_that_its_key_authenticates(tmp_path: Path) -> None:
    key, line = new_client("portal", {"merchants": BOTH, "payments": frozenset({"push"})})

    clients = _declared(tmp_path, "# the portal team's key, 2026-11-29", line)

    client = clients.authenticate(key)
    assert client is not None and client.name == "portal"
    assert client.may("merchants", "update") and client.may("payments", "push")
    assert not client.may("payments", "update") and not client.may("refunds", "push")
    name, _, secret = key.partition(".")
    assert name == "portal" and len(secret) == 43
    assert secret not in line and key_sha256(key) in line  # only the hash is ever written down


def test_two_keys_made_for_one_name_differ() -> None:
    assert new_client("portal", {"merchants": BOTH})[0] != new_client("portal", {"merchants": BOTH})[0]


@pytest.mark.parametrize(
    "presented",
    ["", "portal", "portal.", "other.{secret}", "portal.{secret}x", "portal.{wrong}", "{secret}", " portal.{secret}"],
)
def test_anything_but_the_exact_key_is_refused(tmp_path: Path, presented: str) -> None:
    key, line = new_client("portal", {"merchants": BOTH})
    _, other_line = new_client("other", {"merchants": BOTH})
    clients = _declared(tmp_path, line, other_line)
    secret = key.partition(".")[2]
    wrong = ("B" if secret[0] == "A" else "A") + secret[1:]

    assert clients.authenticate(presented.format(secret=secret, wrong=wrong)) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "clients.portal = { key_sha256 = 'abc', scopes = {} }",
            "client 'portal' in {path}: key_sha256: String should match",
        ),
        ("clients.portal = { key_sha256 = '" + "a" * 64 + "', scopes = { m = ['drop'] } }", "scopes.m"),
        ("clients.portal = { key_sha256 = '" + "a" * 64 + "', scopes = {}, admin = true }", "admin: Extra inputs"),
        ("clients.portal = {", "is not valid TOML"),
        ("[server]\nport = 1", "must hold only clients.<name>"),
        ("clients.'bad name' = { key_sha256 = '" + "a" * 64 + "', scopes = {} }", "name: String should match"),
    ],
    ids=["short-hash", "unknown-scope", "extra-field", "bad-toml", "other-table", "bad-name"],
)
def test_a_bad_clients_file_is_one_line_naming_the_setting(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError) as refused:
        read_clients(path)

    text = str(refused.value)
    assert text.startswith("ZONESYNC_API_CLIENTS_FILE: ") and "\n" not in text
    assert message.format(path=path) in text


def test_a_missing_clients_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ZONESYNC_API_CLIENTS_FILE: cannot read .*missing.toml"):
        read_clients(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["", "bad name", "a.b", "-leading", "x" * 64])
def test_a_client_name_must_be_a_plain_word(name: str) -> None:
    with pytest.raises(ConfigError, match="client name"):
        new_client(name, {"merchants": BOTH})
