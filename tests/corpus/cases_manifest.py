"""A bad manifest fails its own month (exit 1), names the manifest, and the month keeps its previous version;
the other months, April included, load. Also ``--source-dir`` manifests and files pointing outside the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from tests.corpus.harness import V1, V2, Case, Ctx

FEB = "2024-02"
VERSION_FIELD = {V1: "assemblyId", V2: "executionId"}
FILES_FIELD = {V1: "reportKeys", V2: "dataFiles"}


def _manifest_key(export: str) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.restated[(export, FEB)].manifest_key


def _edit(export: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        ctx.restate(export)
        ctx.edit_manifest(export, change)

    return damage


def _raw(export: str, make: Callable[[bytes], bytes]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        ctx.restate(export)
        ctx.write_manifest(export, make(ctx.manifest(export).read_bytes()))

    return damage


def _case(name: str, export: str, damage: Callable[[Ctx], None], culprit: Any = None, **kw: Any) -> Case:
    tag = "v1" if export == V1 else "v2"
    return Case(id=f"manifest-{tag}-{name}", damage=damage, code=1, culprit=culprit or _manifest_key(export),
                victim=(export, FEB), **kw)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(field, value)


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(field)


def _period_start(export: str, start: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["billingPeriod"]["start"] = start

    return change


def _first_file(export: str, rewrite: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        files = doc[FILES_FIELD[export]]
        files[0] = rewrite(files[0])

    return change


def _v1_dotdot(key: str) -> str:  # cur/legacy-cur/<period>/... -> cur/legacy-cur/../legacy-cur/<period>/...
    head, rest = key.split("/", 2)[:2], key.split("/", 2)[2]
    return f"{head[0]}/{head[1]}/../{head[1]}/{rest}"


def _v2_insert(segment: str) -> Callable[[str], str]:  # s3://bucket/exports/cur2-daily/data/... with a segment
    return lambda uri: uri.replace("/data/", f"/data/{segment}/" if segment else "/data//", 1)


def _duplicate_field(raw: bytes) -> bytes:
    doc = json.loads(raw)
    body = json.dumps(doc)
    return ('{"executionId": "first-of-two", ' + body[1:]).encode()


def _two_buckets(doc: dict[str, Any]) -> None:
    doc["dataFiles"][0] = doc["dataFiles"][0].replace("s3://sample-bucket/", "s3://another-bucket/")


def _latin1(raw: bytes) -> bytes:
    doc = json.loads(raw)
    doc["reportName"] = "legacy-cur (café)"
    return json.dumps(doc, ensure_ascii=False).encode("latin-1")


def _outside_dotdot(ctx: Ctx) -> None:
    """``--source-dir``: a file the manifest names by climbing out of the folder (it exists, with rows)."""
    ctx.restate(V2)
    outside = ctx.workdir / "outside.snappy.parquet"
    outside.write_bytes(ctx.data_file(V2, 0).read_bytes())
    depth = len(ctx.data_file(V2, 0).relative_to(ctx.root).parts) - 1
    ctx.edit_manifest(V2, _first_file(V2, lambda _uri: "../" * (depth + 1) + "outside.snappy.parquet"))


def _outside_symlink_file(ctx: Ctx) -> None:
    """``--source-dir``: a data file that is a symlink to a file outside the folder."""
    ctx.restate(V2)
    path = ctx.data_file(V2, -1)
    outside = ctx.workdir / "outside-target.snappy.parquet"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    os.symlink(outside, path)


def _outside_symlink_manifest(ctx: Ctx) -> None:
    """``--source-dir``: the current manifest is a symlink to a manifest outside the folder."""
    ctx.restate(V1)
    path = ctx.manifest(V1)
    outside = ctx.workdir / "outside-Manifest.json"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    os.symlink(outside, path)


def _absolute_path(ctx: Ctx) -> None:
    """``--source-dir``: an absolute local path (to a real file with rows) in the manifest."""
    ctx.restate(V2)
    outside = ctx.workdir / "abs" / "cur2-daily-00009.snappy.parquet"
    outside.parent.mkdir()
    outside.write_bytes(ctx.data_file(V2, 0).read_bytes())
    ctx.edit_manifest(V2, _first_file(V2, lambda _uri: str(outside)))


CASES: list[Case] = [
    # the manifest disagrees with its folder
    _case("period-disagrees-with-folder", V1, _edit(V1, _period_start(V1, "20240301T000000.000Z"))),
    _case("period-disagrees-with-folder", V2, _edit(V2, _period_start(V2, "2024-03-01T00:00:00.000Z"))),
    _case("period-impossible-date", V2, _edit(V2, _period_start(V2, "2024-02-31T00:00:00.000Z"))),
    # data keys a reader would normalise
    _case("key-dotdot", V1, _edit(V1, _first_file(V1, _v1_dotdot))),
    _case("key-dot", V1, _edit(V1, _first_file(V1, lambda k: k.replace("/restated-0002/", "/./restated-0002/")))),
    _case("key-double-slash", V1, _edit(V1, _first_file(V1, lambda k: k.replace("/restated-0002/", "//restated-0002/")))),
    _case("key-backslash", V1, _edit(V1, _first_file(V1, lambda k: k.replace("/restated-0002/", "\\restated-0002/")))),
    _case("key-dotdot", V2, _edit(V2, _first_file(V2, _v2_insert("..")))),
    _case("key-dot", V2, _edit(V2, _first_file(V2, _v2_insert(".")))),
    _case("key-double-slash", V2, _edit(V2, _first_file(V2, _v2_insert("")))),
    _case("two-buckets", V2, _edit(V2, _two_buckets)),
    # not UTF-8, not JSON, not an object, nested 100,000 deep
    _case("not-utf8-latin1", V1, _raw(V1, _latin1)),
    _case("not-utf8-utf16", V2, _raw(V2, lambda raw: raw.decode().encode("utf-16"))),
    _case("not-json-truncated", V1, _raw(V1, lambda raw: raw[: len(raw) // 2])),
    _case("zero-bytes", V2, _raw(V2, lambda raw: b"")),
    _case("not-an-object-list", V1, _raw(V1, lambda raw: b"[]")),
    _case("not-an-object-null", V1, _raw(V1, lambda raw: b"null")),
    _case("not-an-object-string", V2, _raw(V2, lambda raw: b'"cur2-daily"')),
    _case("not-an-object-number", V2, _raw(V2, lambda raw: b"42")),
    _case("nested-100000-lists", V1, _raw(V1, lambda raw: b"[" * 100_000 + b"]" * 100_000)),
    _case("nested-100000-objects", V2, _raw(V2, lambda raw: b'{"a":' * 100_000 + b"1" + b"}" * 100_000)),
    _case("duplicate-field", V2, _raw(V2, _duplicate_field)),
    # missing fields, wrong types
    _case("no-version-id", V1, _edit(V1, _drop(VERSION_FIELD[V1]))),
    _case("no-version-id", V2, _edit(V2, _drop(VERSION_FIELD[V2]))),
    _case("empty-version-id", V1, _edit(V1, _set(VERSION_FIELD[V1], "  "))),
    _case("no-file-list", V1, _edit(V1, _drop(FILES_FIELD[V1]))),
    _case("no-file-list", V2, _edit(V2, _drop(FILES_FIELD[V2]))),
    _case("file-list-is-a-string", V1, _edit(V1, lambda d: d.__setitem__("reportKeys", d["reportKeys"][0]))),
    _case("file-list-of-numbers", V2, _edit(V2, _set("dataFiles", [1, 2]))),
    _case("version-id-is-a-number", V2, _edit(V2, _set("executionId", 12345))),
    _case("billing-period-is-a-string", V1, _edit(V1, _set("billingPeriod", "2024-02"))),
    _case("columns-is-an-object", V1, _edit(V1, _set("columns", {"name": "lineItem/UnblendedCost"}))),
    # --source-dir: nothing outside the folder is read
    _case("outside-by-dotdot", V2, _outside_dotdot, via="local"),
    _case("outside-by-absolute-path", V2, _absolute_path, via="local",
          culprit=lambda ctx: "cur2-daily-00009.snappy.parquet"),
    _case("outside-symlinked-file", V2, _outside_symlink_file, via="local",
          culprit=lambda ctx: ctx.restated[(V2, FEB)].data_keys[-1]),
    _case("outside-symlinked-manifest", V1, _outside_symlink_manifest, via="local"),
]
