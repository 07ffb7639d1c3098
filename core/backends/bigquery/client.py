"""The BigQuery backend's connection: google-cloud-bigquery (imported here, lazily), sessions for transactions,
load jobs, table metadata, and every client error translated at this boundary.

* Credentials: Google's chain (``GOOGLE_APPLICATION_CREDENTIALS``, then application-default credentials). When
  ``BIGQUERY_EMULATOR_HOST`` is set, the client talks to that host (Google's client reads the variable itself)
  with anonymous credentials, as Google's emulator-aware clients do; ``NO_GCE_CHECK`` keeps google-auth from
  probing a metadata server.
* Values are bound as query parameters (``?``, positional); a ``None`` is written as the literal ``NULL``, because
  an untyped NULL parameter would be a NULL ``STRING`` that BigQuery refuses in a ``TIMESTAMP`` or ``INT64``
  column.
* A transaction is a session: ``BEGIN TRANSACTION`` opens a session, every statement until ``COMMIT
  TRANSACTION`` runs in it (BigQuery runs multi-statement transactions over several queries of one session), and
  any failure sends ``ROLLBACK TRANSACTION``. Reads inside see the transaction's own writes.
* Errors: unreachable host, credentials refused or missing → :class:`~core.errors.DestinationError` (exit 4);
  a missing dataset or table → :class:`NotFoundError`; anything else → :class:`~core.errors.LoadError` with
  BigQuery's reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

from core.backends.bigquery.config import BigQueryConfig
from core.backends.sqlengine.params import _tokens
from core.errors import ConfigError, DestinationError, LoadError

log = logging.getLogger(__name__)

EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"


class NotFoundError(LoadError):
    """A dataset, table or connection that does not exist (BigQuery's 404)."""


def bind_nulls(sql: str, params: Sequence[Any]) -> tuple[str, list[Any]]:
    """``?`` placeholders whose value is ``None`` become the literal ``NULL`` (an untyped NULL, which BigQuery
    coerces to the column's type); the other values stay bound, in order."""
    if all(value is not None for value in params):
        return sql, list(params)
    out, kept, index = [], [], 0
    for char, quoted in _tokens(sql):
        if char == "?" and not quoted:
            value = params[index]
            index += 1
            if value is None:
                out.append("NULL")
                continue
            kept.append(value)
        out.append(char)
    if index != len(params):
        raise ValueError(f"{len(params)} parameters for {index} placeholders")
    return "".join(out), kept


def query_parameter(value: Any) -> Any:
    """A positional ``ScalarQueryParameter`` of the BigQuery type of ``value``."""
    from google.cloud import bigquery

    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, Decimal):
        kind = "BIGNUMERIC"
    elif isinstance(value, datetime):
        kind, value = "TIMESTAMP", value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        kind = "DATE"
    elif isinstance(value, bytes):
        kind = "BYTES"
    else:
        kind, value = "STRING", str(value)
    return bigquery.ScalarQueryParameter(None, kind, value)


class BigQueryClient:
    """One ``google.cloud.bigquery.Client``; :meth:`transaction` runs the statements in between in one session."""

    #: seconds the client keeps retrying a request that failed transiently (refused, 5xx) before giving up
    retry_deadline: float = 120.0

    def __init__(self, config: BigQueryConfig) -> None:
        self.config = config
        self._client: Any = None
        #: the session of the open transaction (None outside one)
        self.session_id: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def project(self) -> str:
        if not self.config.project_id:
            raise ConfigError(
                "BigQuery needs a project: set project_id in [database.bigquery] "
                "(or OPEN_FINOPS_DATABASE_BIGQUERY_PROJECT_ID, or --database-config project_id=…).",
            )
        return self.config.project_id

    def emulated(self) -> bool:
        """``BIGQUERY_EMULATOR_HOST`` is set: an emulator, which takes anonymous credentials."""
        return bool(os.environ.get(EMULATOR_HOST))

    def connect(self) -> None:
        if self._client is not None:
            return
        project = self.project
        from google.api_core.client_options import ClientOptions
        from google.auth import exceptions as auth_errors
        from google.cloud import bigquery

        options = ClientOptions(api_endpoint=self.config.api_endpoint) if self.config.api_endpoint else None
        try:
            if self.emulated():
                from google.auth.credentials import AnonymousCredentials

                credentials: Any = AnonymousCredentials()
            else:
                import google.auth

                credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except auth_errors.GoogleAuthError as exc:
            raise DestinationError(
                f"No Google credentials for BigQuery: {_first_line(exc)}",
                hint="Set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run "
                "`gcloud auth application-default login`.",
            ) from None
        self._client = bigquery.Client(project=project, credentials=credentials, location=self.config.location,
                                       client_options=options)

    @property
    def client(self) -> Any:
        self.connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with suppress(Exception):
                self._client.close()
            self._client = None
            self.session_id = None

    # -- statements -----------------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = (), *, what: str, create_session: bool = False) -> Any:
        """Run one statement (``?`` placeholders) and wait for it: the finished ``QueryJob``."""
        from google.cloud import bigquery

        sql, values = bind_nulls(sql, params)
        config = bigquery.QueryJobConfig(query_parameters=[query_parameter(v) for v in values])
        if create_session:
            config.create_session = True
        elif self.session_id:
            config.connection_properties = [bigquery.ConnectionProperty("session_id", self.session_id)]
        with self.translated(what):
            # job_retry=None here: the client would wrap the insert in its own 600 s retry; a job that fails
            # retriably is still started again by result() below, within retry_deadline
            job = self.client.query(sql, job_config=config, retry=self.retry(), job_retry=None)
            job.result(retry=self.retry(), job_retry=self.job_retry())
            return job

    def run(self, sql: str, params: Sequence[Any] = (), *, what: str) -> tuple[list[tuple[Any, ...]], int]:
        """One statement: ``(rows, rows affected by DML or -1)``."""
        job = self.query(sql, params, what=what)
        with self.translated(what):
            rows = [tuple(row.values()) for row in job.result()] if job.statement_type == "SELECT" else []
        affected = job.num_dml_affected_rows
        return rows, -1 if affected is None else int(affected)

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        """``BEGIN TRANSACTION`` in a new session, the block's statements in that session, then ``COMMIT
        TRANSACTION`` (``ROLLBACK TRANSACTION`` on any error, or when ``commit`` is off)."""
        if self.session_id is not None:
            raise LoadError("BigQuery transactions cannot be nested.")
        job = self.query("BEGIN TRANSACTION", what="starting a transaction", create_session=True)
        info = getattr(job, "session_info", None)
        if info is None or not info.session_id:
            raise LoadError("BigQuery did not open a session for the transaction.")
        self.session_id = info.session_id
        try:
            try:
                yield
            except BaseException:
                with suppress(Exception):  # BigQuery also rolls back an open transaction when its session ends
                    self.query("ROLLBACK TRANSACTION", what="rolling back")
                raise
            self.query("COMMIT TRANSACTION" if commit else "ROLLBACK TRANSACTION", what="committing")
        finally:
            self.session_id = None

    def retry(self) -> Any:
        from google.cloud.bigquery import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.retry_deadline)

    def job_retry(self) -> Any:
        """A query job that failed with a retriable reason (rate limits, backend errors) is started again, within
        the same deadline."""
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

        return DEFAULT_JOB_RETRY.with_deadline(self.retry_deadline)

    # -- tables and loads (API calls, not statements) -------------------------------------------------------
    def create_table(self, table: Any, *, what: str) -> None:
        with self.translated(what):
            self.client.create_table(table, retry=self.retry())

    def get_table(self, ref: str, *, what: str) -> Any:
        with self.translated(what):
            return self.client.get_table(ref, retry=self.retry())

    def delete_table(self, ref: str, *, what: str) -> None:
        with self.translated(what):
            self.client.delete_table(ref, not_found_ok=True, retry=self.retry())

    def get_dataset(self, dataset: str, *, what: str) -> Any:
        with self.translated(what):
            return self.client.get_dataset(f"{self.project}.{dataset}", retry=self.retry())

    def list_tables(self, dataset: str, *, what: str) -> list[tuple[str, str]]:
        """(name, type: ``TABLE``, ``VIEW``, …) of every table of ``dataset`` (the tables API)."""
        with self.translated(what):
            return [(t.table_id, t.table_type) for t in
                    self.client.list_tables(f"{self.project}.{dataset}", retry=self.retry())]

    def delete_dataset(self, dataset: str, *, what: str) -> None:
        with self.translated(what):
            self.client.delete_dataset(f"{self.project}.{dataset}", delete_contents=True, not_found_ok=True)

    def load_parquet(self, handle: IO[bytes], table_ref: str, *, what: str) -> None:
        """One load job appending a Parquet file to an existing table (never created by the load)."""
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        with self.translated(what):
            self.client.load_table_from_file(handle, table_ref, job_config=config, rewind=True).result()

    # -- errors ---------------------------------------------------------------------------------------------
    def endpoint(self) -> str:
        return self.config.api_endpoint or os.environ.get(EMULATOR_HOST) or "https://bigquery.googleapis.com"

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth_errors

        try:
            yield
        except (api.Unauthorized, api.Forbidden) as exc:
            raise DestinationError(f"BigQuery refused {what}: {_reason(exc)}") from None
        except api.NotFound as exc:
            raise NotFoundError(f"BigQuery error while {what}: {_reason(exc)}") from None
        except api.RetryError as exc:  # retried until retry_deadline: the last failure is the reason
            cause = exc.cause if exc.cause is not None else exc
            if isinstance(cause, OSError):
                raise DestinationError(f"Cannot reach BigQuery at {self.endpoint()} while {what}: "
                                       f"{_socket_reason(cause)}") from None
            raise DestinationError(f"BigQuery did not answer while {what}: {_reason(cause)}") from None
        except (api.ServiceUnavailable, auth_errors.TransportError, auth_errors.RefreshError) as exc:
            raise DestinationError(f"Lost the connection to BigQuery while {what}: {_reason(exc)}") from None
        except api.GoogleAPICallError as exc:
            raise LoadError(f"BigQuery error while {what}: {_reason(exc)}") from exc
        except OSError as exc:  # requests' ConnectionError (refused, DNS, TLS) is an OSError
            raise DestinationError(f"Cannot reach BigQuery at {self.endpoint()} while {what}: "
                                   f"{_socket_reason(exc)}") from None
        except auth_errors.GoogleAuthError as exc:
            raise DestinationError(f"BigQuery refused the credentials while {what}: {_first_line(exc)}") from None


def _socket_reason(exc: BaseException) -> str:
    """``[Errno 111] Connection refused`` out of requests' nested wrapper text, else its first line."""
    import re

    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group(0) if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: Any) -> str:
    """BigQuery's own message (the first error's), not the client's wrapper with the request URL."""
    errors = getattr(exc, "errors", None) or []
    message = errors[0].get("message") if errors and isinstance(errors[0], dict) else None
    return _first_line(Exception(message)) if message else _first_line(Exception(getattr(exc, "message", exc)))
