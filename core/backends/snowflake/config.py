"""``[database.snowflake]`` settings, apart from the client so that ``core.config`` imports no backend code.

Secrets come only from the environment (``env_only_names``: no ``OPEN_FINOPS_…`` name, and a key of that name in
config.toml is refused with a warning): the password from ``SNOWFLAKE_PASSWORD``, the private key's passphrase
from ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``. ``host``/``port``/``protocol`` are for private links and emulators;
unset, the connector derives the host from the account.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from core.backends.base import BackendConfig

# ``schema`` is the contract's key name; pydantic warns that it shadows BaseModel.schema(), which we never call.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class SnowflakeConfig(BackendConfig):
        """``[database.snowflake]``"""

        account: str | None = Field(None, description="Account identifier, e.g. myorg-myaccount.")
        user: str | None = Field(None, description="User to log in as.")
        role: str | None = Field(None, description="Role to use (default: the user's default role).")
        warehouse: str | None = Field(None, description="Warehouse that runs the loads.")
        database: str | None = Field(None, description="Database holding the export schema.")
        schema: str | None = Field(None, description="Schema for the export tables (default: [aws] dataset_name).")
        authenticator: str | None = Field(
            None, description="Connector authenticator: snowflake (password, the default), SNOWFLAKE_JWT "
            "(key pair, implied by private_key_path), externalbrowser, oauth, …"
        )
        private_key_path: Path | None = Field(None, description="PEM/DER private key file for key-pair auth.")
        storage_integration: str | None = Field(
            None, description="Storage integration the COPY reads S3 through (no AWS keys sent to Snowflake)."
        )
        stage: str | None = Field(
            None, description="External stage over the export bucket (its URL is the bucket root); COPY reads @stage."
        )
        native_s3: bool = Field(
            True, description="Snowflake reads S3 itself (COPY INTO); false: rows are streamed from this machine."
        )
        host: str | None = Field(None, description="Connector host (private link, emulator); default from account.")
        port: int | None = Field(None, ge=1, le=65535, description="Connector port (default 443).")
        protocol: Literal["https", "http"] | None = Field(None, description="Connector protocol (default https).")
        password: SecretStr | None = Field(
            None, description="Read only from SNOWFLAKE_PASSWORD.",
            json_schema_extra={"env": ["SNOWFLAKE_PASSWORD"], "env_only_names": True},
        )
        private_key_passphrase: SecretStr | None = Field(
            None, description="Read only from SNOWFLAKE_PRIVATE_KEY_PASSPHRASE.",
            json_schema_extra={"env": ["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"], "env_only_names": True},
        )

        def describe(self) -> str:
            where = self.host or (f"{self.account}.snowflakecomputing.com" if self.account else "?")
            port = f":{self.port}" if self.port else ""
            return f"snowflake://{self.user or '?'}@{where}{port}/{self.database or '?'}"
