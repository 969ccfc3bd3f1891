"""The NetSuite spec as the concierge uses it: the two sign-ins, values made usable (a PEM
pasted into a one-line field, a lower-case account id), refused values named by field,
and error hints picked from what the connector's check says."""

from __future__ import annotations

import pytest

from connectors.netsuite.sandbox.harness import GOOD_KEY
from connectors.netsuite.spec import SPEC
from connectors.spec import SetupValueError, prepare_connection


def test_m2m_is_recommended_and_tba_is_legacy() -> None:
    assert SPEC.auth(None).key == "oauth2_m2m"
    assert "2027.1" in SPEC.auth("oauth1_tba").legacy_note
    secret = {f.name for f in SPEC.fields if f.secret}
    assert {"private_key", "consumer_secret", "token_secret"} <= secret
    assert "Account ID" in SPEC.field("account_id").help
    assert SPEC.allows_host("1234567-sb1.suitetalk.api.netsuite.com")
    assert not SPEC.allows_host("netsuite.com.evil.example")


def test_values_are_made_usable() -> None:
    flattened = GOOD_KEY.replace("\n", " ")  # what a one-line password field keeps
    secrets, config = prepare_connection(SPEC, {
        "auth": "oauth2_m2m", "account_id": "1234567-sb1", "timezone": "Europe/Paris",
        "client_id": "cid", "certificate_id": "cert", "private_key": flattened})
    assert config == {"auth": "oauth2_m2m", "account_id": "1234567_SB1",
                      "timezone": "Europe/Paris", "certificate_id": "cert"}
    assert secrets == {"client_id": "cid", "private_key": GOOD_KEY}


@pytest.mark.parametrize(("change", "field"), [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"private_key": "not a key"}, "private_key"),
    ({"account_id": "12 34"}, "account_id"),
])
def test_refused_values_name_their_field(change: dict[str, str], field: str) -> None:
    values = {"auth": "oauth2_m2m", "account_id": "1234567", "timezone": "UTC",
              "client_id": "cid", "certificate_id": "cert", "private_key": GOOD_KEY, **change}
    with pytest.raises(SetupValueError) as refused:
        prepare_connection(SPEC, values)
    assert refused.value.field == field


@pytest.mark.parametrize(("message", "field"), [
    ("NetSuite refused the login: INVALID_LOGIN (signature_invalid)", "token_secret"),
    ("NetSuite refused the login: INVALID_LOGIN (consumer_key_unknown)", "consumer_key"),
    ("NetSuite refused the login: invalid_grant", "private_key"),
    ("NetSuite refused the login: INVALID_LOGIN (timestamp_refused)", None),
])
def test_error_hints_follow_the_checks_words(message: str, field: str | None) -> None:
    hint = SPEC.hint_for(message)
    assert hint is not None and hint.field == field
