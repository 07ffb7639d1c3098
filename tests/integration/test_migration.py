"""Switching backends on one config file, and ``finops db copy`` between real databases."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import closed_port, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import DuckDBTarget, PostgreSQLTarget, SQLiteTarget


@pytest.fixture()
def exports(s3: S3, tmp_path: Path, gen: Any) -> dict[str, Any]:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    v1 = gen.write_cur1_export(root, prefix="cur", export_name="legacy-cur", periods=["2024-01", "2024-02"],
                               rows_per_period=200, parts=2, seed=3)
    v2 = gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily", periods=["2024-01", "2024-02"],
                               rows_per_period=250, seed=4)
    s3.upload_tree(root, bucket)
    return {"bucket": bucket, "legacy_cur": v1, "cur2_daily": v2}


def _config(tmp_path: Path, duck: DuckDBTarget, pg: PostgreSQLTarget, bucket: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[project]\ndata_dir = "{tmp_path / "work"}"\n'
        f'[database]\nbackend = "duckdb"\n'
        f'[database.duckdb]\ndatabase_path = "{duck.path}"\n'
        f'[database.postgresql]\nhost = "{pg.server.host}"\nport = {pg.server.port}\n'
        f'database = "{pg.server.database}"\nuser = "{pg.server.user}"\nschema = "{pg.dataset}"\n'
        f'[aws]\nbucket = "{bucket}"\n'
    )
    return path


def _same(a: dict[str, tuple[int, float]], b: dict[str, tuple[int, float]]) -> bool:
    """Same periods, same row counts, cost sums equal to float precision."""
    return a.keys() == b.keys() and all(
        a[p][0] == b[p][0] and a[p][1] == pytest.approx(b[p][1], rel=1e-12, abs=1e-9) for p in a)


def _state(target: Any, dataset_table: str) -> list[tuple[Any, ...]]:
    return sorted(target.query(
        f"SELECT export_name, billing_period, version_id, status, row_count, file_count, is_current FROM {dataset_table} "
        "ORDER BY 1, 2, 3"))


@pytest.mark.postgresql
def test_switching_backends_by_flag_env_and_file(s3: S3, tmp_path: Path, exports: dict[str, Any],
                                                 pg_server: Any, pg_schema: str) -> None:
    duck = DuckDBTarget(tmp_path)
    pg = PostgreSQLTarget(pg_server, pg_schema, tmp_path / "work")
    config = _config(tmp_path, duck, pg, exports["bucket"])
    env = {**s3.env(), "POSTGRESQL_PASSWORD": pg_server.password}

    shown = {s["key"]: s for s in run_cli("config", "show", "--config", str(config), "--json", env=env).json()["settings"]}
    assert shown["database.backend"]["value"] == "duckdb" and shown["database.backend"]["source"] == f"file {config}"

    # The flag beats the environment (and the file): the rows go to PostgreSQL, DuckDB gets nothing.
    by_flag = run_cli("aws", "import-cur", "--config", str(config), "--backend", "postgres", "--json",
                      env={**env, "OPEN_FINOPS_DATABASE_BACKEND": "duckdb"})
    assert by_flag.code == 0 and by_flag.json()["backend"] == "postgresql", by_flag.stderr
    assert by_flag.json()["summary"]["loaded"] == 4
    assert not duck.path.exists()
    for table in ("legacy_cur", "cur2_daily"):
        assert _matches_truth(pg.period_totals(table), exports[table])
    # The environment beats the file: PostgreSQL again, which already holds everything.
    by_env = run_cli("aws", "import-cur", "--config", str(config), "--json",
                     env={**env, "OPEN_FINOPS_DATABASE_BACKEND": "postgresql"})
    assert by_env.code == 0 and by_env.json()["backend"] == "postgresql"
    assert by_env.json()["summary"]["skipped"] == 4
    assert not duck.path.exists()
    # Neither: the file's DuckDB, a different database with its own state.
    by_file = run_cli("aws", "import-cur", "--config", str(config), "--json", env=env)
    assert by_file.code == 0 and by_file.json()["backend"] == "duckdb", by_file.stderr
    assert by_file.json()["summary"]["loaded"] == 4
    flag_beats_env = run_cli("aws", "list-exports", "--config", str(config), "--backend", "duckdb", "--json",
                             env={**env, "OPEN_FINOPS_DATABASE_BACKEND": "postgresql"})
    assert flag_beats_env.code == 0 and {e["dataset"] for e in flag_beats_env.json()["exports"]} == {"aws_billing"}
    for table in ("legacy_cur", "cur2_daily"):
        assert _same(duck.period_totals(table), pg.period_totals(table))
        assert _matches_truth(duck.period_totals(table), exports[table])


def _matches_truth(totals: dict[str, tuple[int, float]], truth: Any) -> bool:
    """Rows and cost sums per period equal to what the generator wrote (its exact Decimal sums)."""
    return totals.keys() == truth.periods.keys() and all(
        totals[p][0] == t.rows and Decimal(str(totals[p][1])) == pytest.approx(t.unblended_cost, abs=Decimal("1e-6"))
        for p, t in truth.periods.items())


@pytest.mark.postgresql
def test_copy_duckdb_to_postgresql_round_trip(s3: S3, tmp_path: Path, exports: dict[str, Any],
                                              pg_server: Any, pg_schema: str) -> None:
    duck = DuckDBTarget(tmp_path)
    pg = PostgreSQLTarget(pg_server, pg_schema, tmp_path / "work")
    config = _config(tmp_path, duck, pg, exports["bucket"])
    env = {**s3.env(), "POSTGRESQL_PASSWORD": pg_server.password}
    assert run_cli("aws", "import-cur", "--config", str(config), env=env).code == 0

    copy = run_cli("db", "copy", "--from", "duckdb", "--to", "postgresql", "--config", str(config), "--json", env=env)
    assert copy.code == 0, copy.stderr
    report = copy.json()
    assert report["copied"] == 4 and report["failed"] == 0
    for table in ("legacy_cur", "cur2_daily"):
        assert _same(pg.period_totals(table), duck.period_totals(table))
        assert _matches_truth(pg.period_totals(table), exports[table])  # the generator's truth, not only DuckDB's
    assert _state(pg, f'"{pg.dataset}"._finops_load_state') == _state(duck, "aws_billing._finops_load_state")
    duck_types, pg_types = duck.column_types("cur2_daily"), pg.column_types("cur2_daily")
    assert set(duck_types) == set(pg_types)
    assert pg_types["resource_tags"] == "jsonb" and pg_types["line_item_usage_start_date"].startswith("timestamp")
    assert pg.query(f'SELECT COUNT(*) FROM {pg.table("cur2_daily")} WHERE jsonb_exists(resource_tags, ?)', ("user_team",))[0][0] \
        == duck.query("SELECT COUNT(*) FROM aws_billing.cur2_daily WHERE json_exists(resource_tags, '$.user_team')")[0][0]

    # And back out of PostgreSQL into a new DuckDB file, chosen with --to-config.
    back = tmp_path / "back.duckdb"
    out = run_cli("db", "copy", "--from", "postgresql", "--to", "duckdb", "--to-config", f"database_path={back}",
                  "--config", str(config), "--json", env=env)
    assert out.code == 0 and out.json()["copied"] == 4, out.stdout + out.stderr
    returned = DuckDBTarget(tmp_path)
    returned.path = back
    for table in ("legacy_cur", "cur2_daily"):
        assert _same(returned.period_totals(table), duck.period_totals(table))
        assert _matches_truth(returned.period_totals(table), exports[table])
    assert returned.column_types("cur2_daily") == duck.column_types("cur2_daily")
    typo = run_cli("db", "copy", "--from", "postgresql", "--to", "duckdb", "--to-config", "databse_path=x",
                   "--config", str(config), "--json", env=env)
    assert typo.code == 2 and "databse_path" in typo.json()["error"]["message"]

    # The PostgreSQL copy now answers the same questions: an import there finds nothing to do.
    again = run_cli("aws", "import-cur", "--config", str(config), "--backend", "postgresql", "--json", env=env)
    assert again.code == 0 and again.json()["summary"]["skipped"] == 4

    # Resumable: a copy interrupted after some periods picks up the rest; what is there is skipped.
    conn = pg_server.connect()
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DELETE FROM {pg.table("cur2_daily")} WHERE billing_period = %s', ("2024-02",))
        cursor.execute(f'UPDATE "{pg.dataset}"._finops_load_state SET status = %s WHERE export_name = %s '
                       "AND billing_period = %s", ("running", "cur2-daily", "2024-02"))
    conn.close()
    resumed = run_cli("db", "copy", "--from", "duckdb", "--to", "postgresql", "--config", str(config), "--json",
                      env=env).json()
    assert sorted((p["table"], p["billing_period"], p["status"]) for p in resumed["periods"]) == [
        ("cur2_daily", "2024-01", "skipped"), ("cur2_daily", "2024-02", "copied"),
        ("legacy_cur", "2024-01", "skipped"), ("legacy_cur", "2024-02", "skipped")]
    assert _same(pg.period_totals("cur2_daily"), duck.period_totals("cur2_daily"))
    assert _matches_truth(pg.period_totals("cur2_daily"), exports["cur2_daily"])

    # A copy whose verification fails is exit 1: the destination doubles every cost it receives (a trigger).
    conn = pg_server.connect()
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE FUNCTION "{pg.dataset}".tamper() RETURNS trigger LANGUAGE plpgsql AS '
                       "$$ BEGIN NEW.line_item_unblended_cost := NEW.line_item_unblended_cost * 2; RETURN NEW; END $$")
        cursor.execute(f'CREATE TRIGGER tamper BEFORE INSERT ON {pg.table("legacy_cur")} FOR EACH ROW '
                       f'EXECUTE FUNCTION "{pg.dataset}".tamper()')
        cursor.execute(f'UPDATE "{pg.dataset}"._finops_load_state SET status = %s WHERE export_name = %s '
                       "AND billing_period = %s", ("running", "legacy-cur", "2024-01"))
    conn.close()
    tampered = run_cli("db", "copy", "--from", "duckdb", "--to", "postgresql", "--config", str(config), "--json",
                       env=env)
    assert tampered.code == 1, tampered.stdout + tampered.stderr
    failed = [p for p in tampered.json()["periods"] if p["status"] == "failed"]
    assert [(p["table"], p["billing_period"]) for p in failed] == [("legacy_cur", "2024-01")]
    assert "verification failed" in failed[0]["error"] and "verification failed" in tampered.stderr
    assert tampered.json()["failed"] == 1

    # An unreachable destination is exit 4, naming where it tried.
    port = closed_port()
    unreachable = run_cli("db", "copy", "--from", "duckdb", "--to", "postgresql", "--to-config", f"port={port}",
                          "--config", str(config), "--json", env=env)
    assert unreachable.code == 4, unreachable.stdout + unreachable.stderr
    assert unreachable.json()["exit_code"] == 4 and str(port) in unreachable.json()["error"]["message"]
    assert "Traceback" not in unreachable.stderr


@pytest.mark.sql
def test_copy_one_export_duckdb_to_sqlite(s3: S3, tmp_path: Path, exports: dict[str, Any]) -> None:
    duck, lite = DuckDBTarget(tmp_path), SQLiteTarget(tmp_path)
    env = {**s3.env(), **duck.env(), "OPEN_FINOPS_AWS_BUCKET": exports["bucket"],
           "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{lite.path}"}
    assert run_cli("aws", "import-cur", env=env).code == 0
    copy = run_cli("db", "copy", "--from", "duckdb", "--to", "sql", "--export-name", "cur2-daily", "--json", env=env)
    assert copy.code == 0, copy.stderr
    assert {p["table"] for p in copy.json()["periods"]} == {"cur2_daily"}
    assert _same(lite.period_totals("cur2_daily"), duck.period_totals("cur2_daily"))
    back = run_cli("db", "copy", "--from", "sql", "--to", "duckdb", "--json",
                   env={**env, "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH": str(tmp_path / "back.duckdb")})
    assert back.code == 0, back.stderr
    import duckdb

    conn = duckdb.connect(str(tmp_path / "back.duckdb"), read_only=True)
    totals = dict((p, (n, c)) for p, n, c in conn.execute(
        "SELECT billing_period, COUNT(*), SUM(line_item_unblended_cost) FROM aws_billing.cur2_daily GROUP BY 1"
    ).fetchall())
    conn.close()
    assert _same(totals, duck.period_totals("cur2_daily"))
    missing = run_cli("db", "copy", "--from", "duckdb", "--to", "sql", "--export-name", "nope", env=env)
    assert missing.code == 2 and "nope" in missing.stderr
    same = run_cli("db", "copy", "--from", "duckdb", "--to", "duckdb", env=env)
    assert same.code == 2 and "same" in same.stderr.lower(), same.stderr
    typo = tmp_path / "typo.duckdb"  # a source path that does not exist is an error, never a new empty database
    absent = run_cli("db", "copy", "--from", "duckdb", "--to", "sql", "--from-config", f"database_path={typo}", env=env)
    assert absent.code == 2 and "does not exist" in absent.stderr and not typo.exists()


@pytest.mark.postgresql
def test_backends_check_reports_and_fails_with_exit_4(pg_server: Any, pg_schema: str, tmp_path: Path) -> None:
    pg = PostgreSQLTarget(pg_server, pg_schema, tmp_path / "work")
    ok = run_cli("backends", "check", "--json", env=pg.env())
    assert ok.code == 0, ok.stderr
    report = ok.json()
    assert report["ok"] is True and report["backend"] == "postgresql" and report["error"] is None
    assert isinstance(report["latency_ms"], float) and 0 < report["latency_ms"] < 30_000  # a measured round trip
    assert f"{pg_server.host}:{pg_server.port}" in report["target"] and pg.dataset not in str(report.get("error"))
    assert report["details"]["can_create_table"] is True and report["details"]["user"] == pg_server.user
    port = closed_port()
    closed = run_cli("backends", "check", "-D", f"port={port}", env=pg.env())
    assert closed.code == 4 and "Traceback" not in closed.stderr and str(port) in closed.stderr, closed.stderr
    wrong = run_cli("backends", "check", "--json",
                    env={**pg.env(), "OPEN_FINOPS_DATABASE_POSTGRESQL_USER": pg_server.secure_user,
                         "POSTGRESQL_PASSWORD": "not-the-password"})
    assert wrong.code == 4 and not wrong.json()["ok"] and "not-the-password" not in wrong.stdout + wrong.stderr
    duck = run_cli("backends", "check", "--backend", "duckdb", "-D", f"database_path={tmp_path / 'c.duckdb'}", "--json")
    assert duck.code == 0 and duck.json()["details"]["can_create_table"]
