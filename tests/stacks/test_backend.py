"""The bootstrap record, and the choice between it and a backend the user chose already."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fermion.environments.errors import FermionError
from fermion.stacks.backend import (
    StateBackend,
    backend_file,
    choose_backend,
    load_backend,
    save_backend,
)

RECORD = StateBackend(
    environment="dev",
    account="123456789012",
    region="us-west-2",
    bucket="fermion-state-123456789012-us-west-2",
    kms_key_id="1234abcd-12ab-34cd-56ef-1234567890ab",
    kms_alias="alias/fermion-state-us-west-2",
)


def test_urls_name_the_region() -> None:
    assert RECORD.url == "s3://fermion-state-123456789012-us-west-2?region=us-west-2"
    assert RECORD.secrets_provider == "awskms://alias/fermion-state-us-west-2?region=us-west-2"


def test_save_then_load_keeps_other_environments(tmp_path: Path) -> None:
    other = StateBackend("prod", "210987654321", "us-east-1", "b", "k", "alias/a")
    save_backend(RECORD, tmp_path)
    save_backend(other, tmp_path)
    assert load_backend("dev", tmp_path) == RECORD
    assert load_backend("prod", tmp_path) == other
    assert load_backend("stage", tmp_path) is None
    stored = json.loads(backend_file(tmp_path).read_text())
    assert set(stored["environments"]) == {"dev", "prod"}


def test_no_record_is_none(tmp_path: Path) -> None:
    assert load_backend("dev", tmp_path) is None


@pytest.mark.parametrize("text", ["{", "[]", '{"environments": {"dev": {"bucket": 1}}}'])
def test_a_bad_record_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    path = backend_file(tmp_path)
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(FermionError, match="fermion bootstrap ENV") as caught:
        load_backend("dev", tmp_path)
    assert str(path) in str(caught.value)


def _login(home: Path, current: str | None) -> None:
    (home / ".pulumi").mkdir()
    data = {"accessTokens": {}} if current is None else {"current": current}
    (home / ".pulumi" / "credentials.json").write_text(json.dumps(data))


def test_the_record_is_used_when_nothing_else_was_chosen(tmp_path: Path) -> None:
    save_backend(RECORD, tmp_path)
    choice = choose_backend("dev", tmp_path, environ={}, home=tmp_path)
    assert choice.source == "fermion bootstrap"
    assert choice.url == RECORD.url
    assert choice.secrets_provider == RECORD.secrets_provider
    assert choice.env_vars() == {"PULUMI_BACKEND_URL": RECORD.url}


def test_pulumi_backend_url_wins(tmp_path: Path) -> None:
    save_backend(RECORD, tmp_path)
    _login(tmp_path, "https://api.pulumi.com")
    choice = choose_backend("dev", tmp_path, environ={"PULUMI_BACKEND_URL": "file:///x"})
    assert (choice.source, choice.url, choice.secrets_provider) == (
        "PULUMI_BACKEND_URL",
        "file:///x",
        None,
    )
    assert choice.record == RECORD


def test_pulumi_login_wins_over_the_record(tmp_path: Path) -> None:
    save_backend(RECORD, tmp_path)
    _login(tmp_path, "https://api.pulumi.com")
    choice = choose_backend("dev", tmp_path, environ={}, home=tmp_path)
    assert (choice.source, choice.url) == ("pulumi login", "https://api.pulumi.com")


def test_pulumi_home_moves_the_credentials(tmp_path: Path) -> None:
    _login(tmp_path, "s3://theirs")
    choice = choose_backend(
        "dev", tmp_path, environ={"PULUMI_HOME": str(tmp_path / ".pulumi")}, home=tmp_path / "x"
    )
    assert choice.url == "s3://theirs"


def test_a_credentials_file_without_current_is_not_a_login(tmp_path: Path) -> None:
    _login(tmp_path, None)
    choice = choose_backend("dev", tmp_path, environ={}, home=tmp_path)
    assert choice.source == "none"
    assert choice.url is None
    assert "fermion bootstrap" in choice.describe()
