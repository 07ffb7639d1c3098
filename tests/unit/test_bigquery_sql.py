"""Exact SQL (and API calls) an import sends to BigQuery, offline: the statements the emulator cannot run or cannot
show (``LOAD DATA … WITH CONNECTION``, ``ALTER TABLE`` with several columns, the session-scoped transaction seen
from outside), pinned against BigQuery's documented syntax.

:class:`FakeClient` stands in for :class:`core.backends.bigquery.client.BigQueryClient` at its boundary: every
query (``?`` placeholders as sent, after ``None`` became ``NULL``) and every API call (tables.insert, load jobs,
tables.delete) is recorded in order; answers are what BigQuery would return for a fresh dataset.
The same backend runs against bqemulator in the backend-API and CLI conformance suites (marker ``bigquery``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from core.backends.base import FilePlan, LoadRecord, PeriodLoad, SourceColumn, SourceFile
from core.backends.bigquery import BigQueryBackend, BigQueryConfig
from core.backends.bigquery.client import BigQueryClient, NotFoundError, bind_nulls, query_parameter
from core.backends.bigquery.load import OmniReader
from core.errors import LoadError
from tests.integration.backend_targets import HEADER, Loader, line, write_csv_gz
from vendors.aws.columns import column_specs

NOW = "<now>"
T = "`proj`.`ds`.`cur_test`"


def normalise(sql: str) -> str:
    return " ".join(sql.split())


@dataclass
class FakeJob:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    affected: int | None = None
    statement_type: str = "SELECT"
    session: str | None = None

    @property
    def num_dml_affected_rows(self) -> int | None:
        return self.affected

    @property
    def session_info(self) -> Any:
        return type("SessionInfo", (), {"session_id": self.session})() if self.session else None

    def result(self, **_: Any) -> list[Any]:
        return [type("Row", (), {"values": lambda self, r=r: r})() for r in self.rows]


class FakeClient(BigQueryClient):
    """Records; answers like BigQuery for a project ``proj`` in ``US``."""

    def __init__(self, config: BigQueryConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[Any, ...]] = []
        self.datasets: dict[str, str] = {}
        self.columns: dict[str, list[tuple[str, str]]] = {}
        self.staged: dict[str, int] = {}
        self.fail_on: str | None = None

    def connect(self) -> None:
        return None

    def query(self, sql: str, params: Any = (), *, what: str, create_session: bool = False) -> Any:
        sql, values = bind_nulls(normalise(sql), list(params))
        values = [NOW if isinstance(v, datetime) else v for v in values]
        self.calls.append((sql, values) if not self.session_id else ("[session] " + sql, values))
        if self.fail_on and sql.startswith(self.fail_on):
            raise LoadError(f"BigQuery error while {what}: Bad double value: not-a-number")
        if create_session:
            return FakeJob(statement_type="BEGIN_TRANSACTION", session="s-1")
        if "INFORMATION_SCHEMA.COLUMNS" in sql:
            return FakeJob(self.columns.get(values[0], []) if values else [])
        if sql.startswith(("SELECT COUNT(*) FROM `proj`.`ds_finops_staging`",
                           "SELECT COUNT(*) FROM `proj`.`ds`.`cur_test`")):  # staged, then reconciled
            return FakeJob([(sum(self.staged.values()),)])
        if sql.startswith("SELECT COUNT(*)"):
            return FakeJob([(0,)])
        if sql.startswith("INSERT INTO `proj`.`ds`.`cur_test`"):
            return FakeJob(statement_type="INSERT", affected=sum(self.staged.values()))
        if sql.startswith(("INSERT", "UPDATE", "DELETE")):
            return FakeJob(statement_type=sql.split()[0], affected=1)
        if sql.startswith("SELECT"):
            return FakeJob([])
        return FakeJob(statement_type="SCRIPT")

    def create_table(self, table: Any, *, what: str) -> None:
        partitioning = table.time_partitioning
        self.calls.append(("tables.insert", table.table_id, [(f.name, f.field_type) for f in table.schema],
                           partitioning and (partitioning.type_, partitioning.field), table.clustering_fields,
                           table.expires is not None))

    def get_dataset(self, dataset: str, *, what: str) -> Any:
        if dataset not in self.datasets:
            raise NotFoundError(f"Not found: Dataset proj:{dataset}")
        return type("Dataset", (), {"location": self.datasets[dataset]})()

    def delete_table(self, ref: str, *, what: str) -> None:
        self.calls.append(("tables.delete", ref.rsplit(".", 1)[-1].rsplit("_", 1)[0]))

    def delete_dataset(self, dataset: str, *, what: str) -> None:
        self.calls.append(("datasets.delete", dataset))

    def load_parquet(self, handle: Any, table_ref: str, *, what: str) -> None:
        handle.seek(0)
        rows = pq.read_table(io.BytesIO(handle.read())).num_rows
        self.staged[table_ref] = self.staged.get(table_ref, 0) + rows
        self.calls.append(("load job PARQUET WRITE_APPEND CREATE_NEVER", table_ref.rsplit("_", 1)[0], rows))


def make(tmp_path: Path, **settings: Any) -> BigQueryBackend:
    backend = BigQueryBackend(BigQueryConfig(project_id="proj", **settings), data_dir=tmp_path / "data")
    backend.client = FakeClient(backend.config)
    return backend


def stage(sql: str) -> str:
    """A staging table's random suffix replaced, so that the statement can be pinned."""
    import re

    return re.sub(r"_finops_stage_cur_test_[0-9a-f]{12}", "_finops_stage_cur_test_<id>", sql)


def sent(backend: BigQueryBackend) -> list[tuple[Any, ...]]:
    return [tuple(stage(v) if isinstance(v, str) else v for v in call) for call in backend.client.calls]


COLUMNS = ["billing_period", "identity_line_item_id", "line_item_usage_account_id", "line_item_unblended_cost",
           "line_item_usage_start_date", "product_product_name"]
NAMES = ", ".join(f"`{c}`" for c in COLUMNS)
STATE = "`proj`.`ds`.`_finops_load_state`"
KEY = ["aws", "cur-test", "2024-01", "v1"]
STATE_CALLS = [
    ("[session] SELECT COUNT(*) FROM " + STATE + " WHERE `vendor` = ? AND `export_name` = ? AND `billing_period` = ? "
     "AND `version_id` = ?", KEY),
    ("[session] INSERT INTO " + STATE + " (`vendor`, `export_name`, `billing_period`, `version_id`, "
     "`data_format_version`, `source_location`, `status`, `file_count`, `row_count`, `started_at`, `finished_at`, "
     "`error_message`, `is_current`, `source_row_count`, `source_sums`, `period_status`, `invoice_ids`, "
     "`quality_findings`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, NULL, NULL, NULL)",  # None is sent as the literal NULL
     [*KEY, "v1", "file://<root>", "completed", 1, 2, NOW, NOW, True, 2]),
    ("[session] UPDATE " + STATE + " SET `is_current` = CASE WHEN `version_id` = ? THEN TRUE ELSE FALSE END "
     "WHERE `vendor` = ? AND `export_name` = ? AND `billing_period` = ?", ["v1", *KEY[:3]]),
]


def replace(backend: BigQueryBackend, loader: Loader, keys: list[str], version: str = "v1") -> list[tuple[Any, ...]]:
    record = LoadRecord("aws", "cur-test", "2024-01", version, "v1", "file://<root>", file_count=len(keys),
                        started_at=datetime(2024, 2, 1))
    load = loader.period_load("2024-01", keys, record)
    backend.client.calls.clear()
    backend.replace_period(load)
    return sent(backend)


def test_first_import_through_load_jobs(tmp_path: Path) -> None:
    """Staged by a Parquet load job into a one-day table, counted there; the export table created month-partitioned
    and clustered before the transaction; DELETE, INSERT … SELECT and the state in one session's transaction."""
    backend = make(tmp_path, dataset="ds")
    loader = Loader(backend, tmp_path / "bucket", "ds")
    key = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])
    stage_t = "`proj`.`ds_finops_staging`.`_finops_stage_cur_test_<id>`"
    assert replace(backend, loader, [key]) == [
        ("CREATE SCHEMA IF NOT EXISTS `proj`.`ds_finops_staging` OPTIONS (location = 'US')", []),
        ("tables.insert", "_finops_stage_cur_test_<id>", [
            ("billing_period", "STRING"), ("identity_line_item_id", "STRING"), ("line_item_usage_account_id", "STRING"),
            ("line_item_unblended_cost", "FLOAT64"), ("line_item_usage_start_date", "TIMESTAMP"),
            ("product_product_name", "STRING")], None, None, True),
        ("load job PARQUET WRITE_APPEND CREATE_NEVER", "proj.ds_finops_staging._finops_stage_cur_test", 2),
        (f"SELECT COUNT(*) FROM {stage_t}", []),
        ("CREATE SCHEMA IF NOT EXISTS `proj`.`ds` OPTIONS (location = 'US')", []),
        (("SELECT column_name, data_type FROM `proj`.`ds`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = ? "
         "ORDER BY ordinal_position"), ["cur_test"]),
        ("tables.insert", "cur_test", [
            ("billing_period", "STRING"), ("identity_line_item_id", "STRING"), ("line_item_usage_account_id", "STRING"),
            ("line_item_unblended_cost", "FLOAT64"), ("line_item_usage_start_date", "TIMESTAMP"),
            ("product_product_name", "STRING"), ("billing_period_date", "DATE")],
         ("MONTH", "billing_period_date"), ["line_item_usage_account_id", "line_item_usage_start_date"], False),
        ("BEGIN TRANSACTION", []),
        (f"[session] DELETE FROM {T} WHERE `billing_period` = ?", ["2024-01"]),
        (f"[session] INSERT INTO {T} ({NAMES}, `billing_period_date`) SELECT {NAMES}, ? FROM {stage_t}",
         [date(2024, 1, 1)]),
        # the envelope's reconciliation: the session's transaction sees its own rows
        (f"[session] SELECT COUNT(*) FROM {T} WHERE `billing_period` = ?", ["2024-01"]),
        *STATE_CALLS,
        ("[session] COMMIT TRANSACTION", []),
        ("tables.delete", "_finops_stage_cur_test"),
    ]


def test_new_columns_are_added_by_one_alter_before_the_transaction(tmp_path: Path) -> None:
    backend = make(tmp_path, dataset="ds")
    backend.client.datasets.update({"ds": "US", "ds_finops_staging": "US"})
    backend.client.columns["cur_test"] = [(c, "STRING") for c in COLUMNS] + [("billing_period_date", "DATE")]
    loader = Loader(backend, tmp_path / "bucket", "ds")
    key = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "x", "7"]],
                       [*HEADER, "resourceTags/user:Team", "lineItem/BlendedCost"])
    calls = [c for c in replace(backend, loader, [key]) if "ALTER" in c[0] or c[0] == "BEGIN TRANSACTION"]
    assert calls == [
        (f"ALTER TABLE {T} ADD COLUMN `resource_tags_user_team` STRING, ADD COLUMN `line_item_blended_cost` FLOAT64",
         []),
        ("BEGIN TRANSACTION", []),
    ]


def test_failure_inside_the_transaction_rolls_back_and_drops_the_staging_table(tmp_path: Path) -> None:
    backend = make(tmp_path, dataset="ds")
    backend.client.datasets.update({"ds": "US", "ds_finops_staging": "US"})
    backend.client.fail_on = "INSERT INTO `proj`.`ds`.`cur_test`"
    loader = Loader(backend, tmp_path / "bucket", "ds")
    key = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    with pytest.raises(LoadError, match="Bad double value"):
        replace(backend, loader, [key])
    tail = [c[0] for c in sent(backend)][-3:]
    assert tail[0].startswith("[session] INSERT INTO `proj`.`ds`.`cur_test`")
    assert tail[1:] == ["[session] ROLLBACK TRANSACTION", "tables.delete"]
    assert not any(c[0].endswith("COMMIT TRANSACTION") for c in sent(backend))
    assert backend.client.session_id is None  # the next transaction opens a session of its own


@dataclass
class S3Like:
    """What OmniReader needs of a store: the scheme and each key's URI."""

    root: Path
    scheme: str = "s3"

    def uri(self, key: str) -> str:
        return f"s3://billing-bucket/{key}"

    def needs_literal_read(self, key: str) -> bool:
        return False


def omni_load(backend: BigQueryBackend, files: list[SourceFile]) -> PeriodLoad:
    plans = [FilePlan(f, column_specs(f, {}), (("billing_period", "2024-01"),)) for f in files]
    record = LoadRecord("aws", "cur-test", "2024-01", "v1", "v1", "s3://billing-bucket/cur", file_count=len(files))
    return PeriodLoad("ds", "cur_test", "2024-01", plans, record, OmniReader(S3Like(Path("."))))  # type: ignore[arg-type]


def test_load_data_from_s3_with_the_aws_connection(tmp_path: Path) -> None:
    """``LOAD DATA INTO`` the staging table from exactly the manifest's files through the connection (CSV by
    position, as text), then typed by the INSERT … SELECT; nothing passes through this machine."""
    backend = make(tmp_path, dataset="ds", location="aws-us-east-1", aws_connection="aws-us-east-1.s3-billing")
    assert backend.capabilities.native_schemes == frozenset({"s3"})
    backend.client.datasets.update({"ds": "aws-us-east-1", "ds_finops_staging": "aws-us-east-1"})
    backend.client.staged = {"x": 2}
    columns = tuple(SourceColumn(name, "string") for name in HEADER)
    files = [SourceFile(f"cur/2024-01/part-{i}.csv.gz", "csv", "gzip", columns) for i in (1, 2)]
    load = omni_load(backend, files)
    backend.replace_period(load)
    calls = sent(backend)
    stage_t = "`proj`.`ds_finops_staging`.`_finops_stage_cur_test_<id>`"
    assert calls[0] == (
        (f"LOAD DATA INTO {stage_t} (`c_0` STRING, `c_1` STRING, `c_2` STRING, `c_3` STRING, `c_4` STRING) FROM FILES "
        "(format = 'CSV', skip_leading_rows = 1, allow_quoted_newlines = true, "
        "uris = ['s3://billing-bucket/cur/2024-01/part-1.csv.gz', 's3://billing-bucket/cur/2024-01/part-2.csv.gz']) "
        "WITH CONNECTION `proj.aws-us-east-1.s3-billing`"), [])
    assert calls[1] == (f"SELECT COUNT(*) FROM {stage_t}", [])
    insert = next(c for c in calls if c[0].startswith("[session] INSERT INTO `proj`.`ds`.`cur_test`"))
    assert insert == (
        (f"[session] INSERT INTO {T} (`identity_line_item_id`, `line_item_usage_account_id`, "
        "`line_item_unblended_cost`, `line_item_usage_start_date`, `product_product_name`, `billing_period`, "
        "`billing_period_date`) SELECT `c_0`, `c_1`, CAST(NULLIF(TRIM(`c_2`), '') AS FLOAT64), "
        f"CAST(NULLIF(TRIM(`c_3`), '') AS TIMESTAMP), `c_4`, ?, ? FROM {stage_t}"), ["2024-01", date(2024, 1, 1)])
    assert calls[-1] == ("tables.delete", "_finops_stage_cur_test")


def test_load_data_of_parquet_keeps_its_types_and_turns_maps_into_json(tmp_path: Path) -> None:
    backend = make(tmp_path, dataset="ds", aws_connection="s3-billing")
    backend.client.datasets.update({"ds": "US", "ds_finops_staging": "US"})
    backend.client.staged = {"x": 5}
    columns = (SourceColumn("line_item_usage_account_id", "string"), SourceColumn("line_item_unblended_cost", "double"),
               SourceColumn("product", "map"))
    load = omni_load(backend, [SourceFile("cur2/data/BILLING_PERIOD=2024-01/a.snappy.parquet", "parquet", None,
                                          columns)])
    backend.replace_period(load)
    calls = sent(backend)
    stage_t = "`proj`.`ds_finops_staging`.`_finops_stage_cur_test_<id>`"
    assert calls[0] == (
        (f"LOAD DATA INTO {stage_t} FROM FILES (format = 'PARQUET', "
        "uris = ['s3://billing-bucket/cur2/data/BILLING_PERIOD=2024-01/a.snappy.parquet']) "
        "WITH CONNECTION `proj.US.s3-billing`"), [])
    insert = next(c for c in calls if c[0].startswith("[session] INSERT INTO `proj`.`ds`.`cur_test`"))
    assert insert[0] == (
        f"[session] INSERT INTO {T} (`line_item_usage_account_id`, `line_item_unblended_cost`, `product`, "
        "`billing_period`, `billing_period_date`) SELECT `line_item_usage_account_id`, `line_item_unblended_cost`, "
        "IF(`product` IS NULL, NULL, (SELECT JSON_OBJECT(ARRAY_AGG(kv.key), ARRAY_AGG(kv.value)) "
        f"FROM UNNEST(`product`.key_value) AS kv)), ?, ? FROM {stage_t}")


def test_zip_csv_goes_through_this_machine_even_with_a_connection(tmp_path: Path) -> None:
    make(tmp_path, dataset="ds", aws_connection="s3-billing")
    reader = OmniReader(S3Like(Path(".")))  # type: ignore[arg-type]
    columns = tuple(SourceColumn(name, "string") for name in HEADER)
    assert reader.native(FilePlan(SourceFile("a.csv.gz", "csv", "gzip", columns), ()))
    assert not reader.native(FilePlan(SourceFile("a.csv.zip", "csv", "zip", columns), ()))


def test_values_are_bound_and_nulls_are_literal() -> None:
    assert bind_nulls("INSERT INTO t (a, b, c) VALUES (?, ?, '?')", ["x", None]) == (
        "INSERT INTO t (a, b, c) VALUES (?, NULL, '?')", ["x"])
    kinds = [query_parameter(v).type_ for v in ("a", 1, 1.5, True, datetime(2024, 1, 1), date(2024, 1, 1))]
    assert kinds == ["STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE"]
    assert query_parameter(datetime(2024, 1, 1)).value.tzinfo is not None  # naive means UTC


def test_check_reports_a_dataset_in_another_location(tmp_path: Path) -> None:
    backend = make(tmp_path, dataset="ds", location="EU")
    backend.client.datasets["ds"] = "US"
    result = backend.check("ds")
    assert not result.ok and "is in US, not in the configured location EU" in (result.error or "")


def test_check_creates_and_drops_a_probe_dataset_when_the_dataset_is_missing(tmp_path: Path) -> None:
    backend = make(tmp_path, dataset="ds")
    result = backend.check("ds")
    assert result.ok, result.error
    assert result.details["can_create_schema"] is True and result.details["can_create_table"] is True
    calls = [c[0] for c in sent(backend)]
    assert calls[-1] == "datasets.delete" and any(c.startswith("CREATE SCHEMA IF NOT EXISTS `proj`.`_finops_check_")
                                                  for c in calls)


def test_check_reports_a_missing_aws_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make(tmp_path, dataset="ds", aws_connection="aws-us-east-1.s3-billing")
    backend.client.datasets["ds"] = "US"
    asked = []

    def get(name: str) -> Any:
        asked.append(name)
        return type("Response", (), {"status_code": 404, "json": lambda self: {}, "reason": "Not Found"})()

    monkeypatch.setattr(backend, "connection_api_get", get)
    result = backend.check("ds")
    assert not result.ok
    assert result.error == ("The BigQuery connection projects/proj/locations/aws-us-east-1/connections/s3-billing "
                            "does not exist (aws_connection).")
    assert asked == ["projects/proj/locations/aws-us-east-1/connections/s3-billing"]


def test_no_project_is_a_configuration_error(tmp_path: Path) -> None:
    from core.errors import ConfigError

    backend = BigQueryBackend(BigQueryConfig(), data_dir=tmp_path)
    with pytest.raises(ConfigError, match="project_id"):
        backend.connect()
