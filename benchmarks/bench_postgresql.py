#!/usr/bin/env python3
"""Benchmark ``finops aws import-cur --backend postgresql`` against PostgreSQL's own bulk load, ``COPY``.

One run:

1. starts a throwaway PostgreSQL server (``tests/integration/pg_server.py``: initdb + pg_ctl in a temp folder,
   as the ``postgres`` user when we are root, trust auth on 127.0.0.1, a free port; stopped and removed at the
   end), writes an N-row CUR 2.0 export (one billing period, ``--files`` Parquet files) with
   ``examples/generate_samples.py``, starts a moto S3 server as a *separate process* and uploads the export;
2. runs, each in its own subprocess:

   * **finops** - ``finops aws import-cur --backend postgresql --bucket ... --export-name ... --json`` with
     ``OPEN_FINOPS_DATABASE_POSTGRESQL_HOST/PORT/DATABASE/USER/SCHEMA`` (a fresh schema every round),
     ``POSTGRESQL_PASSWORD``, the AWS variables for moto and ``OPEN_FINOPS_PROJECT_DATA_DIR`` in a fresh temp
     folder;
   * **copy** - the baseline, this script's own ``--copy-worker`` mode: psycopg2 connects, ``CREATE TABLE`` with
     the very column names and types finops created (read from the catalog after the first finops run), then
     ``COPY t (...) FROM STDIN WITH (FORMAT csv, HEADER true)`` through ``cursor.copy_expert`` streaming a CSV
     file of the same rows, and ``COMMIT``. The CSV (map columns as JSON text) is written from the local
     Parquet files with pyarrow *before* and *outside* the timing: the baseline is the server's own bulk load,
     not a Parquet-to-CSV conversion;

   timing each (wall clock, process start to exit) and measuring the peak RSS of the *client* process tree
   (psutil poll + ``VmHWM``, the helpers of ``bench_import.py``); the PostgreSQL server's own processes are
   not descendants of the client and are not counted. A ``CHECKPOINT`` precedes every measured run so neither
   side pays for the other's dirty buffers;
3. checks that both tables hold N rows and the same ``SUM(line_item_unblended_cost)`` (relative 1e-6, and the
   generator's exact total), prints seconds / peak RSS / the finops-to-COPY time ratio and PASS or FAIL against
   the targets (ratio <= 2.0, finops peak RSS <= 2 GiB).

Rounds: finops then copy, ``--repeat`` times (default 1); best time and highest peak RSS are kept.
Exit code 0 when both targets are met and the checks pass, 1 otherwise.

    python benchmarks/bench_postgresql.py --rows 1000000 --files 4 [--repeat 1] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_import import (  # the DuckDB benchmark's helpers (this script lives next to it)
    ACCESS_KEY,
    BUCKET,
    EXPORT_NAME,
    FINOPS,
    MIB,
    PERIOD,
    PREFIX,
    REGION,
    REPO,
    SECRET_KEY,
    TARGET_RATIO,
    TARGET_RSS_MIB,
    Run,
    _summary,
    load_generator,
    measure,
    start_moto,
    stop,
    upload,
)

TABLE = "cur2_bench"  # export name in snake_case
COST = "line_item_unblended_cost"
BASELINE_SCHEMA = "copy_bench"
COPY_CHUNK = 1 << 20  # bytes per read of the CSV file in copy_expert (psycopg2's default is 8 KiB)
REL_TOL = 1e-6


# ---------------------------------------------------------------------------------------------------------------
# Baseline worker: psycopg2 + COPY FROM STDIN of a ready CSV file, nothing else
# ---------------------------------------------------------------------------------------------------------------
def copy_worker(spec_path: str) -> int:
    import psycopg2

    spec = json.loads(Path(spec_path).read_text())
    conn = psycopg2.connect(**spec["dsn"])
    with conn.cursor() as cur:
        cur.execute(spec["create"])
        with open(spec["csv"], "rb") as fh:
            cur.copy_expert(spec["copy"], fh, size=COPY_CHUNK)
        rows = cur.rowcount
    conn.commit()
    conn.close()
    print(json.dumps({"rows": rows}))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL helpers
# ---------------------------------------------------------------------------------------------------------------
def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def start_postgres():
    """The integration tests' throwaway server (needs pytest importable: the dev extra)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.integration import pg_server
    except ImportError as exc:  # pytest missing, or run from a checkout without tests/
        raise SystemExit(f"cannot import tests/integration/pg_server.py ({exc}); install the dev extra") from None
    return pg_server, pg_server.start_server()


def admin(server):
    """An autocommit superuser connection (CHECKPOINT, DROP SCHEMA, settings)."""
    import psycopg2

    conn = psycopg2.connect(host=server.host, port=server.port, user="postgres", dbname=server.database,
                            connect_timeout=10)
    conn.autocommit = True
    return conn


def sql(conn, statement: str, params=None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def table_columns(conn, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type as DDL) in column order, as finops created them (same query as PostgreSQLBackend)."""
    return sql(conn,
               "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
               "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
               [schema, table])


def totals(conn, qualified: str) -> tuple[int | None, float | None, str | None]:
    try:
        count, cost = sql(conn, f"SELECT count(*), sum({quote(COST)}) FROM {qualified}")[0]
    except Exception as exc:  # noqa: BLE001 - reported as a failed check (the connection is in autocommit)
        return None, None, str(exc).strip().splitlines()[0]
    return int(count), None if cost is None else float(cost), None


def relation_mib(conn, qualified: str) -> float | None:
    try:
        return sql(conn, "SELECT pg_total_relation_size(%s::regclass)", [qualified])[0][0] / MIB
    except Exception:  # noqa: BLE001
        return None


def drop_schemas(conn, prefix: str) -> None:
    for (schema,) in sql(conn, "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix]):
        sql(conn, f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")


_STATEMENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \S+ \[(\d+)\] LOG:  statement: (.*)$")


def server_phases(log: str) -> dict[str, float]:
    """Server-side seconds of finops's heavy statements, from the server's statement log (log_statement=all).

    A statement lasts from its own log line to the next statement of the same backend (the next statement
    of any backend if it was its backend's last): the ``COPY … FROM STDIN`` that streams the rows into the
    export table (the client reads S3 and writes CSV while it runs, so that work is inside it) and the
    ``CREATE INDEX`` on ``billing_period`` of a new table; and the checks the import runs on the period before
    COMMIT (``checks_s``: the reconciliation, the data-quality findings, the invoice ids — every ``SELECT`` of the
    period's rows).
    """
    from datetime import datetime

    lines = []
    for line in log.splitlines():
        match = _STATEMENT.match(line)
        if match:
            stamp, pid, text = match.groups()
            lines.append((datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp(), pid, text))
    phases = {"copy_s": 0.0, "create_index_s": 0.0, "checks_s": 0.0}
    for i, (start, pid, text) in enumerate(lines):
        later = [t for t, p, _ in lines[i + 1:] if p == pid] or [t for t, _, _ in lines[i + 1:]]
        if not later:
            continue
        seconds = later[0] - start
        if text.startswith("COPY ") and "FROM STDIN" in text:
            phases["copy_s"] += seconds
        elif text.startswith("CREATE INDEX "):
            phases["create_index_s"] += seconds
        elif text.startswith("SELECT ") and re.search(r'WHERE (a\.)?"?billing_period"? = ', text):
            phases["checks_s"] += seconds
    return {k: round(v, 2) for k, v in phases.items()}


# ---------------------------------------------------------------------------------------------------------------
# The baseline's CSV: the same rows, written once from the local Parquet files (not timed)
# ---------------------------------------------------------------------------------------------------------------
def write_csv(files: list[Path], columns: list[tuple[str, str]], constants: dict[str, str], out: Path) -> int:
    """One CSV (header + rows) with exactly ``columns`` in order: Parquet columns by name (a name over 63 bytes
    shortened like finops does), ``constants`` for the columns finops adds (``billing_period``), maps as JSON
    text, every value cast to the Arrow type of its PostgreSQL column. Returns the bytes written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from core.backends.readers import map_to_json
    from core.backends.sqlengine.names import fit_identifier

    arrow = {"text": pa.string(), "jsonb": pa.string(), "json": pa.string(), "double precision": pa.float64(),
             "bigint": pa.int64(), "integer": pa.int32(), "boolean": pa.bool_(), "date": pa.date32(),
             "timestamp with time zone": pa.timestamp("us", tz="UTC"),
             "timestamp without time zone": pa.timestamp("us")}
    schema = pa.schema([pa.field(name, arrow[kind]) for name, kind in columns])
    writer = None
    try:
        with open(out, "wb") as sink:
            for path in files:
                parquet = pq.ParquetFile(path)
                by_name = {fit_identifier(f.name, 63): f.name for f in parquet.schema_arrow}
                missing = [n for n, _ in columns if n not in by_name and n not in constants]
                if missing:
                    raise SystemExit(f"{path.name}: finops columns not in the Parquet file: {missing}")
                for batch in parquet.iter_batches(batch_size=65536):
                    arrays = []
                    for (name, _kind), field in zip(columns, schema):
                        if name in constants:
                            arrays.append(pa.repeat(pa.scalar(constants[name], field.type), batch.num_rows))
                            continue
                        values = batch.column(by_name[name])
                        if pa.types.is_map(values.type) or pa.types.is_struct(values.type) \
                                or pa.types.is_list(values.type):
                            values = map_to_json(values)
                        elif values.type != field.type:
                            values = pc.cast(values, field.type)
                        if pa.types.is_timestamp(field.type) and field.type.tz:
                            # pyarrow formats tz-aware timestamps ~20x slower than naive ones: write the UTC wall
                            # time and a "Z" ourselves (same text, same instants)
                            naive = pc.cast(values.cast(pa.timestamp("us")), pa.string())
                            values = pc.binary_join_element_wise(naive, "Z", "")
                        arrays.append(values)
                    table = pa.RecordBatch.from_arrays(arrays, names=[n for n, _ in columns])
                    if writer is None:
                        writer = pacsv.CSVWriter(sink, table.schema,
                                                 write_options=pacsv.WriteOptions(include_header=True))
                    writer.write_batch(table)
            if writer is not None:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()
    return out.stat().st_size


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------
def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the billing period (default 1000000)")
    parser.add_argument("--files", type=int, default=1, help="Parquet files the period is split into (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (finops, copy); best time and highest RSS are kept (default 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp folder (data, CSV, logs) and the server's data folder; the server is "
                             "still stopped")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--copy-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.copy_worker:
        return copy_worker(args.copy_worker)

    def info(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="finops-bench-pg-"))
    moto = server = pg_module = None
    try:
        pg_module, server = start_postgres()
        with admin(server) as conn0:
            pg_version = sql(conn0, "SHOW server_version")[0][0]
        conn0.close()
        info(f"PostgreSQL {pg_version} on {server.host}:{server.port} (data {server.root})")

        gen = load_generator()
        src = work / "bucket"
        t0 = time.perf_counter()
        truth = gen.write_cur2_export(src, prefix=PREFIX, export_name=EXPORT_NAME, periods=[PERIOD],
                                      rows_per_period=args.rows, files_per_period=args.files)
        gen_seconds = time.perf_counter() - t0
        keys = truth.periods[PERIOD].data_keys
        expected_cost = float(truth.periods[PERIOD].unblended_cost)
        data_bytes = sum((src / k).stat().st_size for k in keys)
        info(f"generated {args.rows} rows in {len(keys)} file(s), {data_bytes / MIB:.1f} MiB, {gen_seconds:.1f} s")

        moto, endpoint = start_moto(work / "moto.log")
        t0 = time.perf_counter()
        objects, _ = upload(src, endpoint, BUCKET)
        info(f"moto server on {endpoint} (pid {moto.pid}); uploaded {objects} objects in "
             f"{time.perf_counter() - t0:.1f} s")

        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "OPEN_FINOPS_", "PG", "POSTGRESQL_", "DUCKDB_", "RUNTIME__"))}
        base_env.update(PYTHONUNBUFFERED="1")
        finops_env = dict(base_env)
        finops_env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
            AWS_ENDPOINT_URL_S3=endpoint,
            OPEN_FINOPS_DATABASE_POSTGRESQL_HOST=server.host, OPEN_FINOPS_DATABASE_POSTGRESQL_PORT=str(server.port),
            OPEN_FINOPS_DATABASE_POSTGRESQL_DATABASE=server.database,
            OPEN_FINOPS_DATABASE_POSTGRESQL_USER=server.user, POSTGRESQL_PASSWORD=server.password,
        )

        conn = admin(server)
        finops_runs: list[Run] = []
        copy_runs: list[Run] = []
        finops_phases: list[dict] = []
        errors: list[str] = []
        checks: list[dict] = []
        csv_path = work / "rows.csv"
        csv_info: dict = {}
        columns: list[tuple[str, str]] = []
        for i in range(args.repeat):
            rnd = i + 1
            rundir = work / f"round{rnd}"
            rundir.mkdir()
            schema = f"bench_r{rnd}"
            baseline = f"{quote(BASELINE_SCHEMA)}.{quote(f'{TABLE}_r{rnd}')}"
            finops_table = f"{quote(schema)}.{quote(TABLE)}"

            # -- finops ------------------------------------------------------------------------------------
            env = dict(finops_env, OPEN_FINOPS_DATABASE_POSTGRESQL_SCHEMA=schema,
                       OPEN_FINOPS_PROJECT_DATA_DIR=str(rundir / "finops-data"))
            cmd = [sys.executable, str(FINOPS), "aws", "import-cur", "--backend", "postgresql", "--bucket", BUCKET,
                   "--prefix", PREFIX, "--export-name", EXPORT_NAME, "--json"]
            sql(conn, "CHECKPOINT")
            offset = server.log_offset()
            run = measure("finops", cmd, env=env, cwd=rundir)
            finops_runs.append(run)
            phases = server_phases(server.log_since(offset))
            phases["rest_s"] = round(run.seconds - sum(phases.values()), 2)
            finops_phases.append(phases)
            info(f"round {rnd} finops: {run.seconds:.2f} s, peak RSS {run.peak_rss_mib:.0f} MiB "
                 f"(poll {run.rss_poll_mib:.0f}, hwm {run.rss_hwm_mib:.0f}), exit {run.returncode}; "
                 + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in phases.items()))
            if run.returncode != 0:
                errors.append(f"finops run {rnd} exited {run.returncode}: {(run.stdout + run.stderr).strip()[-2000:]}")

            # -- the baseline's table and CSV, from what finops created (once) -----------------------------------
            if not columns:
                columns = table_columns(conn, schema, TABLE)
                if not columns:
                    errors.append(f"round {rnd}: finops created no table {schema}.{TABLE}; no baseline possible")
                    break
                constants = {}
                if "billing_period" in dict(columns):
                    periods = sql(conn, f"SELECT DISTINCT billing_period FROM {finops_table}")
                    constants["billing_period"] = periods[0][0] if len(periods) == 1 else PERIOD
                t0 = time.perf_counter()
                csv_bytes = write_csv([src / k for k in keys], columns, constants, csv_path)
                csv_info = {"seconds": round(time.perf_counter() - t0, 2), "mib": round(csv_bytes / MIB, 1)}
                info(f"wrote the baseline CSV ({len(columns)} columns, {csv_bytes / MIB:.0f} MiB) in "
                     f"{csv_info['seconds']:.1f} s (not timed)")
                sql(conn, f"CREATE SCHEMA IF NOT EXISTS {quote(BASELINE_SCHEMA)} AUTHORIZATION {quote(server.user)}")

            # -- copy --------------------------------------------------------------------------------------
            names = ", ".join(quote(n) for n, _ in columns)
            spec = {
                "dsn": server.dsn(),
                "create": f"CREATE TABLE {baseline} ({', '.join(f'{quote(n)} {t}' for n, t in columns)})",
                "copy": f"COPY {baseline} ({names}) FROM STDIN WITH (FORMAT csv, HEADER true)",
                "csv": str(csv_path),
            }
            spec_path = rundir / "copy.json"
            spec_path.write_text(json.dumps(spec))
            sql(conn, "CHECKPOINT")
            run = measure("copy", [sys.executable, str(Path(__file__).resolve()), "--copy-worker", str(spec_path)],
                          env=base_env, cwd=rundir)
            copy_runs.append(run)
            info(f"round {rnd} copy:   {run.seconds:.2f} s, peak RSS {run.peak_rss_mib:.0f} MiB "
                 f"(poll {run.rss_poll_mib:.0f}, hwm {run.rss_hwm_mib:.0f}), exit {run.returncode}")
            if run.returncode != 0:
                errors.append(f"copy run {rnd} exited {run.returncode}: {run.stderr.strip()[-2000:]}")

            # -- checks ------------------------------------------------------------------------------------
            f_rows, f_cost, f_err = totals(conn, finops_table)
            c_rows, c_cost, c_err = totals(conn, baseline)
            check = {"round": rnd, "finops_rows": f_rows, "copy_rows": c_rows, "finops_cost": f_cost,
                     "copy_cost": c_cost, "expected_cost": expected_cost,
                     "finops_table_mib": relation_mib(conn, finops_table),
                     "copy_table_mib": relation_mib(conn, baseline)}
            checks.append(check)
            for side, rows, cost, err in (("finops", f_rows, f_cost, f_err), ("copy", c_rows, c_cost, c_err)):
                if err:
                    errors.append(f"round {rnd}: reading the {side} table failed: {err}")
                elif rows != args.rows:
                    errors.append(f"round {rnd}: {side} table holds {rows} rows, expected {args.rows}")
                elif not _close(cost, expected_cost):
                    errors.append(f"round {rnd}: {side} SUM({COST}) = {cost!r}, generator total {expected_cost!r}")
            if not _close(f_cost, c_cost):
                errors.append(f"round {rnd}: SUM({COST}) finops {f_cost!r} != copy {c_cost!r}")
            if not args.keep:  # keep the disk tidy between rounds
                drop_schemas(conn, schema)  # the export schema (and any schema named after it)
                sql(conn, f"DROP TABLE IF EXISTS {baseline}")
                shutil.rmtree(rundir, ignore_errors=True)
        conn.close()

        finops = _summary(finops_runs) if finops_runs else None
        copy = _summary(copy_runs) if copy_runs else None
        if finops and copy and copy["seconds"]:
            ratio = finops["seconds"] / copy["seconds"]
        else:
            ratio = float("inf")
        ratio_ok = ratio <= TARGET_RATIO
        rss_ok = bool(finops) and finops["peak_rss_mib"] <= TARGET_RSS_MIB
        ok = ratio_ok and rss_ok and not errors
        last = checks[-1] if checks else {}
        result = {
            "rows": args.rows,
            "files": len(keys),
            "data_mib": round(data_bytes / MIB, 1),
            "csv": csv_info,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "postgresql": pg_version,
            "finops": {**(finops or {}), "rows_loaded": last.get("finops_rows"), "cost": last.get("finops_cost"),
                       "table_mib": _round(last.get("finops_table_mib")), "phases_all": finops_phases},
            "copy": {**(copy or {}), "rows_loaded": last.get("copy_rows"), "cost": last.get("copy_cost"),
                     "table_mib": _round(last.get("copy_table_mib"))},
            "expected_cost": expected_cost,
            "ratio": round(ratio, 2) if math.isfinite(ratio) else None,
            "targets": {"ratio_max": TARGET_RATIO, "finops_peak_rss_mib_max": TARGET_RSS_MIB},
            "ratio_ok": ratio_ok,
            "rss_ok": rss_ok,
            "checks": checks,
            "errors": errors,
            "pass": ok,
            "work_dir": str(work) if args.keep else None,
        }
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"\n{args.rows:,} rows, {len(keys)} file(s), {data_bytes / MIB:.1f} MiB Parquet "
                  f"({csv_info.get('mib', '?')} MiB as CSV), PostgreSQL {pg_version}, "
                  f"best of {args.repeat} (time) / max of {args.repeat} (RSS)")
            print(f"{'':8} {'seconds':>9} {'peak RSS MiB':>13} {'rows':>10} {'table MiB':>10}")
            for name, side in (("copy", result["copy"]), ("finops", result["finops"])):
                print(f"{name:8} {side.get('seconds', float('nan')):>9.2f} {side.get('peak_rss_mib', float('nan')):>13.0f} "
                      f"{side['rows_loaded']!s:>10} {side['table_mib'] if side['table_mib'] is not None else '?':>10}")
            for rnd, phases in enumerate(finops_phases, 1):
                print(f"finops round {rnd}: COPY (S3 read and CSV writing overlap it) {phases['copy_s']:.1f} s, "
                      f"CREATE INDEX {phases['create_index_s']:.1f} s, "
                      f"checks before COMMIT (reconciliation, findings, invoices) {phases['checks_s']:.1f} s, "
                      f"rest (start-up, listing, manifest, state, commit, exit) {phases['rest_s']:.1f} s")
            print(f"ratio finops/copy seconds: {ratio:.2f} (target <= {TARGET_RATIO}) {'PASS' if ratio_ok else 'FAIL'}")
            if finops:
                print(f"finops peak RSS: {finops['peak_rss_mib']:.0f} MiB (target <= {TARGET_RSS_MIB:.0f}) "
                      f"{'PASS' if rss_ok else 'FAIL'}")
            for e in errors:
                print(f"ERROR: {e}")
            print("PASS" if ok else "FAIL")
            if args.keep:
                print(f"kept: {work} (server data: {server.root})")
        return 0 if ok else 1
    finally:
        if moto is not None:
            stop(moto)
        if server is not None:
            if args.keep:  # stop the server but keep its folder (and its statement log)
                pg_module._run([str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "fast",
                                "-w", "stop"], as_root=server._as_root)
            else:
                pg_module.stop_server(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    sys.exit(main())
