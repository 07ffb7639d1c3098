"""DuckDB's S3 secret follows the credentials boto3 holds: renewed when they change, left alone when not."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from core.backends.duckdb import DuckDBConfig
from core.backends.duckdb.backend import DuckDBBackend
from core.storage import S3ConnectionInfo


class _Store:
    """The one method the engine asks an S3 store for; boto3 would refresh what it returns."""

    scheme = "s3"

    def __init__(self) -> None:
        self.key = "AKIAFIRST"

    def connection_info(self) -> S3ConnectionInfo:
        return S3ConnectionInfo(region="us-east-1", access_key_id=self.key, secret_access_key=SecretStr("s"),
                                session_token=SecretStr("t"), endpoint_url="http://127.0.0.1:9")


def _key_ids(backend: DuckDBBackend) -> list[str]:
    rows = backend.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = 'finops_s3'").rows
    return [part.split("=", 1)[1] for (text,) in rows for part in text.split(";") if part.startswith("key_id=")]


def test_the_secret_is_renewed_when_the_credentials_change(tmp_path: Path) -> None:
    backend, store = DuckDBBackend(DuckDBConfig(database_path=tmp_path / "f.duckdb")), _Store()
    with backend:
        backend.enable_s3(store)  # type: ignore[arg-type]
        assert _key_ids(backend) == ["AKIAFIRST"]
        created = backend.execute("SELECT COUNT(*) FROM duckdb_secrets()").rows
        backend.enable_s3(store)  # type: ignore[arg-type]  # unchanged: nothing to do
        assert _key_ids(backend) == ["AKIAFIRST"] and backend.execute(
            "SELECT COUNT(*) FROM duckdb_secrets()").rows == created
        store.key = "AKIASECOND"  # the session credentials were refreshed by boto3
        backend.enable_s3(store)  # type: ignore[arg-type]
        assert _key_ids(backend) == ["AKIASECOND"]
