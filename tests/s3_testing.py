"""A real S3 server for the tests: `moto_server` (moto[server] from PyPI) as its own process on a
free port, with key checking on, so wrong keys are refused as S3 refuses them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import json
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
from pydantic import SecretStr

from devrun.supervisor import free_port
from services.manager.settings import ManagerSettings

ALL_OF_S3 = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


@dataclass
class S3Server:
    url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen

    @classmethod
    def start(cls, log_dir: Path) -> S3Server:
        port = free_port()
        moto_server = Path(sys.executable).parent / "moto_server"
        log = open(log_dir / "moto_server.log", "wb")
        process = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "MOTO_CALL_RESET_API": "false"})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"moto_server did not start; see {log_dir / 'moto_server.log'}")
                time.sleep(0.2)
        # a user allowed all of S3, made before keys are checked; from then on every call is checked
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="platform")
        iam.put_user_policy(UserName="platform", PolicyName="s3", PolicyDocument=ALL_OF_S3)
        key = iam.create_access_key(UserName="platform")["AccessKey"]
        httpx.post(f"{url}/moto-api/reset-auth", content=b"0", timeout=5.0).raise_for_status()
        return cls(url, key["AccessKeyId"], key["SecretAccessKey"], process)

    def overrides(self, bucket: str) -> dict:
        """The manager's settings that point it at this store, with its keys."""
        return {"driver": "kubernetes", "snapshot_bucket": bucket, "snapshot_endpoint": self.url,
                "snapshot_access_key": SecretStr(self.access_key), "snapshot_secret_key": SecretStr(self.secret_key)}

    def settings(self, bucket: str, **overrides) -> ManagerSettings:
        """The manager's settings for this store; retention 0: a deleted cluster is due for purge at once."""
        return ManagerSettings(**{**self.overrides(bucket), "deleted_retention_s": 0, **overrides})

    def client(self):
        """What an operator with the store's own tools sees."""
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def keys_in(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
