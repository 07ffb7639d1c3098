"""``[database.postgresql]`` settings, apart from the client so that ``core.config`` imports no backend code.

The password is read only from ``POSTGRESQL_PASSWORD`` (``env_only_names``: no ``OPEN_FINOPS_…`` name, and a
``password`` key in config.toml is refused with a warning).
"""

from __future__ import annotations

import warnings

from pydantic import Field, SecretStr, field_validator

from core.backends.base import BackendConfig, dataset_name

# ``schema`` is the contract's key name; pydantic warns that it shadows BaseModel.schema(), which we never call.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class PostgreSQLConfig(BackendConfig):
        """``[database.postgresql]``"""

        host: str = Field("localhost", description="Server host name or address.")
        port: int = Field(5432, ge=1, le=65535, description="Server port.")
        database: str = Field("finops", description="Database to connect to.")
        schema: str | None = Field(None, description="Schema for the export tables (default: [aws] dataset_name).")

        _schema = field_validator("schema")(lambda cls, value: dataset_name(value))
        user: str = Field("finops", description="Role to log in as.")
        sslmode: str = Field(
            "prefer", description="libpq sslmode: disable, allow, prefer, require, verify-ca, verify-full."
        )
        password: SecretStr | None = Field(
            None, description="Read only from POSTGRESQL_PASSWORD.",
            json_schema_extra={"env": ["POSTGRESQL_PASSWORD"], "env_only_names": True},
        )

        def describe(self) -> str:
            return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"
