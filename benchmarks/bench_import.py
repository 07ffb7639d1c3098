#!/usr/bin/env python3
"""Benchmark ``finops aws import-cur`` (DuckDB backend) against DuckDB's own Parquet-from-S3 load.

One run:

1. writes an N-row CUR 2.0 export (one billing period, ``--files`` Parquet files) with
   ``examples/generate_samples.py`` into a temp folder, starts a moto S3 server as a *separate process*
   (so its memory counts in neither measured process) and uploads the export to it;
2. runs, each in its own subprocess and each into a fresh DuckDB file:

   * **native** - ``CREATE TABLE t AS SELECT * FROM read_parquet([...s3 uris...])`` with httpfs loaded from
     the ``duckdb-extension-httpfs`` wheel and the same kind of S3 secret finops creates (this script's own
     ``--native-worker`` mode);
   * **finops** - ``finops aws import-cur --bucket ... --export-name ... -D database_path=... --json``;

   timing each (wall clock, process start to exit, so interpreter start-up and imports are included) and
   measuring its peak RSS two ways while polling the process tree with psutil every ~50 ms: the largest sum
   of current RSS over the process and its descendants ("poll"), and the largest sum of their kernel
   high-water marks, ``VmHWM`` in ``/proc/PID/status`` ("hwm"), which catches spikes between two polls
   (see README.md for why ``ru_maxrss`` is not used);
3. checks that both tables hold N rows, prints seconds / peak RSS / the finops-to-native time ratio and
   PASS or FAIL against the targets (ratio <= 2.0, finops peak RSS <= 2 GiB).

Order and repeats: the runs alternate native, finops, native, finops, ... (``--repeat`` rounds, default 2),
so a slow start or a drifting machine hits both sides alike. The figure kept for each side is the *best*
(lowest) time over the rounds, and the *highest* peak RSS over the rounds (memory is judged conservatively).

Exit code 0 when both targets are met (and the row counts are right), 1 otherwise.

    python benchmarks/bench_import.py --rows 1000000 --files 4 [--repeat 2] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "examples" / "generate_samples.py"
FINOPS = REPO / "finops"

BUCKET = "sample-bucket"  # the bucket named in the generated manifests' dataFiles
PREFIX = "exports"
EXPORT_NAME = "cur2-bench"
TABLE = "aws_billing.cur2_bench"  # dataset aws_billing, table = export name in snake_case
PERIOD = "2024-01"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"

TARGET_RATIO = 2.0
TARGET_RSS_MIB = 2048.0
POLL_SECONDS = 0.05
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------------------
# Native worker: DuckDB alone, the same httpfs loading and S3 secret as core/backends/duckdb.py
# ---------------------------------------------------------------------------------------------------------------
def native_worker(database: str, uris: list[str], threads: int | None, memory_limit: str | None) -> int:
    import duckdb

    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    scheme, _, host = endpoint.partition("://")
    conn = duckdb.connect(database)
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET enable_progress_bar = false")
    if memory_limit:
        conn.execute("SET memory_limit = ?", [memory_limit])
    if threads:
        conn.execute("SET threads = ?", [threads])
    path = None
    try:
        import duckdb_extension_httpfs

        candidate = (Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
                     / "httpfs.duckdb_extension")
        path = candidate if candidate.exists() else None
    except ImportError:
        pass
    conn.execute("LOAD " + ("'" + str(path).replace("'", "''") + "'" if path else "httpfs"))
    conn.execute(
        "CREATE OR REPLACE TEMPORARY SECRET bench_s3 "
        "(TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
        [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
         os.environ.get("AWS_DEFAULT_REGION", REGION), host.rstrip("/"), scheme == "https"],
    )
    conn.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)", [uris])
    rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    conn.close()
    print(json.dumps({"rows": rows}))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Measuring a subprocess
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    seconds: float
    rss_poll_mib: float  # max over samples of the summed RSS of the process tree
    rss_hwm_mib: float  # max over samples of the summed VmHWM (kernel peak RSS) of the process tree
    returncode: int
    samples: int
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_poll_mib, self.rss_hwm_mib)


def _vm_hwm(pid: int) -> int:
    """The kernel's high-water mark of the resident set of ``pid`` (bytes), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree_rss(proc) -> tuple[int, int]:
    """(sum of current RSS, sum of VmHWM) over ``proc`` and its descendants."""
    import psutil

    rss = hwm = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            rss += p.memory_info().rss
        except psutil.Error:
            continue
        hwm += _vm_hwm(p.pid)
    return rss, hwm


def measure(name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> Run:
    """Run ``argv`` and poll its tree's RSS and VmHWM every POLL_SECONDS until it exits.

    The process is reaped with ``os.wait4(WNOHANG)`` rather than ``Popen.poll`` so that a zombie is never
    sampled; its ``ru_maxrss`` is deliberately not used: exec() carries the *parent's* high-water mark over
    (the mm copied or borrowed at fork/vfork), so it reports at least this script's own peak RSS.
    """
    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        proc = psutil.Process(popen.pid)
        peak = peak_hwm = samples = 0
        while True:
            pid, status, _usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                elapsed = time.perf_counter() - started
                break
            rss, hwm = _tree_rss(proc)
            peak, peak_hwm = max(peak, rss), max(peak_hwm, hwm)
            samples += 1
            time.sleep(POLL_SECONDS)
        popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Run(name=name, seconds=elapsed, rss_poll_mib=peak / MIB, rss_hwm_mib=peak_hwm / MIB,
               returncode=popen.returncode, samples=samples, stdout=stdout, stderr=stderr)


# ---------------------------------------------------------------------------------------------------------------
# S3 server and data
# ---------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "wb")
    popen = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"moto server exited with code {popen.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                return popen, endpoint
        except urllib.error.HTTPError:
            return popen, endpoint  # it answers
        except OSError:
            time.sleep(0.1)
    popen.terminate()
    raise RuntimeError(f"moto server did not answer on {endpoint} within 30 s; see {log_path}")


def stop(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def load_generator():
    spec = importlib.util.spec_from_file_location("finops_bench_generate_samples", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def upload(root: Path, endpoint: str, bucket: str) -> tuple[int, int]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    s3.create_bucket(Bucket=bucket)
    count = size = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, path.relative_to(root).as_posix())
            count += 1
            size += path.stat().st_size
    return count, size


def count_rows(database: Path, table: str) -> int | None:
    import duckdb

    try:
        conn = duckdb.connect(str(database), read_only=True)
    except duckdb.Error:
        return None
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except duckdb.Error:
        return None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------
def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def _summary(runs: list[Run]) -> dict:
    return {
        "seconds": round(min(r.seconds for r in runs), 3),
        "seconds_all": [round(r.seconds, 3) for r in runs],
        "peak_rss_mib": round(max(r.peak_rss_mib for r in runs), 1),
        "rss_poll_mib_all": [round(r.rss_poll_mib, 1) for r in runs],
        "rss_hwm_mib_all": [round(r.rss_hwm_mib, 1) for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the billing period (default 1000000)")
    parser.add_argument("--files", type=int, default=1, help="Parquet files each period is split into (default 1)")
    parser.add_argument("--months", type=int, default=1,
                        help="billing periods of --rows rows each, loaded in one run (default 1): peak RSS must not "
                        "grow with them")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of (native, finops); best time and highest RSS are kept (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads for both sides (default: cores)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for both sides, e.g. 1GB")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (data, DuckDB files, logs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--native-worker", nargs="+", metavar=("DB", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.native_worker:
        database, *uris = args.native_worker
        return native_worker(database, uris, args.threads, args.memory_limit)

    def info(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="finops-bench-"))
    moto = None
    try:
        gen = load_generator()
        src = work / "bucket"
        t0 = time.perf_counter()
        periods = [f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in range(args.months)]
        truth = gen.write_cur2_export(src, prefix=PREFIX, export_name=EXPORT_NAME, periods=periods,
                                      rows_per_period=args.rows, files_per_period=args.files)
        gen_seconds = time.perf_counter() - t0
        keys = [k for p in periods for k in truth.periods[p].data_keys]
        total_rows = args.rows * args.months
        data_bytes = sum((src / k).stat().st_size for k in keys)
        info(f"generated {total_rows} rows ({args.months} month(s)) in {len(keys)} file(s), "
             f"{data_bytes / MIB:.1f} MiB, {gen_seconds:.1f} s")

        moto, endpoint = start_moto(work / "moto.log")
        t0 = time.perf_counter()
        objects, _ = upload(src, endpoint, BUCKET)
        info(f"moto server on {endpoint} (pid {moto.pid}); uploaded {objects} objects in "
             f"{time.perf_counter() - t0:.1f} s")
        uris = [f"s3://{BUCKET}/{k}" for k in keys]

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "OPEN_FINOPS_", "DUCKDB_"))}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
                   AWS_ENDPOINT_URL_S3=endpoint, PYTHONUNBUFFERED="1")

        native_runs: list[Run] = []
        finops_runs: list[Run] = []
        native_rows = finops_rows = None
        errors: list[str] = []
        for i in range(args.repeat):
            rundir = work / f"round{i + 1}"
            rundir.mkdir()
            native_db = rundir / "native.duckdb"
            finops_db = rundir / "finops.duckdb"

            cmd = [sys.executable, str(Path(__file__).resolve())]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.memory_limit:
                cmd += ["--memory-limit", args.memory_limit]
            run = measure("native", cmd + ["--native-worker", str(native_db), *uris], env=env, cwd=rundir)
            native_runs.append(run)
            info(f"round {i + 1} native: {run.seconds:.2f} s, peak RSS {run.peak_rss_mib:.0f} MiB "
                 f"(poll {run.rss_poll_mib:.0f}, hwm {run.rss_hwm_mib:.0f}), exit {run.returncode}")
            if run.returncode != 0:
                errors.append(f"native run {i + 1} exited {run.returncode}: {run.stderr.strip()[-2000:]}")

            cmd = [sys.executable, str(FINOPS), "aws", "import-cur", "--bucket", BUCKET, "--prefix", PREFIX,
                   "--export-name", EXPORT_NAME, "-D", f"database_path={finops_db}", "--json"]
            if args.threads:
                cmd += ["-D", f"threads={args.threads}"]
            if args.memory_limit:
                cmd += ["-D", f"memory_limit={args.memory_limit}"]
            run = measure("finops", cmd, env=env, cwd=rundir)
            finops_runs.append(run)
            info(f"round {i + 1} finops: {run.seconds:.2f} s, peak RSS {run.peak_rss_mib:.0f} MiB "
                 f"(poll {run.rss_poll_mib:.0f}, hwm {run.rss_hwm_mib:.0f}), exit {run.returncode}")
            if run.returncode != 0:
                errors.append(f"finops run {i + 1} exited {run.returncode}: "
                              f"{(run.stdout + run.stderr).strip()[-2000:]}")

            native_rows = count_rows(native_db, "t")
            finops_rows = count_rows(finops_db, TABLE)
            if native_rows != total_rows:
                errors.append(f"round {i + 1}: native table holds {native_rows} rows, expected {total_rows}")
            if finops_rows != total_rows:
                errors.append(f"round {i + 1}: {TABLE} holds {finops_rows} rows, expected {total_rows}")
            if not args.keep:  # keep the disk tidy between rounds
                shutil.rmtree(rundir, ignore_errors=True)

        native, finops = _summary(native_runs), _summary(finops_runs)
        ratio = finops["seconds"] / native["seconds"] if native["seconds"] else float("inf")
        ratio_ok = ratio <= TARGET_RATIO
        rss_ok = finops["peak_rss_mib"] <= TARGET_RSS_MIB
        ok = ratio_ok and rss_ok and not errors
        result = {
            "rows": total_rows,
            "months": args.months,
            "files": len(keys),
            "data_mib": round(data_bytes / MIB, 1),
            "repeat": args.repeat,
            "threads": args.threads,
            "memory_limit": args.memory_limit,
            "cpus": os.cpu_count(),
            "duckdb": _duckdb_version(),
            "native": {**native, "rows_loaded": native_rows},
            "finops": {**finops, "rows_loaded": finops_rows},
            "ratio": round(ratio, 2),
            "targets": {"ratio_max": TARGET_RATIO, "finops_peak_rss_mib_max": TARGET_RSS_MIB},
            "ratio_ok": ratio_ok,
            "rss_ok": rss_ok,
            "errors": errors,
            "pass": ok,
            "work_dir": str(work) if args.keep else None,
        }
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"\n{total_rows:,} rows ({args.months} month(s)), {len(keys)} file(s), "
                  f"{data_bytes / MIB:.1f} MiB Parquet, "
                  f"best of {args.repeat} (time) / max of {args.repeat} (RSS)")
            print(f"{'':8} {'seconds':>9} {'peak RSS MiB':>13} {'rows':>10}")
            print(f"{'native':8} {native['seconds']:>9.2f} {native['peak_rss_mib']:>13.0f} {native_rows!s:>10}")
            print(f"{'finops':8} {finops['seconds']:>9.2f} {finops['peak_rss_mib']:>13.0f} {finops_rows!s:>10}")
            print(f"ratio finops/native seconds: {ratio:.2f} (target <= {TARGET_RATIO}) "
                  f"{'PASS' if ratio_ok else 'FAIL'}")
            print(f"finops peak RSS: {finops['peak_rss_mib']:.0f} MiB (target <= {TARGET_RSS_MIB:.0f}) "
                  f"{'PASS' if rss_ok else 'FAIL'}")
            for e in errors:
                print(f"ERROR: {e}")
            print("PASS" if ok else "FAIL")
            if args.keep:
                print(f"kept: {work}")
        return 0 if ok else 1
    finally:
        if moto is not None:
            stop(moto)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
