"""``[database.bigquery]`` settings, apart from the client so that ``core.config`` imports no backend code.

There is no secret here: credentials come from Google's own chain (``GOOGLE_APPLICATION_CREDENTIALS``, then
application-default credentials), and ``BIGQUERY_EMULATOR_HOST`` is honoured as Google's client honours it.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from core.backends.base import BackendConfig

#: a BigQuery location (``US``, ``EU``, ``europe-west1``, ``aws-us-east-1``): rendered into DDL as a literal
_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
#: ``connection_id``, ``location.connection_id`` or ``project.location.connection_id``
_CONNECTION = re.compile(r"^(?:[a-z][a-z0-9-]{4,61}[a-z0-9]\.)?(?:[A-Za-z][A-Za-z0-9-]*\.)?[A-Za-z0-9_-]{1,1024}$")


class BigQueryConfig(BackendConfig):
    """``[database.bigquery]``"""

    project_id: str | None = Field(None, description="Google Cloud project that holds the datasets (required).")
    dataset: str | None = Field(None, description="Dataset of the export tables (default: [aws] dataset_name).")
    location: str = Field("US", description="Location of the datasets (US, EU, europe-west1, aws-us-east-1, …).")
    aws_connection: str | None = Field(
        None, description="BigQuery Omni connection to AWS ([project.]location.connection_id): BigQuery reads the "
        "manifest's files from S3 itself with LOAD DATA; unset: the files are streamed through this machine.",
    )
    staging_dataset: str | None = Field(
        None, description="Dataset of the short-lived staging tables (default: <dataset>_finops_staging).",
    )
    api_endpoint: str | None = Field(
        None, description="BigQuery API endpoint (default: Google's, or BIGQUERY_EMULATOR_HOST when set).",
    )

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if not _LOCATION.match(value or ""):
            raise ValueError(f"{value!r} is not a BigQuery location (e.g. US, EU, europe-west1)")
        return value

    @field_validator("aws_connection")
    @classmethod
    def _connection(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _CONNECTION.match(value):
            raise ValueError(f"{value!r} is not a BigQuery connection ([project.]location.connection_id)")
        return value

    def staging(self, dataset: str) -> str:
        return self.staging_dataset or f"{dataset}_finops_staging"

    def describe(self) -> str:
        return f"bigquery://{self.project_id or '(no project_id)'}/{self.dataset or ''}".rstrip("/")
