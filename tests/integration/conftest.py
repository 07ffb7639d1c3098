"""Real servers on loopback: an S3 API server (moto's server mode) shared by the session."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_bucket_ids = itertools.count(1)


@dataclass
class S3:
    endpoint: str
    client: object

    def env(self) -> dict[str, str]:
        """What a user would export to point the tool (and boto3) at this S3 API."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def new_bucket(self) -> str:
        name = f"billing-{os.getpid()}-{next(_bucket_ids)}"
        self.client.create_bucket(Bucket=name)
        return name

    def upload_tree(self, root: Path, bucket: str) -> int:
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.client.upload_file(str(path), bucket, path.relative_to(root).as_posix())
                count += 1
        return count

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        keys = [o["Key"] for o in self.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        for key in keys:
            self.client.delete_object(Bucket=bucket, Key=key)

    def sync_tree(self, root: Path, bucket: str) -> None:
        """Make the bucket equal the folder (deletions included), as AWS does on an overwrite delivery."""
        wanted = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                if obj["Key"] not in wanted:
                    self.client.delete_object(Bucket=bucket, Key=obj["Key"])
        self.upload_tree(root, bucket)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing-secret",
        region_name="us-east-1",
    )
    try:
        yield S3(endpoint, client)
    finally:
        server.stop()


@pytest.fixture()
def s3(s3_server: S3) -> S3:
    return s3_server
