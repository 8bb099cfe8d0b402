"""A deployment folder (config.yaml, accounts.yaml) and an environment pointed at the test's servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.first_contact.helpers import clean_environment, prepare_folder
from tests.support.servers import REDIS_URL


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return prepare_folder(tmp_path / "deployment")


@pytest.fixture
def deployment_env(folder: Path, prefix: str, fresh_database_url: str) -> dict[str, str]:
    return clean_environment(
        folder, REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix, DATABASE_URL=fresh_database_url
    )
