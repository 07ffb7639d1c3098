"""``[database.sql]`` settings: any dlt destination reachable through a SQLAlchemy URL.

Kept apart from :mod:`core.backends.sql` so that ``core.config`` imports no backend code. The URL may carry a
password, so it is a secret: masked by ``finops config show`` and by :meth:`GenericSQLConfig.describe`.
"""

from __future__ import annotations

import re
import warnings

from pydantic import Field, SecretStr, field_validator

from core.backends.base import BackendConfig, dataset_name

# greedy up to the last "@": an unencoded "@" or "/" inside a password must not leak its tail (over-masking is safe)
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):.*@(?=[^@]*$)")
_QUERY_SECRET = re.compile(r"(?P<key>[?&;](?:password|pwd|passwd|secret|token|access_token)=)[^&;]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with any password (in the authority or the query string) replaced by ``***``."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('key')}***", masked)


# ``schema`` is the contract's key name; pydantic warns that it shadows BaseModel.schema(), which we never call.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class GenericSQLConfig(BackendConfig):
        """``[database.sql]``"""

        destination: str = Field(
            "sqlalchemy", description="dlt destination that loads the data: sqlalchemy (default) or any dlt name."
        )
        credentials: SecretStr | None = Field(
            None,
            description="SQLAlchemy URL, e.g. sqlite:////abs/path/finops.db or mysql+pymysql://user:pw@host/db "
            "(also OPEN_FINOPS_DATABASE_SQL_CREDENTIALS).",
        )
        schema: str | None = Field(
            None, description="Schema for the export tables (default: [aws] dataset_name); an attached file on SQLite."
        )

        _schema = field_validator("schema")(lambda cls, value: dataset_name(value))

        def url(self) -> str | None:
            return self.credentials.get_secret_value() if self.credentials else None

        def describe(self) -> str:
            url = self.url()
            return mask_url(url) if url else f"{self.destination} (no credentials set)"
