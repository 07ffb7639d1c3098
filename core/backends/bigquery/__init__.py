"""Google BigQuery. ``BigQueryBackend`` is imported on first use (:mod:`core.backends.lazy`)."""

from core.backends.bigquery.config import BigQueryConfig
from core.backends.lazy import lazy_exports

__all__ = ["BigQueryBackend", "BigQueryConfig"]
__getattr__ = lazy_exports("core.backends.bigquery.backend", "BigQueryBackend")
