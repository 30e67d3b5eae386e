"""Settings: allowed lists parsed when they load, token names and secrets distinct, and no
settings error, however it is printed, ever shows a token."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from app.config import ApiToken, Settings
from app.domain.principals import account

SECRET = "secret-value-123456"
ORG = "arn:aws:organizations::111111111111:organization/o-abcdefghij"


@pytest.fixture(autouse=True)
def _no_amishare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AMISHARE_"):
            monkeypatch.delenv(name)


def token(**fields: object) -> dict[str, object]:
    return {"name": "ci", "token": SECRET, "scopes": ["jobs:read"], **fields}


class TestAllowedLists:
    def test_unset_allows_any_destination_and_source(self) -> None:
        settings = Settings()

        assert not settings.allowed_destinations.restricted
        assert not settings.allowed_sources.restricted

    @pytest.mark.parametrize(
        "value", ["222222222222, 3333*", '["222222222222", "3333*"]', " 222222222222,3333*, "]
    )
    def test_a_comma_list_or_a_json_list_is_read(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("AMISHARE_ALLOWED_DESTINATIONS", value)
        monkeypatch.setenv("AMISHARE_ALLOWED_SOURCES", value)

        settings = Settings()

        assert settings.allowed_destinations.texts == ["222222222222", "3333*"]
        assert settings.allowed_sources.texts == ["222222222222", "3333*"]
        assert settings.allowed_destinations.allows(account("333344445555"))
        assert settings.allowed_sources.allows("222222222222")

    @pytest.mark.parametrize(
        "entry",
        ["arn:aws:organizations::111111111111:*", "*", "2222?2222222", "[23]*", "22*2"],
    )
    def test_a_wildcard_entry_is_a_settings_error_naming_it(
        self, monkeypatch: pytest.MonkeyPatch, entry: str
    ) -> None:
        monkeypatch.setenv("AMISHARE_ALLOWED_DESTINATIONS", f"222222222222,{entry}")

        with pytest.raises(ValidationError) as raised:
            Settings()

        assert "allowed_destinations" in str(raised.value)
        assert repr(entry) in str(raised.value)

    def test_a_source_entry_must_be_an_account(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AMISHARE_ALLOWED_SOURCES", ORG)

        with pytest.raises(ValidationError, match="allowed_sources"):
            Settings()

    def test_a_list_of_other_things_than_strings_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="allowed_destinations"):
            Settings(allowed_destinations=[222222222222])

    def test_a_broken_json_list_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AMISHARE_ALLOWED_DESTINATIONS", '["222222222222"')

        with pytest.raises(ValidationError, match="JSON"):
            Settings()


class TestTokens:
    @pytest.mark.parametrize(
        "name", ["ci", "team.ci@example.com", "a+b=c,d_e-f", "x" * 64], ids=lambda n: n[:12]
    )
    def test_a_name_sts_accepts_as_source_identity_is_accepted(self, name: str) -> None:
        assert ApiToken(name=name, token=SECRET).name == name

    @pytest.mark.parametrize(
        "name", ["x", "x" * 65, "ci bot", "ci\nbot", "ci/bot", "ci:bot", "cí", ""]
    )
    def test_any_other_name_is_refused(self, name: str) -> None:
        with pytest.raises(ValidationError, match="name"):
            ApiToken(name=name, token=SECRET)

    def test_two_tokens_with_one_name_are_refused(self) -> None:
        with pytest.raises(ValidationError, match="two tokens are named 'ci'"):
            Settings(api_tokens=[token(), token(token=SECRET + "x")])

    def test_two_tokens_with_one_secret_are_refused(self) -> None:
        digest = hashlib.sha256(SECRET.encode()).hexdigest().upper()
        for second in (token(name="other"), {"name": "other", "sha256": digest}):
            with pytest.raises(ValidationError, match="'ci' and 'other' have the same secret"):
                Settings(api_tokens=[token(), second])

    def test_a_token_carries_its_own_allowed_lists(self) -> None:
        entry = ApiToken.model_validate(
            token(sources=["123456789012"], destinations=["2222*", ORG])
        )

        assert entry.sources.texts == ["123456789012"]
        assert entry.destinations.texts == ["2222*", ORG]
        assert not ApiToken.model_validate(token()).destinations.restricted

    def test_a_bad_entry_in_a_token_list_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="destinations") as raised:
            ApiToken.model_validate(token(destinations=["arn:aws:organizations::111111111111:*"]))
        with pytest.raises(ValidationError, match="sources"):
            ApiToken.model_validate(token(sources=[ORG]))

        assert SECRET not in str(raised.value)

    def test_a_job_creators_token_is_found_by_its_name(self) -> None:
        settings = Settings(
            api_tokens=[token(destinations=["2222*"]), token(name="other", token=SECRET + "x")]
        )

        found = settings.token_named("ci")

        assert found is not None and found.destinations.texts == ["2222*"]
        assert settings.token_named("gone") is None

    def test_a_misspelt_limit_is_refused_rather_than_ignored(self) -> None:
        with pytest.raises(ValidationError, match="destination"):
            ApiToken.model_validate(token(destination=["222222222222"]))


# Each is wrong in another way, and each holds SECRET.
BAD_TOKENS = [
    pytest.param(json.dumps([token(token="short-" + SECRET[:8])]), id="too-short"),
    pytest.param(json.dumps([{"token": SECRET, "scopes": ["jobs:read"]}]), id="no-name"),
    pytest.param(json.dumps([token(scopes=["jobs:admin"])]), id="unknown-scope"),
    pytest.param(json.dumps([token(scopes="jobs:read " + SECRET)]), id="scopes-not-a-list"),
    pytest.param(json.dumps([token(name=SECRET + " x")]), id="bad-name"),
    pytest.param(json.dumps([token(), token(name="other")]), id="same-secret"),
    pytest.param(json.dumps([token(colour=SECRET)]), id="unknown-key"),
    pytest.param(json.dumps(token()), id="not-a-list"),
    pytest.param(json.dumps([token()])[:-1], id="not-json"),
]


@pytest.mark.parametrize("value", BAD_TOKENS)
def test_a_settings_error_never_shows_a_token(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    secrets = (SECRET, SECRET[:8])
    monkeypatch.setenv("AMISHARE_API_TOKENS", value)

    with pytest.raises((ValidationError, SettingsError)) as raised:
        Settings()

    error = raised.value
    shown = [str(error), repr(error)]
    for cause in (error.__cause__, error.__context__):
        if cause is not None:
            shown += [str(cause), repr(cause)]
    for text in shown:
        assert not any(secret in text for secret in secrets), text


@pytest.mark.parametrize("value", BAD_TOKENS)
def test_the_service_refuses_to_start_without_showing_a_token(tmp_path: Path, value: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AMISHARE_")}
    environment |= {
        "AMISHARE_API_TOKENS": value,
        "AMISHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
    }

    started = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )

    assert started.returncode != 0
    printed = started.stdout + started.stderr
    assert "api_tokens" in printed, printed
    assert SECRET not in printed and SECRET[:8] not in printed, printed
    assert not (tmp_path / "never.db").exists()
