"""The flags the ``finops aws`` commands share, and how they become ``[aws]`` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

BucketOpt = Annotated[str | None, typer.Option("--bucket", help="S3 bucket holding the exports.", show_default=False)]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="Key prefix in front of the export folders.", show_default=False)]
ExportOpt = Annotated[
    str | None, typer.Option("--export-name", help="Only this export (default: every export found).", show_default=False)
]
VersionOpt = Annotated[
    str | None,
    typer.Option("--cur-version", help="Folder layout, v1 or v2 (default: detected per export; a FOCUS export has "
                                       "v2's).", show_default=False)
]
SourceDirOpt = Annotated[
    Path | None,
    typer.Option("--source-dir", help="A local folder laid out like the bucket; replaces --bucket.", show_default=False),
]
StartOpt = Annotated[str | None, typer.Option("--start-date", help="First billing period, YYYY-MM.", show_default=False)]
EndOpt = Annotated[str | None, typer.Option("--end-date", help="Last billing period, YYYY-MM.", show_default=False)]
PeriodOpt = Annotated[
    str | None, typer.Option("--billing-period", help="Only this period (YYYY-MM).", show_default=False)
]


def aws_settings(bucket: str | None = None, prefix: str | None = None, export_name: str | None = None,
         cur_version: str | None = None, source_dir: Path | None = None, start_date: str | None = None,
         end_date: str | None = None, reset: bool | None = None) -> dict[str, Any]:
    values = {"bucket": bucket, "prefix": prefix, "export_name": export_name, "cur_version": cur_version,
              "source_dir": source_dir, "start_date": start_date, "end_date": end_date, "reset": reset or None}
    return {k: v for k, v in values.items() if v is not None}
