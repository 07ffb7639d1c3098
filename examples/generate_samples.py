#!/usr/bin/env python3
"""Write synthetic AWS billing exports into a local folder laid out like an S3 bucket.

The folder passed as ``root`` stands for the bucket root: a file at
``root / "cur/legacy-cur/20240101-20240201/legacy-cur-Manifest.json"`` stands for the
object key ``cur/legacy-cur/20240101-20240201/legacy-cur-Manifest.json``.

Two writers are provided:

* :func:`write_cur1_export` - legacy Cost and Usage Report (CUR v1): gzip / zip / plain CSV
  with ``category/Name`` headers, or Parquet with Athena-style snake_case names, in the
  "create new report version" or the "overwrite existing report" layout.
* :func:`write_cur2_export` - CUR 2.0 (Data Exports): Parquet with snake_case columns and
  the map columns ``product``, ``resource_tags``, ``cost_category`` and ``discount``.

Both return an :class:`ExportTruth` holding, for every billing period written, the number of
rows, the exact cost total, the version id put in the manifest and the keys of the data files.

Determinism: for the same arguments the output is byte-for-byte identical. The random streams
are seeded from ``(seed, export name, period, version id)``, so writing the same period again
with another ``assemblyId`` / ``executionId`` gives a *restatement*: different line items and a
different total, written the way AWS writes a new version of a period.

How costs are made "exact": every decimal value (costs, rates, amounts) is generated as an integer
number of 1e-10 dollars (at most 10 decimal places, magnitude below 1e4, so at most 15 significant
digits). In CSV it is written as that exact decimal - plain (``0.0123``) or, for some tiny values,
in Java-style E notation (``9.984E-7``). In Parquet it is written as the IEEE double nearest to
that decimal, and because the decimal has at most 15 significant digits,
``decimal.Decimal(str(value))`` of the double gives the decimal back. ``PeriodTruth.unblended_cost``
is therefore both the exact sum of the ``UnblendedCost`` strings in the CSV files and the exact sum
of ``Decimal(str(x))`` over the doubles in the Parquet files (it is *not* the float sum).

The generation is vectorised with ``pyarrow.compute`` (no Python object per row), so a
1,000,000-row CUR 2.0 period takes a few seconds.

Run ``python examples/generate_samples.py --help`` to regenerate ``examples/sample-exports/``.
"""
from __future__ import annotations

import argparse
import calendar
import decimal
import gzip
import hashlib
import json
import random
import re
import shutil
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "PeriodTruth",
    "ExportTruth",
    "write_cur1_export",
    "write_cur2_export",
    "main",
    "BUCKET",
    "PAYER_ACCOUNT_ID",
    "v1_parquet_name",
]

BUCKET = "sample-bucket"
# Payer (management) account: bill/PayerAccountId, the manifests' "account" and the ARNs. Read at call
# time, so a test can set e.g. ``generate_samples.PAYER_ACCOUNT_ID = "001234567890"`` to get a payer
# with leading zeros (usage account ids such as 001234567890 / 012345678901 already have them).
PAYER_ACCOUNT_ID = "123456789012"
SCALE = 10  # decimal places of every generated decimal value
_UNITS = 10**SCALE
_MAX_COST_UNITS = 5_000 * _UNITS


# --------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------


@dataclass
class PeriodTruth:
    """Ground truth for one billing period."""

    billing_period: str  # 'YYYY-MM'
    rows: int
    unblended_cost: decimal.Decimal  # exact sum of line_item_unblended_cost as written
    version_id: str  # v1 assemblyId / v2 executionId written into the manifest
    data_keys: list[str]  # keys (relative to the bucket root) of the data files
    manifest_key: str = ""  # key of the current manifest of the period (addition)


@dataclass
class ExportTruth:
    export_name: str
    cur_version: str  # 'v1' or 'v2'
    prefix: str  # key prefix without trailing slash, '' allowed
    periods: dict[str, PeriodTruth] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------------


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _uuid(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _arange(n: int) -> pa.Array:
    if n == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)


def _str_null() -> pa.Scalar:
    return pa.scalar(None, pa.string())


def _blank(arr: pa.Array, keep: pa.Array) -> pa.Array:
    """Null where ``keep`` is false."""
    return pc.if_else(keep, arr, pa.scalar(None, arr.type))


def _to_units(x: pa.Array) -> pa.Array:
    """float dollars -> int64 number of 1e-10 dollars (rounded half to even)."""
    return pc.cast(pc.round(pc.multiply(x, float(_UNITS))), pa.int64())


def _scale_units(units: pa.Array, factor: float) -> pa.Array:
    return _to_units(pc.multiply(pc.divide(pc.cast(units, pa.float64()), float(_UNITS)), factor))


def _units_to_double(units: pa.Array) -> pa.Array:
    # int64 -> float64 is exact below 2**53 and IEEE division is correctly rounded, so this is
    # the double nearest to the decimal value.
    return pc.divide(pc.cast(units, pa.float64()), float(_UNITS))


class _Rng:
    """Named, independent random streams for ``n`` rows (pyarrow's pc.random)."""

    def __init__(self, n: int, *material: object) -> None:
        self.n = n
        self.material = material

    def uniform(self, name: str) -> pa.Array:
        if self.n == 0:
            return pa.array([], pa.float64())
        return pc.random(self.n, initializer=_seed(*self.material, name))

    def normal(self, name: str) -> pa.Array:
        # Box-Muller; 1-u is in (0, 1] so the log is finite.
        u1 = pc.subtract(1.0, self.uniform(name + "#1"))
        u2 = self.uniform(name + "#2")
        radius = pc.sqrt(pc.multiply(pc.ln(u1), -2.0))
        return pc.multiply(radius, pc.cos(pc.multiply(u2, 2.0 * 3.141592653589793)))

    def lognormal(self, name: str, mu, sigma) -> pa.Array:
        return pc.exp(pc.add(mu, pc.multiply(sigma, self.normal(name))))

    def randint(self, name: str, k: int) -> pa.Array:
        idx = pc.cast(pc.floor(pc.multiply(self.uniform(name), float(k))), pa.int32())
        return pc.min_element_wise(idx, pa.scalar(k - 1, pa.int32()))

    def weighted(self, name: str, weights: list[float]) -> pa.Array:
        return _weighted_lookup(tuple(weights)).take(self.randint(name, _LOOKUP))

    def choice(self, name: str, values: list, weights: list[float] | None = None, type=pa.string()):
        pool = pa.array(values, type)
        if weights is None:
            return pool.take(self.randint(name, len(values)))
        return pool.take(self.weighted(name, weights))

    def bernoulli(self, name: str, p: float) -> pa.Array:
        return pc.less(self.uniform(name), p)


_LOOKUP = 8192
_LOOKUP_CACHE: dict[tuple, pa.Array] = {}


def _weighted_lookup(weights: tuple) -> pa.Array:
    if weights not in _LOOKUP_CACHE:
        total = float(sum(weights))
        cum, acc = [], 0.0
        for w in weights:
            acc += w / total
            cum.append(acc)
        table, i = [], 0
        for j in range(_LOOKUP):
            x = (j + 0.5) / _LOOKUP
            while i < len(cum) - 1 and cum[i] <= x:
                i += 1
            table.append(i)
        _LOOKUP_CACHE[weights] = pa.array(table, pa.int32())
    return _LOOKUP_CACHE[weights]


def _fill(arr: pa.Array, value: str = "") -> pa.Array:
    return pc.fill_null(arr, value)


def _fmt_units(units: pa.Array, e_mask: pa.Array | None = None) -> pa.Array:
    """Format int64 1e-10 units as decimal strings; nulls become ''.

    Plain form: ``-12.5``, ``0.0``, ``0.0000032``. Where ``e_mask`` is true and
    ``0 < |value| < 1e-3`` the Java-style E form is used: ``9.984E-7``.
    """
    absu = pc.abs(units)
    sign = pc.if_else(pc.less(units, 0), "-", "")
    digits = pc.cast(absu, pa.string())
    padded = pc.utf8_lpad(digits, width=SCALE + 1, padding="0")
    int_part = pc.utf8_slice_codeunits(padded, 0, -SCALE)
    frac = pc.utf8_rtrim(pc.utf8_slice_codeunits(padded, -SCALE), characters="0")
    frac = pc.if_else(pc.equal(pc.utf8_length(frac), 0), "0", frac)
    plain = pc.binary_join_element_wise(sign, int_part, ".", frac, "")
    if e_mask is not None:
        rest = pc.utf8_rtrim(pc.utf8_slice_codeunits(digits, 1), characters="0")
        rest = pc.if_else(pc.equal(pc.utf8_length(rest), 0), "0", rest)
        exponent = pc.cast(pc.subtract(pc.utf8_length(digits), SCALE + 1), pa.string())
        e_form = pc.binary_join_element_wise(
            sign, pc.utf8_slice_codeunits(digits, 0, 1), ".", rest, "E", exponent, ""
        )
        use_e = pc.and_(e_mask, pc.and_(pc.greater(absu, 0), pc.less(absu, 10**7)))
        plain = pc.if_else(use_e, e_form, plain)
    return _fill(plain)


def _map_array(n: int, keys: list[str], values: list[pa.Array], value_type: pa.DataType) -> pa.Array:
    """Build a map<string, value_type> column from one nullable array per key (nulls dropped)."""
    map_type = pa.map_(pa.string(), value_type)
    k = len(keys)
    if k == 0 or n == 0:
        offsets = pa.repeat(pa.scalar(0, pa.int32()), n + 1)
        return pa.MapArray.from_arrays(offsets, pa.array([], pa.string()), pa.array([], value_type), type=map_type)
    flat = pa.concat_arrays([v.cast(value_type) for v in values])  # position key*n + row
    pos = _arange(n * k)
    row = pc.divide(pos, k)
    key_idx = pc.subtract(pos, pc.multiply(row, k))
    items = flat.take(pc.add(pc.multiply(key_idx, n), row))  # row-major: row*k + key
    key_col = pa.array(keys, pa.string()).take(key_idx)
    valid = pc.is_valid(items)
    counts = pc.cast(values[0].is_valid(), pa.int32())
    for v in values[1:]:
        counts = pc.add(counts, pc.cast(v.is_valid(), pa.int32()))
    offsets = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cast(pc.cumulative_sum(counts), pa.int32())]
    )
    return pa.MapArray.from_arrays(offsets, key_col.filter(valid), items.filter(valid), type=map_type)


# --------------------------------------------------------------------------------------------
# Reference data (fictional accounts; public AWS product names)
# --------------------------------------------------------------------------------------------

_ACCOUNTS = [  # id, name, weight, environment, invoicing entity
    ("001234567890", "acme-prod", 30, "production", "Amazon Web Services, Inc."),
    ("000987654321", "acme-staging", 14, "staging", "Amazon Web Services, Inc."),
    ("210987654321", "acme-dev", 14, "development", "Amazon Web Services, Inc."),
    ("012345678901", "acme-data-eu", 20, "production", "Amazon Web Services EMEA SARL"),
    ("555566667777", "acme-sandbox", 6, "sandbox", "Amazon Web Services, Inc."),
    ("098765432109", "acme-security", 6, "production", "Amazon Web Services, Inc."),
    ("<payer>", "acme-management", 3, "", "Amazon Web Services, Inc."),  # id = PAYER_ACCOUNT_ID
]

_REGIONS = [  # code, usage type prefix, location, weight, price multiplier
    ("us-east-1", "", "US East (N. Virginia)", 45, 1.0),
    ("eu-west-1", "EUW1-", "EU (Ireland)", 22, 1.1),
    ("us-west-2", "USW2-", "US West (Oregon)", 15, 1.0),
    ("eu-central-1", "EUC1-", "EU (Frankfurt)", 10, 1.15),
    ("ap-southeast-2", "APS2-", "Asia Pacific (Sydney)", 8, 1.25),
]

_LINE_ITEM_TYPES = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "Tax", "Credit", "Fee"]
_LINE_ITEM_TYPE_WEIGHTS = [80.5, 5, 8, 3, 2.5, 1]


def _c(code, name, family, usage, op, unit, rate, *, itype="", factor=0.0, kind="lognormal",
       mu=0.0, sigma=1.5, res="", az=False, glob=False, os="", w=0.0, ri=0.0, sp=0.0, fee=0.0,
       desc="", market=False):
    return dict(code=code, name=name, family=family, usage=usage, op=op, unit=unit, rate=rate,
                itype=itype, factor=factor, kind=kind, mu=mu, sigma=sigma, res=res, az=az,
                glob=glob, os=os, w=w, ri=ri, sp=sp, fee=fee, desc=desc, market=market)


_EC2, _S3, _RDS = "Amazon Elastic Compute Cloud", "Amazon Simple Storage Service", "Amazon Relational Database Service"
_CATALOG = [
    _c("AmazonEC2", _EC2, "Compute Instance", "BoxUsage:m5.large", "RunInstances", "Hrs", 0.096,
       itype="m5.large", factor=4, kind="hour", res="ec2", az=True, os="Linux", w=12, ri=5, sp=6,
       desc="${rate} per On Demand Linux m5.large Instance Hour"),
    _c("AmazonEC2", _EC2, "Compute Instance", "BoxUsage:t3.micro", "RunInstances", "Hrs", 0.0104,
       itype="t3.micro", factor=0.5, kind="hour", res="ec2", az=True, os="Linux", w=10, ri=2, sp=3,
       desc="${rate} per On Demand Linux t3.micro Instance Hour"),
    _c("AmazonEC2", _EC2, "Compute Instance", "BoxUsage:c6i.2xlarge", "RunInstances:0002", "Hrs", 0.544,
       itype="c6i.2xlarge", factor=16, kind="hour", res="ec2", az=True, os="Windows", w=4, ri=1, sp=4,
       desc="${rate} per On Demand Windows c6i.2xlarge Instance Hour"),
    _c("AmazonEC2", _EC2, "Compute Instance", "BoxUsage:r6g.xlarge", "RunInstances", "Hrs", 0.2016,
       itype="r6g.xlarge", factor=8, kind="hour", res="ec2", az=True, os="Linux", w=3, ri=1, sp=2,
       desc="${rate} per On Demand Linux r6g.xlarge Instance Hour"),
    _c("AmazonEC2", _EC2, "Storage", "EBS:VolumeUsage.gp3", "CreateVolume-Gp3", "GB-Mo", 0.08,
       mu=-3.0, sigma=1.2, res="vol", az=True, w=10,
       desc="${rate} per GB-month of General Purpose (gp3) provisioned storage"),
    _c("AmazonEC2", _EC2, "NAT Gateway", "NatGateway-Hours", "NatGateway", "Hrs", 0.045,
       kind="hour", res="nat", w=3, desc="${rate} per NAT Gateway Hour"),
    _c("AmazonEC2", _EC2, "Data Transfer", "DataTransfer-Out-Bytes", "RunInstances", "GB", 0.09,
       mu=-3.5, sigma=2.2, res="ec2", w=6,
       desc="${rate} per GB - first 10 TB / month data transfer out beyond the global free tier"),
    _c("AmazonS3", _S3, "Storage", "TimedStorage-ByteHrs", "StandardStorage", "GB-Mo", 0.023,
       mu=-1.0, sigma=2.0, res="s3", w=10, desc="${rate} per GB - first 50 TB / month of storage used"),
    _c("AmazonS3", _S3, "API Request", "Requests-Tier1", "PutObject", "Requests", 0.000005,
       kind="count", mu=3.0, sigma=2.0, res="s3", w=7, desc="${rate} per PUT, COPY, POST, or LIST requests"),
    _c("AmazonS3", _S3, "API Request", "Requests-Tier2", "GetObject", "Requests", 0.0000004,
       kind="count", mu=3.5, sigma=2.0, res="s3", w=8, desc="${rate} per GET and all other requests"),
    _c("AmazonRDS", _RDS, "Database Instance", "InstanceUsage:db.r6g.large", "CreateDBInstance:0016", "Hrs", 0.225,
       itype="db.r6g.large", factor=4, kind="hour", res="rds", az=True, w=5, ri=3,
       desc="${rate} per RDS db.r6g.large Single-AZ instance hour (or partial hour) running PostgreSQL"),
    _c("AmazonRDS", _RDS, "Database Storage", "RDS:GP2-Storage", "CreateDBInstance:0016", "GB-Mo", 0.115,
       mu=-2.0, sigma=1.0, res="rds", w=4, desc="${rate} per GB-month of provisioned GP2 storage running PostgreSQL"),
    _c("AWSLambda", "AWS Lambda", "Serverless", "Lambda-GB-Second", "Invoke", "Lambda-GB-Second", 0.0000166667,
       mu=4.0, sigma=2.0, res="lambda", w=6, sp=2, desc="AWS Lambda - Total Compute - {region}"),
    _c("AWSLambda", "AWS Lambda", "Serverless", "Request", "Invoke", "Requests", 0.0000002,
       kind="count", mu=4.0, sigma=2.0, res="lambda", w=5, desc="AWS Lambda - Total Requests - {region}"),
    _c("AmazonCloudWatch", "AmazonCloudWatch", "Metric", "CW:MetricMonitorUsage", "MetricStorage", "Metrics", 0.3,
       mu=-5.0, sigma=1.0, w=4, desc="${rate} per metric-month - first 10,000 metrics"),
    _c("AmazonCloudWatch", "AmazonCloudWatch", "Storage Snapshot", "TimedStorage-ByteHrs", "", "GB-Mo", 0.03,
       mu=-2.5, sigma=1.5, w=3, desc="${rate} per GB-mo of log storage"),
    _c("AmazonCloudWatch", "AmazonCloudWatch", "API Request", "CW:Requests", "GetMetricData", "Requests", 0.00001,
       kind="count", mu=2.0, sigma=1.5, w=3, desc="${rate} per 1,000 metrics requested using GetMetricData API"),
    _c("AmazonDynamoDB", "Amazon DynamoDB", "Amazon DynamoDB PayPerRequest Throughput", "WriteRequestUnits",
       "PayPerRequestThroughput", "WriteRequestUnits", 0.00000125, kind="count", mu=5.0, sigma=2.0, res="ddb", w=3,
       desc="${rate} per WriteRequestUnits"),
    _c("AmazonVPC", "Amazon Virtual Private Cloud", "VpcEndpoint", "VpcEndpoint-Hours", "VpcEndpoint", "Hrs", 0.01,
       kind="hour", res="vpce", w=2, desc="${rate} per VPC Endpoint Hour"),
    _c("AWSELB", "Elastic Load Balancing", "Load Balancer-Application", "LoadBalancerUsage",
       "LoadBalancing:Application", "Hrs", 0.0225, kind="hour", res="elb", w=3,
       desc="${rate} per Application LoadBalancer-hour (or partial hour)"),
    _c("AmazonRoute53", "Amazon Route 53", "DNS Zone", "HostedZone", "", "HostedZone", 0.5,
       mu=-6.0, sigma=0.5, res="r53", glob=True, w=1, desc="${rate} per Hosted Zone for the first 25 Hosted Zones"),
    _c("AWSSupportBusiness", "AWS Support (Business)", "", "Dollar", "", "", 0.0,
       glob=True, fee=3, desc="AWS Support (Business) monthly fee"),
    _c("prod-abcd1234efgh5", "Acme Observability Platform", "", "SoftwareUsage:pro", "Unused", "", 0.0,
       glob=True, fee=1, market=True, desc="Acme Observability Platform - Pro subscription"),
]
_NCAT, _NREG = len(_CATALOG), len(_REGIONS)
_MARKET_SELLER = "Acme Observability, Inc."

_CAT_TABLES: dict[str, pa.Array] = {}


def _catalog_tables() -> dict[str, pa.Array]:
    """Lookup arrays indexed by catalogue entry, or by ``cat * _NREG + region``."""
    if _CAT_TABLES:
        return _CAT_TABLES
    t = _CAT_TABLES
    for key in ("code", "name", "family", "usage", "op", "unit", "itype", "os", "desc"):
        vals = [c[key] or None for c in _CATALOG]
        t[key] = pa.array(vals, pa.string())
    t["ri_desc"] = pa.array(
        [f"USD 0.0 hourly fee per {c['os'] or 'Linux/UNIX'} (Amazon VPC), {c['itype'] or c['usage']} instance"
         for c in _CATALOG], pa.string())
    t["factor_units"] = pa.array([round(c["factor"] * _UNITS) if c["factor"] else None for c in _CATALOG], pa.int64())
    t["mu"] = pa.array([float(c["mu"]) for c in _CATALOG])
    t["sigma"] = pa.array([float(c["sigma"]) for c in _CATALOG])
    t["kind"] = pa.array([c["kind"] for c in _CATALOG], pa.string())
    t["glob"] = pa.array([c["glob"] for c in _CATALOG])
    t["az"] = pa.array([c["az"] for c in _CATALOG])
    t["market"] = pa.array([c["market"] for c in _CATALOG])
    itf = [c["itype"].split(".")[-2] if c["itype"] else None for c in _CATALOG]
    t["itype_family"] = pa.array(itf, pa.string())
    # per (catalogue, region)
    sku_rng = random.Random(20240101)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    skus, rates, descs = [], [], []
    for c in _CATALOG:
        for code, _p, _loc, _w, mult in _REGIONS:
            skus.append("".join(sku_rng.choice(alphabet) for _ in range(16)))
            rate = c["rate"] * (1.0 if c["glob"] else mult)
            r_units = round(rate * _UNITS)
            rates.append(r_units if c["rate"] else None)
            rate_s = format(decimal.Decimal(r_units).scaleb(-SCALE).normalize(), "f")
            descs.append(c["desc"].replace("{rate}", rate_s).replace("{region}", code))
    t["sku"] = pa.array(skus, pa.string())
    t["rate_units"] = pa.array(rates, pa.int64())
    t["desc_cr"] = pa.array(descs, pa.string())
    # resource-id pools: P entries per catalogue entry, each split as a + region + b + account + c
    P = 32
    res_rng = random.Random(77)
    words = ["web", "api", "orders", "billing", "search", "ingest", "reports", "auth", "media", "ml",
             "etl", "cache", "events", "users", "logs", "backup"]
    a_parts, b_parts, c_parts, has_arn = [], [], [], []
    for cat in _CATALOG:
        kind = cat["res"]
        for i in range(P):
            hx = "0" + "".join(res_rng.choice("0123456789abcdef") for _ in range(16))
            word = words[i % len(words)]
            a = b = c = ""
            arn = False
            if kind == "ec2":
                a = "i-" + hx
            elif kind == "vol":
                a = "vol-" + hx
            elif kind == "vpce":
                a = "vpce-" + hx
            elif kind == "s3":
                a = f"acme-{word}-{i // len(words) + 1}"
            elif kind == "nat":
                a, b, c, arn = "arn:aws:ec2:", ":", f":natgateway/nat-{hx}", True
            elif kind == "rds":
                a, b, c, arn = "arn:aws:rds:", ":", f":db:{word}-db-{i % 3 + 1}", True
            elif kind == "lambda":
                a, b, c, arn = "arn:aws:lambda:", ":", f":function:{word}-handler", True
            elif kind == "elb":
                a, b, c, arn = "arn:aws:elasticloadbalancing:", ":", f":loadbalancer/app/{word}-alb/{hx[1:]}", True
            elif kind == "ddb":
                a, b, c, arn = "arn:aws:dynamodb:", ":", f":table/{word}", True
            elif kind == "r53":
                a = "arn:aws:route53:::hostedzone/Z" + hx[1:14].upper()
            a_parts.append(a or None)
            b_parts.append(b)
            c_parts.append(c)
            has_arn.append(arn)
    t["res_a"] = pa.array(a_parts, pa.string())
    t["res_b"] = pa.array(b_parts, pa.string())
    t["res_c"] = pa.array(c_parts, pa.string())
    t["res_arn"] = pa.array(has_arn)
    t["res_pool"] = pa.scalar(P, pa.int32())
    return t


# --------------------------------------------------------------------------------------------
# Billing periods and keys
# --------------------------------------------------------------------------------------------


def _period_bounds(period: str) -> tuple[date, date]:
    if not re.fullmatch(r"\d{4}-\d{2}", period):
        raise ValueError(f"billing period must look like YYYY-MM, got {period!r}")
    y, m = int(period[:4]), int(period[5:7])
    if not 1 <= m <= 12:
        raise ValueError(f"bad month in {period!r}")
    start = date(y, m, 1)
    end = date(y + (m == 12), m % 12 + 1, 1)
    return start, end


def _epoch(d: date) -> int:
    return calendar.timegm(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timetuple())


def _norm_prefix(prefix: str) -> str:
    return (prefix or "").strip("/")


def _key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def v1_parquet_name(header: str) -> str:
    """Athena-style column name for a CUR v1 ``category/Name`` header.

    ``lineItem/UnblendedCost`` -> ``line_item_unblended_cost``;
    ``savingsPlan/SavingsPlanARN`` -> ``savings_plan_savings_plan_a_r_n``;
    ``resourceTags/user:Cost Center`` -> ``resource_tags_user_cost_center``.
    """
    out = []
    for ch in header:
        if ch.isupper():
            out.append("_" + ch.lower())
        elif ch.isalnum():
            out.append(ch)
        else:
            out.append("_")
    return re.sub(r"_+", "_", "".join(out)).strip("_")


# --------------------------------------------------------------------------------------------
# The row generator (shared by v1 and v2)
# --------------------------------------------------------------------------------------------


def _generate_frame(n: int, period: str, material: tuple, *, granularity_hours: int, invoice_open: bool) -> dict:
    """Generate ``n`` line items of one period as a dict of logical (CUR 2.0-named) columns.

    Keys without suffix are pa.string arrays (null = missing); ``<name>@ts`` are int64 epoch seconds
    (on whole hours of the period); ``<name>@dec`` are int64 arrays of 1e-10 dollars (null = missing);
    ``tag:<key>`` / ``cc:<key>`` feed the resource tag / cost category columns; ``_``-keys are internal.
    """
    T = _catalog_tables()
    rng = _Rng(n, *material)
    start, end = _period_bounds(period)
    p_start, p_end = _epoch(start), _epoch(end)
    f: dict[str, pa.Array] = {}

    # --- line item type and catalogue entry --------------------------------------------------
    type_idx = rng.weighted("type", _LINE_ITEM_TYPE_WEIGHTS)
    line_type = pa.array(_LINE_ITEM_TYPES, pa.string()).take(type_idx)
    usage_like = pc.less(type_idx, 3)
    is_disc = pc.equal(type_idx, 1)
    is_sp = pc.equal(type_idx, 2)
    is_tax = pc.equal(type_idx, 3)
    is_credit = pc.equal(type_idx, 4)
    is_fee = pc.equal(type_idx, 5)

    def draw(name, key):
        weights = [c[key] for c in _CATALOG]
        return rng.weighted(name, weights)

    cat_usage = draw("cat_usage", "w")
    cat = pc.choose(type_idx, cat_usage, draw("cat_ri", "ri"), draw("cat_sp", "sp"),
                    cat_usage, cat_usage, draw("cat_fee", "fee"))
    cat = pc.cast(cat, pa.int32())
    region = rng.weighted("region", [r[3] for r in _REGIONS])
    cr = pc.add(pc.multiply(cat, _NREG), region)
    is_glob = T["glob"].take(cat)
    regional = pc.and_(usage_like, pc.invert(is_glob))
    is_market = T["market"].take(cat)

    # --- accounts and bill ------------------------------------------------------------------
    acct = rng.weighted("account", [a[2] for a in _ACCOUNTS])
    acct = pc.if_else(is_fee, pa.scalar(len(_ACCOUNTS) - 1, pa.int32()), acct)  # fees on the payer
    # the last entry is the payer (management) account; read PAYER_ACCOUNT_ID at call time so tests can change it
    account_id = pa.array([a[0] for a in _ACCOUNTS[:-1]] + [PAYER_ACCOUNT_ID], pa.string()).take(acct)
    f["line_item_usage_account_id"] = account_id
    f["line_item_usage_account_name"] = pa.array([a[1] for a in _ACCOUNTS], pa.string()).take(acct)
    f["bill_payer_account_id"] = pa.repeat(pa.scalar(PAYER_ACCOUNT_ID), n)
    f["bill_payer_account_name"] = pa.repeat(pa.scalar("acme-management"), n)
    inv_entity = pa.array([a[4] for a in _ACCOUNTS], pa.string()).take(acct)
    f["bill_invoicing_entity"] = inv_entity
    f["bill_billing_entity"] = pc.if_else(is_market, "AWS Marketplace", "AWS")
    f["bill_bill_type"] = pc.if_else(pc.and_(is_fee, is_market), "Purchase", "Anniversary")
    inv_aws = str(_seed("invoice", period, "aws") % 9_000_000_000 + 1_000_000_000)
    inv_emea = "EUINIE" + str(_seed("invoice", period, "emea") % 90_000_000 + 10_000_000)
    inv_mkt = str(_seed("invoice", period, "mkt") % 9_000_000_000 + 1_000_000_000)
    invoice = pc.if_else(pc.equal(inv_entity, "Amazon Web Services EMEA SARL"), inv_emea, inv_aws)
    invoice = pc.if_else(is_market, inv_mkt, invoice)
    f["bill_invoice_id"] = pa.nulls(n, pa.string()) if invoice_open else invoice
    f["bill_billing_period_start_date@ts"] = pa.repeat(pa.scalar(p_start, pa.int64()), n)
    f["bill_billing_period_end_date@ts"] = pa.repeat(pa.scalar(p_end, pa.int64()), n)

    # --- time -----------------------------------------------------------------------------
    slot_seconds = granularity_hours * 3600
    slots = max(1, (p_end - p_start) // slot_seconds)
    slot = pc.cast(rng.randint("slot", slots), pa.int64())
    u_start = pc.add(pc.multiply(slot, slot_seconds), p_start)
    u_start = pc.if_else(usage_like, u_start, p_start)
    u_end = pc.if_else(usage_like, pc.add(u_start, slot_seconds), p_end)
    f["line_item_usage_start_date@ts"] = u_start
    f["line_item_usage_end_date@ts"] = u_end
    f["_period_epochs"] = (p_start, p_end)
    # identity/TimeInterval strings come from a small lookup table (one entry per slot + month)
    fmt = [_fmt_epoch(p_start + k * slot_seconds) for k in range(slots + 1)]
    interval_table = [f"{fmt[k]}/{fmt[k + 1]}" for k in range(slots)] + [f"{fmt[0]}/{_fmt_epoch(p_end)}"]
    interval_idx = pc.if_else(usage_like, slot, pa.scalar(slots, pa.int64()))
    f["identity_time_interval"] = pa.array(interval_table, pa.string()).take(interval_idx)

    # --- identity ---------------------------------------------------------------------------
    tok_rng = random.Random(_seed(*material, "tokens"))
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    tokens = pa.array(["".join(tok_rng.choice(alphabet) for _ in range(13)) for _ in range(4096)], pa.string())
    f["identity_line_item_id"] = pc.binary_join_element_wise(
        *[tokens.take(rng.randint(f"id{i}", 4096)) for i in range(4)], ""
    )

    # --- product / usage --------------------------------------------------------------------
    code = T["code"].take(cat)
    region_code = _blank(pa.array([r[0] for r in _REGIONS], pa.string()).take(region), regional)
    prefix = pa.array([r[1] for r in _REGIONS], pa.string()).take(region)
    prefix = pc.if_else(is_glob, "", prefix)
    base_usage = T["usage"].take(cat)
    usage_type = pc.binary_join_element_wise(prefix, base_usage, "")
    usage_type = _blank(usage_type, pc.or_(usage_like, is_fee))
    operation = _blank(T["op"].take(cat), pc.or_(usage_like, is_fee))
    letters = rng.choice("az", ["a", "b", "c"], [5, 4, 2])
    az = pc.binary_join_element_wise(region_code, letters, "")
    az = _blank(az, pc.and_(T["az"].take(cat), regional))
    f["line_item_product_code"] = code
    f["line_item_usage_type"] = usage_type
    f["line_item_operation"] = operation
    f["line_item_availability_zone"] = az
    f["line_item_line_item_type"] = line_type
    f["line_item_currency_code"] = pa.repeat(pa.scalar("USD"), n)
    f["product_product_name"] = T["name"].take(cat)
    f["product_servicecode"] = code
    f["product_product_family"] = _blank(T["family"].take(cat), pc.or_(usage_like, is_fee))
    f["product_instance_type"] = _blank(T["itype"].take(cat), usage_like)
    f["product_instance_type_family"] = _blank(T["itype_family"].take(cat), usage_like)
    f["product_operating_system"] = _blank(T["os"].take(cat), usage_like)
    f["product_region_code"] = region_code
    loc = pa.array([r[2] for r in _REGIONS], pa.string()).take(region)
    f["product_location"] = pc.if_else(regional, loc, pc.if_else(usage_like, "Any", _str_null()))
    f["product_location_type"] = pc.if_else(usage_like, "AWS Region", _str_null())
    f["product_sku"] = _blank(T["sku"].take(cr), pc.or_(usage_like, is_fee))
    f["product_usagetype"] = usage_type
    f["product_operation"] = operation

    # resource id
    P = T["res_pool"].as_py()
    pool_idx = pc.add(pc.multiply(cat, P), rng.randint("resource", P))
    res_a, res_b, res_c = T["res_a"].take(pool_idx), T["res_b"].take(pool_idx), T["res_c"].take(pool_idx)
    arn = pc.binary_join_element_wise(res_a, _fill(region_code, "us-east-1"), res_b, account_id, res_c, "")
    resource = pc.if_else(T["res_arn"].take(pool_idx), arn, res_a)
    f["line_item_resource_id"] = _blank(resource, usage_like)

    # --- amounts, rates, costs --------------------------------------------------------------
    g = float(granularity_hours)
    kind = T["kind"].take(cat)
    mu, sigma = T["mu"].take(cat), T["sigma"].take(cat)
    partial = pc.add(pc.multiply(rng.uniform("partial"), 0.98), 0.01)
    hours = pc.multiply(pc.if_else(rng.bernoulli("fullhour", 0.85), 1.0, partial), g)
    logn = pc.multiply(rng.lognormal("usage", mu, sigma), g)
    count = pc.max_element_wise(pc.round(logn), 1.0)
    usage = pc.if_else(pc.equal(kind, "hour"), hours, pc.if_else(pc.equal(kind, "count"), count, logn))
    usage = pc.min_element_wise(usage, 1e5)
    usage_units = _to_units(usage)
    usage_units = pc.if_else(usage_like, usage_units,
                             pc.if_else(is_credit, pa.scalar(0, pa.int64()), pa.scalar(_UNITS, pa.int64())))
    rate_units = _blank(T["rate_units"].take(cr), usage_like)
    rate_units = pc.if_else(is_disc, pa.scalar(0, pa.int64()), rate_units)
    od_rate_units = _blank(T["rate_units"].take(cr), usage_like)
    od_cost = pc.multiply(_units_to_double(usage_units), _units_to_double(od_rate_units))
    od_units = pc.min_element_wise(_to_units(od_cost), pa.scalar(_MAX_COST_UNITS, pa.int64()))

    tax_units = _to_units(rng.lognormal("tax", -0.7, 1.5))
    credit_units = pc.negate(_to_units(rng.lognormal("credit", -1.2, 2.0)))
    fee_units = _to_units(rng.lognormal("fee", 4.6, 0.8))
    cost_units = pc.choose(type_idx, od_units, pa.repeat(pa.scalar(0, pa.int64()), n), od_units,
                           tax_units, credit_units, fee_units)
    cost_units = pc.max_element_wise(pc.min_element_wise(cost_units, pa.scalar(_MAX_COST_UNITS, pa.int64())),
                                     pa.scalar(-_MAX_COST_UNITS, pa.int64()))
    factor_units = _blank(T["factor_units"].take(cat), usage_like)

    # Java-style E notation for some tiny values in the CSV; make sure there is at least one.
    e_mask = rng.bernoulli("enote", 0.6)
    if n and not pc.any(pc.and_(e_mask, pc.and_(pc.greater(pc.abs(cost_units), 0),
                                               pc.less(pc.abs(cost_units), 10**7)))).as_py():
        first = pc.equal(_arange(n), 0)
        cost_units = pc.if_else(first, pa.scalar(9984, pa.int64()), cost_units)
        e_mask = pc.or_(e_mask, first)
    f["_e_mask"] = e_mask
    f["_usage_like"] = usage_like

    f["line_item_usage_amount@dec"] = usage_units
    f["line_item_normalization_factor@dec"] = factor_units
    f["line_item_normalized_usage_amount@dec"] = _blank(
        _to_units(pc.multiply(_units_to_double(usage_units), _units_to_double(factor_units))), usage_like)
    f["line_item_unblended_rate@dec"] = rate_units
    f["line_item_unblended_cost@dec"] = cost_units
    f["line_item_blended_rate@dec"] = rate_units
    f["line_item_blended_cost@dec"] = cost_units

    has_discount = pc.and_(pc.equal(type_idx, 0), rng.bernoulli("discount", 0.25))
    discount_units = _blank(pc.negate(_scale_units(cost_units, 0.03)), has_discount)
    f["_discount_total"] = discount_units
    f["line_item_net_unblended_cost@dec"] = pc.add(cost_units, _fill_int(discount_units))
    f["line_item_net_unblended_rate@dec"] = pc.if_else(has_discount, _scale_units(rate_units, 0.97), rate_units)

    # descriptions, tax, legal entity
    desc = T["desc_cr"].take(cr)
    desc = pc.if_else(is_disc, T["ri_desc"].take(cat), desc)
    desc = pc.if_else(is_tax, pc.binary_join_element_wise("Tax for product code ", code, ""), desc)
    desc = pc.if_else(is_credit, "AWS Promotional Credit", desc)
    f["line_item_line_item_description"] = desc
    emea = pc.equal(inv_entity, "Amazon Web Services EMEA SARL")
    f["line_item_tax_type"] = _blank(pc.if_else(emea, "VAT", "Sales Tax"), is_tax)
    f["line_item_legal_entity"] = pc.if_else(is_market, _MARKET_SELLER, inv_entity)

    # --- pricing ----------------------------------------------------------------------------
    f["pricing_currency"] = _blank(pa.repeat(pa.scalar("USD"), n), usage_like)
    f["pricing_public_on_demand_cost@dec"] = od_units
    f["pricing_public_on_demand_rate@dec"] = od_rate_units
    f["pricing_term"] = pc.if_else(is_disc, "Reserved", pc.if_else(usage_like, "OnDemand", _str_null()))
    f["pricing_unit"] = _blank(T["unit"].take(cat), usage_like)
    f["pricing_purchase_option"] = _blank(pa.repeat(pa.scalar("No Upfront"), n), is_disc)
    f["pricing_lease_contract_length"] = _blank(pa.repeat(pa.scalar("1yr"), n), is_disc)
    f["pricing_offering_class"] = _blank(pa.repeat(pa.scalar("standard"), n), is_disc)

    # --- reservations and savings plans ----------------------------------------------------
    ri_pool = [(f"arn:aws:ec2:us-east-1:{PAYER_ACCOUNT_ID}:reserved-instances/{_uuid('ri', i)}",
                f"2023-{3 * i + 1:02d}-15T10:00:00.000Z", f"2024-{3 * i + 1:02d}-15T10:00:00.000Z") for i in range(3)]
    ri_idx = rng.randint("ri", len(ri_pool))
    f["reservation_reservation_a_r_n"] = _blank(pa.array([r[0] for r in ri_pool]).take(ri_idx), is_disc)
    f["reservation_start_time"] = _blank(pa.array([r[1] for r in ri_pool]).take(ri_idx), is_disc)
    f["reservation_end_time"] = _blank(pa.array([r[2] for r in ri_pool]).take(ri_idx), is_disc)
    ri_eff = _scale_units(od_units, 0.62)
    ri_amort = _scale_units(od_units, 0.25)
    f["reservation_effective_cost@dec"] = _blank(ri_eff, is_disc)
    f["reservation_amortized_upfront_cost_for_usage@dec"] = _blank(ri_amort, is_disc)
    f["reservation_recurring_fee_for_usage@dec"] = _blank(pc.subtract(ri_eff, ri_amort), is_disc)

    sp_pool = [f"arn:aws:savingsplans::{PAYER_ACCOUNT_ID}:savingsplan/{_uuid('sp', i)}" for i in range(2)]
    f["savings_plan_savings_plan_a_r_n"] = _blank(pa.array(sp_pool).take(rng.randint("sp", 2)), is_sp)
    sp_eff = _blank(_scale_units(od_units, 0.72), is_sp)
    f["savings_plan_savings_plan_rate@dec"] = _blank(_scale_units(od_rate_units, 0.72), is_sp)
    f["savings_plan_savings_plan_effective_cost@dec"] = sp_eff
    f["savings_plan_net_savings_plan_effective_cost@dec"] = sp_eff
    f["savings_plan_used_commitment@dec"] = sp_eff
    f["savings_plan_total_commitment_to_date@dec"] = sp_eff

    # --- tags and cost categories (only on usage lines) ---------------------------------------
    env = pa.array([a[3] or None for a in _ACCOUNTS], pa.string()).take(acct)
    env_alt = rng.choice("env_alt", ["development", "test", "production"])
    env = pc.if_else(rng.bernoulli("env_noise", 0.05), env_alt, env)
    tagged = pc.and_(usage_like, pc.invert(rng.bernoulli("untagged", 0.2)))
    f["tag:user_environment"] = _blank(env, tagged)
    cc = rng.choice("costcenter", ["CC-1001", "CC-1002", "CC-2040", "CC-3100", None], [30, 20, 15, 10, 25])
    f["tag:user_cost_center"] = _blank(cc, tagged)
    teams = ["platform", "data", "web", "ml", "security"]
    team_idx = rng.weighted("team", [30, 25, 25, 10, 5])
    team = _blank(pa.array(teams, pa.string()).take(team_idx), pc.and_(tagged, pc.invert(rng.bernoulli("noteam", 0.1))))
    f["tag:user_team"] = team
    units_by_team = pa.array(["Shared Services", "Data & Analytics", "Digital", "Data & Analytics", "Shared Services"],
                             pa.string()).take(team_idx)
    f["cc:business_unit"] = pc.if_else(pc.is_valid(team), units_by_team, _blank(
        pa.repeat(pa.scalar("Unallocated"), n), usage_like))
    return f


def _fill_int(arr: pa.Array) -> pa.Array:
    return pc.fill_null(arr, pa.scalar(0, pa.int64()))


def _extra_values(n: int, material: tuple, name: str, usage_like: pa.Array) -> pa.Array:
    rng = _Rng(n, *material, "extra", name)
    slug = re.sub(r"[^a-z0-9]+", "-", name.split(":")[-1].split("/")[-1].lower()).strip("-") or "value"
    pool = [f"{slug}-{i}" for i in range(1, 6)]
    vals = rng.choice("v", pool, [40, 25, 15, 12, 8])
    return _blank(vals, pc.and_(usage_like, pc.invert(rng.bernoulli("empty", 0.3))))


# --------------------------------------------------------------------------------------------
# CUR v1
# --------------------------------------------------------------------------------------------

_V1_COLUMNS: list[tuple[str, str, str]] = [  # header, manifest type, logical column
    ("identity/LineItemId", "String", "identity_line_item_id"),
    ("identity/TimeInterval", "Interval", "identity_time_interval"),
    ("bill/InvoiceId", "OptionalString", "bill_invoice_id"),
    ("bill/InvoicingEntity", "OptionalString", "bill_invoicing_entity"),
    ("bill/BillingEntity", "OptionalString", "bill_billing_entity"),
    ("bill/BillType", "OptionalString", "bill_bill_type"),
    ("bill/PayerAccountId", "String", "bill_payer_account_id"),
    ("bill/BillingPeriodStartDate", "DateTime", "bill_billing_period_start_date@ts"),
    ("bill/BillingPeriodEndDate", "DateTime", "bill_billing_period_end_date@ts"),
    ("lineItem/UsageAccountId", "String", "line_item_usage_account_id"),
    ("lineItem/LineItemType", "String", "line_item_line_item_type"),
    ("lineItem/UsageStartDate", "DateTime", "line_item_usage_start_date@ts"),
    ("lineItem/UsageEndDate", "DateTime", "line_item_usage_end_date@ts"),
    ("lineItem/ProductCode", "String", "line_item_product_code"),
    ("lineItem/UsageType", "OptionalString", "line_item_usage_type"),
    ("lineItem/Operation", "OptionalString", "line_item_operation"),
    ("lineItem/AvailabilityZone", "OptionalString", "line_item_availability_zone"),
    ("lineItem/ResourceId", "OptionalString", "line_item_resource_id"),
    ("lineItem/UsageAmount", "OptionalBigDecimal", "line_item_usage_amount@dec"),
    ("lineItem/NormalizationFactor", "OptionalBigDecimal", "line_item_normalization_factor@dec"),
    ("lineItem/NormalizedUsageAmount", "OptionalBigDecimal", "line_item_normalized_usage_amount@dec"),
    ("lineItem/CurrencyCode", "String", "line_item_currency_code"),
    ("lineItem/UnblendedRate", "OptionalBigDecimal", "line_item_unblended_rate@dec"),
    ("lineItem/UnblendedCost", "BigDecimal", "line_item_unblended_cost@dec"),
    ("lineItem/BlendedRate", "OptionalBigDecimal", "line_item_blended_rate@dec"),
    ("lineItem/BlendedCost", "BigDecimal", "line_item_blended_cost@dec"),
    ("lineItem/LineItemDescription", "OptionalString", "line_item_line_item_description"),
    ("lineItem/TaxType", "OptionalString", "line_item_tax_type"),
    ("lineItem/LegalEntity", "OptionalString", "line_item_legal_entity"),
    ("product/ProductName", "OptionalString", "product_product_name"),
    ("product/instanceType", "OptionalString", "product_instance_type"),
    ("product/instanceTypeFamily", "OptionalString", "product_instance_type_family"),
    ("product/location", "OptionalString", "product_location"),
    ("product/locationType", "OptionalString", "product_location_type"),
    ("product/operatingSystem", "OptionalString", "product_operating_system"),
    ("product/productFamily", "OptionalString", "product_product_family"),
    ("product/region", "OptionalString", "product_region_code"),
    ("product/servicecode", "OptionalString", "product_servicecode"),
    ("product/sku", "OptionalString", "product_sku"),
    ("product/usagetype", "OptionalString", "product_usagetype"),
    ("product/operation", "OptionalString", "product_operation"),
    ("pricing/currency", "OptionalString", "pricing_currency"),
    ("pricing/publicOnDemandCost", "OptionalBigDecimal", "pricing_public_on_demand_cost@dec"),
    ("pricing/publicOnDemandRate", "OptionalBigDecimal", "pricing_public_on_demand_rate@dec"),
    ("pricing/term", "OptionalString", "pricing_term"),
    ("pricing/unit", "OptionalString", "pricing_unit"),
    ("reservation/ReservationARN", "OptionalString", "reservation_reservation_a_r_n"),
    ("reservation/EffectiveCost", "OptionalBigDecimal", "reservation_effective_cost@dec"),
    ("reservation/AmortizedUpfrontCostForUsage", "OptionalBigDecimal",
     "reservation_amortized_upfront_cost_for_usage@dec"),
    ("reservation/RecurringFeeForUsage", "OptionalBigDecimal", "reservation_recurring_fee_for_usage@dec"),
    ("reservation/StartTime", "OptionalString", "reservation_start_time"),
    ("reservation/EndTime", "OptionalString", "reservation_end_time"),
    ("savingsPlan/SavingsPlanARN", "OptionalString", "savings_plan_savings_plan_a_r_n"),
    ("savingsPlan/SavingsPlanRate", "OptionalBigDecimal", "savings_plan_savings_plan_rate@dec"),
    ("savingsPlan/SavingsPlanEffectiveCost", "OptionalBigDecimal", "savings_plan_savings_plan_effective_cost@dec"),
    ("savingsPlan/UsedCommitment", "OptionalBigDecimal", "savings_plan_used_commitment@dec"),
    ("savingsPlan/TotalCommitmentToDate", "OptionalBigDecimal", "savings_plan_total_commitment_to_date@dec"),
    ("resourceTags/user:Environment", "OptionalString", "tag:user_environment"),
    ("resourceTags/user:Cost Center", "OptionalString", "tag:user_cost_center"),
    ("resourceTags/user:Team", "OptionalString", "tag:user_team"),
    ("costCategory/Business Unit", "OptionalString", "cc:business_unit"),
]

_V1_EXT = {("csv", "gzip"): ".csv.gz", ("csv", "zip"): ".csv.zip", ("csv", "none"): ".csv",
           ("parquet", "gzip"): ".snappy.parquet", ("parquet", "zip"): ".snappy.parquet",
           ("parquet", "none"): ".snappy.parquet"}
_V1_COMPRESSION = {"gzip": "GZIP", "zip": "ZIP", "none": "NONE"}
_V1_DATA_RE = r"-\d+\.(csv\.gz|csv\.zip|csv|snappy\.parquet)$"


def _fmt_epoch(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _v1_ts(col: pa.Array, period_epochs: tuple[int, int]) -> pa.Array:
    """Format epoch seconds on whole hours of the period as ``2024-01-01T00:00:00Z`` (lookup, fast)."""
    p_start, p_end = period_epochs
    table = pa.array([_fmt_epoch(t) for t in range(p_start, p_end + 1, 3600)], pa.string())
    return table.take(pc.divide(pc.subtract(col, p_start), 3600))


def _v1_columns(extra_columns: list[str] | None) -> list[tuple[str, str, str]]:
    cols = list(_V1_COLUMNS)
    known = {h for h, _t, _l in cols}
    for h in extra_columns or []:
        if h in known:
            continue
        known.add(h)
        if "/" not in h:
            raise ValueError(f"CUR v1 extra column must look like category/Name, got {h!r}")
        cols.append((h, "OptionalString", "extra:" + h))
    return cols


def _csv_field(col: pa.Array) -> pa.Array:
    col = _fill(col)
    needs = pc.match_substring_regex(col, r'[",\r\n]')
    if not pc.any(needs).as_py():
        return col
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, col)


def _csv_bytes(headers: list[str], columns: list[pa.Array]) -> bytes:
    header = ",".join('"' + h.replace('"', '""') + '"' if re.search(r'[",\r\n]', h) else h for h in headers)
    out = [header.encode() + b"\n"]
    n = len(columns[0]) if columns else 0
    step = 200_000
    for off in range(0, n, step):
        fields = [_csv_field(c.slice(off, step)) for c in columns]
        rows = pc.binary_join_element_wise(*fields, ",")
        rows = pc.binary_join_element_wise(rows, "", "\n")
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        bufs = rows.buffers()
        offsets = pa.Array.from_buffers(pa.int32(), len(rows) + 1, [None, bufs[1]], offset=rows.offset)
        lo, hi = offsets[0].as_py(), offsets[len(rows)].as_py()
        out.append(bufs[2][lo:hi].to_pybytes())
    return b"".join(out)


def _v1_string_table(frame: dict, cols, n: int) -> list[pa.Array]:
    out = []
    e_mask = frame["_e_mask"]
    for _h, _t, logical in cols:
        col = frame[logical]
        if logical.endswith("@ts"):
            col = _v1_ts(col, frame["_period_epochs"])
        elif logical.endswith("@dec"):
            col = _fmt_units(col, e_mask)
        out.append(_fill(col))
    return out


def _v1_arrow_table(frame: dict, cols, n: int) -> pa.Table:
    arrays, names = [], []
    for header, _t, logical in cols:
        col = frame[logical]
        if logical.endswith("@ts"):
            col = pc.cast(pc.multiply(col, 1000), pa.timestamp("ms", tz="UTC"))
        elif logical.endswith("@dec"):
            col = _units_to_double(col)
        arrays.append(col)
        names.append(v1_parquet_name(header))
    return pa.Table.from_arrays(arrays, names=names)


def write_cur1_export(root: Path, *, prefix: str, export_name: str, periods: list[str], rows_per_period: int,
                      parts: int = 2, seed: int = 1, layout: str = "create-new",
                      compression: str = "gzip", fmt: str = "csv",
                      assembly_ids: dict[str, str] | None = None,
                      extra_columns: list[str] | None = None) -> ExportTruth:
    """Write a legacy CUR (v1) export for ``periods`` under ``root`` (the bucket root).

    ``layout`` is ``"create-new"`` (data under ``<period>/<assemblyId>/``, older assemblies kept)
    or ``"overwrite"`` (data directly in the period folder, older parts deleted).
    ``compression`` is ``gzip`` / ``zip`` / ``none`` for CSV; it is ignored for ``fmt="parquet"``
    (Snappy-compressed ``.snappy.parquet`` files with Athena-style column names).
    ``extra_columns`` adds ``category/Name`` string columns (e.g. ``resourceTags/user:Owner``).
    The last period of ``periods`` is treated as the open month: its ``bill/InvoiceId`` is empty.
    """
    root = Path(root)
    if layout not in ("create-new", "overwrite"):
        raise ValueError("layout must be 'create-new' or 'overwrite'")
    if compression not in ("gzip", "zip", "none"):
        raise ValueError("compression must be 'gzip', 'zip' or 'none'")
    if fmt not in ("csv", "parquet"):
        raise ValueError("fmt must be 'csv' or 'parquet'")
    if parts < 1:
        raise ValueError("parts must be >= 1")
    prefix = _norm_prefix(prefix)
    cols = _v1_columns(extra_columns)
    ext = _V1_EXT[(fmt, compression)]
    truth = ExportTruth(export_name=export_name, cur_version="v1", prefix=prefix, periods={})
    report_id = hashlib.sha256(f"report:{prefix}:{export_name}".encode()).hexdigest()
    manifest_columns = [{"category": h.split("/", 1)[0], "name": h.split("/", 1)[1], "type": t} for h, t, _l in cols]
    for i, period in enumerate(periods):
        start, end = _period_bounds(period)
        assembly_id = (assembly_ids or {}).get(period) or _uuid("assembly", seed, prefix, export_name, period)
        material = (seed, "v1", export_name, period, assembly_id)
        n = rows_per_period
        frame = _generate_frame(n, period, material, granularity_hours=1, invoice_open=(i == len(periods) - 1))
        usage_like = frame["_usage_like"]
        for h, _t, logical in cols:
            if logical.startswith("extra:"):
                frame[logical] = _extra_values(n, material, h, usage_like)

        period_dir = _key(prefix, export_name, f"{start:%Y%m%d}-{end:%Y%m%d}")
        if layout == "create-new":
            data_dir = _key(period_dir, assembly_id)
            if (root / data_dir).exists():
                shutil.rmtree(root / data_dir)
        else:
            data_dir = period_dir
            pdir = root / period_dir
            if pdir.is_dir():
                pat = re.compile(re.escape(export_name) + _V1_DATA_RE)
                for child in pdir.iterdir():
                    if child.is_file() and pat.fullmatch(child.name):
                        child.unlink()
        (root / data_dir).mkdir(parents=True, exist_ok=True)

        if fmt == "csv":
            str_cols = _v1_string_table(frame, cols, n)
        else:
            table = _v1_arrow_table(frame, cols, n)
        keys = []
        bounds = [n * p // parts for p in range(parts + 1)]
        for p in range(parts):
            lo, hi = bounds[p], bounds[p + 1]
            name = f"{export_name}-{p + 1}{ext}"
            key = _key(data_dir, name)
            path = root / key
            if fmt == "parquet":
                pq.write_table(table.slice(lo, hi - lo), path, compression="snappy")
            else:
                data = _csv_bytes([h for h, _t, _l in cols], [c.slice(lo, hi - lo) for c in str_cols])
                if compression == "gzip":
                    with open(path, "wb") as fh, gzip.GzipFile(
                        filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=6
                    ) as gz:
                        gz.write(data)
                elif compression == "zip":
                    info = zipfile.ZipInfo(f"{export_name}-{p + 1}.csv",
                                           date_time=(start.year, start.month, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with zipfile.ZipFile(path, "w") as zf:
                        zf.writestr(info, data)
                else:
                    path.write_bytes(data)
            keys.append(key)

        manifest = {
            "assemblyId": assembly_id,
            "account": PAYER_ACCOUNT_ID,
            "columns": manifest_columns,
            "charset": "UTF-8",
            "compression": "Parquet" if fmt == "parquet" else _V1_COMPRESSION[compression],
            "contentType": "Parquet" if fmt == "parquet" else "text/csv",
            "reportId": report_id,
            "reportName": export_name,
            "billingPeriod": {"start": f"{start:%Y%m%d}T000000.000Z", "end": f"{end:%Y%m%d}T000000.000Z"},
            "bucket": BUCKET,
            "reportKeys": keys,
            "additionalArtifactKeys": [],
        }
        body = json.dumps(manifest, indent=2).encode()
        manifest_key = _key(period_dir, f"{export_name}-Manifest.json")
        (root / manifest_key).write_bytes(body)
        if layout == "create-new":
            (root / _key(data_dir, f"{export_name}-Manifest.json")).write_bytes(body)
        total = _units_sum(frame["line_item_unblended_cost@dec"])
        truth.periods[period] = PeriodTruth(billing_period=period, rows=n, unblended_cost=total,
                                            version_id=assembly_id, data_keys=keys, manifest_key=manifest_key)
    return truth


def _units_sum(units: pa.Array) -> decimal.Decimal:
    if len(units) == 0:
        return decimal.Decimal(0).scaleb(-SCALE)
    s = pc.sum(pc.cast(_fill_int(units), pa.decimal128(38, 0))).as_py()
    return decimal.Decimal(s).scaleb(-SCALE)


# --------------------------------------------------------------------------------------------
# CUR 2.0
# --------------------------------------------------------------------------------------------

_V2_ORDER = [
    "identity_line_item_id", "identity_time_interval",
    "bill_invoice_id", "bill_invoicing_entity", "bill_billing_entity", "bill_bill_type",
    "bill_payer_account_id", "bill_payer_account_name",
    "bill_billing_period_start_date@ts", "bill_billing_period_end_date@ts",
    "line_item_usage_account_id", "line_item_usage_account_name", "line_item_line_item_type",
    "line_item_usage_start_date@ts", "line_item_usage_end_date@ts", "line_item_product_code",
    "line_item_usage_type", "line_item_operation", "line_item_availability_zone", "line_item_resource_id",
    "line_item_usage_amount@dec", "line_item_normalization_factor@dec", "line_item_normalized_usage_amount@dec",
    "line_item_currency_code", "line_item_unblended_rate@dec", "line_item_unblended_cost@dec",
    "line_item_blended_rate@dec", "line_item_blended_cost@dec", "line_item_net_unblended_rate@dec",
    "line_item_net_unblended_cost@dec", "line_item_line_item_description", "line_item_tax_type",
    "line_item_legal_entity",
    "@product", "product_product_family", "product_servicecode", "product_sku", "product_instance_type",
    "product_instance_type_family", "product_region_code", "product_location", "product_location_type",
    "product_usagetype", "product_operation",
    "pricing_currency", "pricing_public_on_demand_cost@dec", "pricing_public_on_demand_rate@dec",
    "pricing_term", "pricing_unit", "pricing_purchase_option", "pricing_lease_contract_length",
    "pricing_offering_class",
    "reservation_reservation_a_r_n", "reservation_effective_cost@dec",
    "reservation_amortized_upfront_cost_for_usage@dec", "reservation_recurring_fee_for_usage@dec",
    "reservation_start_time", "reservation_end_time",
    "savings_plan_savings_plan_a_r_n", "savings_plan_savings_plan_rate@dec",
    "savings_plan_savings_plan_effective_cost@dec", "savings_plan_net_savings_plan_effective_cost@dec",
    "savings_plan_used_commitment@dec", "savings_plan_total_commitment_to_date@dec",
    "@resource_tags", "@cost_category", "@discount",
]

_PRODUCT_MAP_KEYS = [  # map key, logical column
    ("product_name", "product_product_name"),
    ("region", "product_region_code"),
    ("instance_type", "product_instance_type"),
    ("operating_system", "product_operating_system"),
    ("servicename", "product_product_name"),
]


def _v2_type_name(t: pa.DataType) -> str:
    if pa.types.is_map(t):
        return f"map<{_v2_type_name(t.key_type)},{_v2_type_name(t.item_type)}>"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_string(t):
        return "string"
    return str(t)


def _v2_extra_target(name: str) -> tuple[str, str]:
    """('tag'|'cc'|'col', key) for a v2 extra column name."""
    m = re.fullmatch(r"(resource_tags|resourceTags)[./](.+)", name)
    if m:
        return "tag", v1_parquet_name(m.group(2))
    m = re.fullmatch(r"(cost_category|costCategory)[./](.+)", name)
    if m:
        return "cc", v1_parquet_name(m.group(2))
    return "col", name


def _v2_table(frame: dict, n: int) -> pa.Table:
    arrays, names = [], []
    for logical in _V2_ORDER + [k for k in frame if k.startswith("extra:")]:
        if logical == "@product":
            col = _map_array(n, [key for key, _c in _PRODUCT_MAP_KEYS],
                             [frame[c] for _key, c in _PRODUCT_MAP_KEYS], pa.string())
            name = "product"
        elif logical == "@resource_tags":
            keys = [k for k in frame if k.startswith("tag:")]
            col = _map_array(n, [k[4:] for k in keys], [frame[k] for k in keys], pa.string())
            name = "resource_tags"
        elif logical == "@cost_category":
            keys = [k for k in frame if k.startswith("cc:")]
            col = _map_array(n, [k[3:] for k in keys], [frame[k] for k in keys], pa.string())
            name = "cost_category"
        elif logical == "@discount":
            disc = _units_to_double(frame["_discount_total"])
            col = _map_array(n, ["total_discount"], [disc], pa.float64())
            name = "discount"
        elif logical.endswith("@ts"):
            col = pc.cast(pc.multiply(frame[logical], 1000), pa.timestamp("ms", tz="UTC"))
            name = logical[:-3]
        elif logical.endswith("@dec"):
            col = _units_to_double(frame[logical])
            name = logical[:-4]
        elif logical.startswith("extra:"):
            col, name = frame[logical], logical[6:]
        else:
            col, name = frame[logical], logical
        arrays.append(col)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def write_cur2_export(root: Path, *, prefix: str, export_name: str, periods: list[str], rows_per_period: int,
                      files_per_period: int = 1, seed: int = 1, execution_ids: dict[str, str] | None = None,
                      extra_columns: list[str] | None = None, row_group_size: int = 100_000) -> ExportTruth:
    """Write a CUR 2.0 (Data Exports) export for ``periods`` under ``root`` (the bucket root).

    Data files go to ``<prefix>/<export>/data/BILLING_PERIOD=YYYY-MM/`` and the manifest to
    ``<prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json``. Writing a period
    again replaces its data files and manifest (the "overwrite" behaviour of Data Exports).

    ``extra_columns``: ``resource_tags/<key>`` (or ``resourceTags/user:Key``) adds a key to the
    ``resource_tags`` map, ``cost_category/<key>`` one to ``cost_category``; any other name adds a
    top-level string column. Line items are daily (CUR 2.0 export with daily granularity).
    """
    root = Path(root)
    if files_per_period < 1:
        raise ValueError("files_per_period must be >= 1")
    prefix = _norm_prefix(prefix)
    truth = ExportTruth(export_name=export_name, cur_version="v2", prefix=prefix, periods={})
    arn_hex = hashlib.sha256(f"export:{prefix}:{export_name}".encode()).hexdigest()[:8]
    export_arn = f"arn:aws:bcm-data-exports:us-east-1:{PAYER_ACCOUNT_ID}:export/{export_name}-{arn_hex}"
    for i, period in enumerate(periods):
        start, end = _period_bounds(period)
        execution_id = (execution_ids or {}).get(period) or _uuid("execution", seed, prefix, export_name, period)
        material = (seed, "v2", export_name, period, execution_id)
        n = rows_per_period
        frame = _generate_frame(n, period, material, granularity_hours=24, invoice_open=(i == len(periods) - 1))
        usage_like = frame["_usage_like"]
        for name in extra_columns or []:
            target, key = _v2_extra_target(name)
            logical = {"tag": "tag:", "cc": "cc:", "col": "extra:"}[target] + key
            if logical not in frame:
                frame[logical] = _extra_values(n, material, name, usage_like)
        table = _v2_table(frame, n)

        data_dir = _key(prefix, export_name, "data", f"BILLING_PERIOD={period}")
        ddir = root / data_dir
        if ddir.is_dir():
            for child in ddir.iterdir():
                if child.is_file():
                    child.unlink()
        ddir.mkdir(parents=True, exist_ok=True)
        keys = []
        bounds = [n * p // files_per_period for p in range(files_per_period + 1)]
        for p in range(files_per_period):
            key = _key(data_dir, f"{export_name}-{p + 1:05d}.snappy.parquet")
            pq.write_table(table.slice(bounds[p], bounds[p + 1] - bounds[p]), root / key,
                           compression="snappy", row_group_size=max(1, row_group_size))
            keys.append(key)
        manifest = {
            "version": "2.0",
            "executionId": execution_id,
            "exportArn": export_arn,
            "exportName": export_name,
            "billingPeriod": {"start": f"{start:%Y-%m-%d}T00:00:00.000Z", "end": f"{end:%Y-%m-%d}T00:00:00.000Z"},
            "dataFiles": [f"s3://{BUCKET}/{k}" for k in keys],
            "columns": [{"name": fld.name, "type": _v2_type_name(fld.type)} for fld in table.schema],
            "dataFormat": "parquet",
            "compression": "PARQUET",
        }
        manifest_key = _key(prefix, export_name, "metadata", f"BILLING_PERIOD={period}", f"{export_name}-Manifest.json")
        (root / manifest_key).parent.mkdir(parents=True, exist_ok=True)
        (root / manifest_key).write_text(json.dumps(manifest, indent=2))
        truth.periods[period] = PeriodTruth(billing_period=period, rows=n,
                                            unblended_cost=_units_sum(frame["line_item_unblended_cost@dec"]),
                                            version_id=execution_id, data_keys=keys, manifest_key=manifest_key)
    return truth


# --------------------------------------------------------------------------------------------
# Demo data
# --------------------------------------------------------------------------------------------

_DEFAULT_OUT = Path(__file__).resolve().parent / "sample-exports"
_DEMO_ENTRIES = {"cur", "exports", "README.md"}


def _write_readme(out: Path, v1: ExportTruth, v2: ExportTruth) -> None:
    def rows(t: ExportTruth) -> str:
        lines = []
        for p in t.periods.values():
            lines.append(f"| `{t.export_name}` | {p.billing_period} | {p.rows:,} | {p.unblended_cost} "
                         f"| `{p.version_id}` |")
        return "\n".join(lines)

    text = f"""# Sample AWS billing exports (synthetic)

This folder is laid out exactly like an S3 bucket (this folder is the bucket root, the manifests
name the bucket `{BUCKET}`). It holds two exports for the billing periods 2024-01 and 2024-02:

- `cur/legacy-cur/` - a legacy **Cost and Usage Report (CUR v1)**: gzip CSV with `category/Name`
  headers, "create new report version" layout (`<YYYYMMDD-YYYYMMDD>/<assemblyId>/legacy-cur-<n>.csv.gz`,
  2 parts per period, a current manifest per period and a copy next to the data).
- `exports/cur2-daily/` - a **CUR 2.0 (Data Exports)** export: Snappy Parquet with snake_case
  columns and the map columns `product`, `resource_tags`, `cost_category` and `discount`
  (`data/BILLING_PERIOD=YYYY-MM/cur2-daily-00001.snappy.parquet` and
  `metadata/BILLING_PERIOD=YYYY-MM/cur2-daily-Manifest.json`).

**All data here is synthetic.** It was made by a random generator; no row comes from a real AWS
account or from a third-party file, so no third-party licence applies. Account IDs, ARNs,
resource IDs, invoice IDs and the Marketplace seller are made up. Prices are loosely based on
public AWS list prices. Quirks of real exports are reproduced on purpose: account IDs with
leading zeros, tiny costs written in E notation (`9.984E-7`), negative credits, empty
`bill/InvoiceId` for the open month (2024-02), a tag column with a space (`resourceTags/user:Cost Center`)
and fields quoted because they contain commas.

## Regenerate

```sh
python examples/generate_samples.py            # wipes and rewrites examples/sample-exports/
python examples/generate_samples.py --help
```

The output is deterministic (same bytes every run).

## Ground truth

`unblended cost` is the exact sum of `lineItem/UnblendedCost` / `line_item_unblended_cost`.

| export | period | rows | unblended cost (USD) | assemblyId / executionId |
|---|---|---|---|---|
{rows(v1)}
{rows(v2)}
"""
    (out / "README.md").write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate the synthetic demo exports (CUR v1 gzip CSV + CUR 2.0 Parquet) "
                    "in a folder laid out like an S3 bucket. The folder is wiped first.")
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT,
                        help=f"output folder (bucket root), default: {_DEFAULT_OUT}")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--force", action="store_true",
                        help="wipe --out even if it holds files other than a previous demo")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists():
        unexpected = sorted(p.name for p in out.iterdir() if p.name not in _DEMO_ENTRIES)
        if unexpected and not args.force:
            print(f"refusing to wipe {out}: it holds {unexpected[:5]} (use --force)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True)
    v1 = write_cur1_export(out, prefix="cur", export_name="legacy-cur", periods=["2024-01", "2024-02"],
                           rows_per_period=1500, parts=2, seed=args.seed, layout="create-new",
                           compression="gzip", fmt="csv")
    v2 = write_cur2_export(out, prefix="exports", export_name="cur2-daily", periods=["2024-01", "2024-02"],
                           rows_per_period=2000, files_per_period=1, seed=args.seed)
    _write_readme(out, v1, v2)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    for t in (v1, v2):
        for p in t.periods.values():
            print(f"{t.cur_version} {t.export_name} {p.billing_period}: {p.rows} rows, "
                  f"unblended {p.unblended_cost} USD, {len(p.data_keys)} file(s)")
    print(f"wrote {out} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
