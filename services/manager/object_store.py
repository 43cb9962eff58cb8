"""The manager's own calls to the snapshot bucket (S3, or an S3-compatible store such as MinIO):
making the bucket `ESS_SNAPSHOT_BUCKET` when the manager starts, and emptying a purged cluster's
prefix `clusters/<id>/` once its retention is over.

Engines write and read their snapshots themselves through their `s3` repositories; this module
owns only what no engine does, and the files of the control plane's own backups (`put`, `get`,
`folders` under `control-plane/`). boto3 blocks, so each call runs in a worker thread. The keys come
from settings as `SecretStr` and are never logged; every failure is an `ObjectStoreError` whose
message says whether the store was unreachable or refused the keys, for the log and the next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from libs.common.settings import BackupsSection

T = TypeVar("T")
# the codes S3 and MinIO answer for keys they do not know, or that may not use the bucket
REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "403"}
MISSING = {"404", "NoSuchBucket", "NotFound"}
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes


class ObjectStoreError(Exception):
    """The store did not do what was asked; the message says why and what to check."""


class ObjectStore:
    def __init__(self, settings: BackupsSection):
        self.bucket = settings.snapshot_bucket
        self._endpoint = settings.snapshot_endpoint or "AWS S3"
        config = Config(
            s3={"addressing_style": "path" if settings.snapshot_path_style else "auto"},
            connect_timeout=settings.snapshot_store_timeout_s, read_timeout=settings.snapshot_store_timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
            # checksums only where S3 requires them: S3-compatible stores differ in the newer ones
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        keys: dict[str, Any] = {}
        if settings.snapshot_access_key and settings.snapshot_secret_key:
            keys = {"aws_access_key_id": settings.snapshot_access_key.get_secret_value(),
                    "aws_secret_access_key": settings.snapshot_secret_key.get_secret_value()}
        # no keys: boto3's default chain (an instance or pod role), as the engines' S3 client does
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=settings.snapshot_endpoint or None, region_name=settings.snapshot_region,
            config=config, **keys)

    async def _call(self, what: str, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), error.get("Message") or exc.response.get(
                "ResponseMetadata", {}).get("HTTPStatusCode", "")
            if code in REFUSED:
                raise ObjectStoreError(
                    f"cannot {what}: the store at {self._endpoint} refused the keys ({code} {message}); check "
                    f"ESS_SNAPSHOT_ACCESS_KEY and ESS_SNAPSHOT_SECRET_KEY and that they may use bucket "
                    f"{self.bucket!r}") from exc
            raise ObjectStoreError(f"cannot {what}: the store at {self._endpoint} answered {code} {message}") from exc
        except NoCredentialsError as exc:
            raise ObjectStoreError(f"cannot {what}: no keys; set ESS_SNAPSHOT_ACCESS_KEY and "
                                   "ESS_SNAPSHOT_SECRET_KEY (or give the manager a role)") from exc
        except EndpointConnectionError as exc:
            raise ObjectStoreError(f"cannot {what}: the store at {self._endpoint} is unreachable ({exc}); "
                                   "check ESS_SNAPSHOT_ENDPOINT") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot {what}: {type(exc).__name__}: {exc}") from exc

    async def ensure_bucket(self) -> bool:
        """Make the bucket unless it is there; True if this call made it."""
        def work() -> bool:
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return False
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in MISSING:
                    raise
            region = self._client.meta.region_name
            where = {} if region in (None, "us-east-1") else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}  # us-east-1 refuses its own name
            try:
                self._client.create_bucket(Bucket=self.bucket, **where)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
                return False  # another manager replica made it a moment ago
            return True

        return await self._call(f"make bucket {self.bucket!r}", work)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; how many went."""
        if not prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r} must end with '/': clusters/c1 would also take clusters/c10")

        def work() -> int:
            deleted = 0
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": DELETE_BATCH})
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise ObjectStoreError(f"cannot delete {len(answer['Errors'])} object(s) under {prefix} in "
                                           f"bucket {self.bucket!r}: {first.get('Key')}: {first.get('Code')} "
                                           f"{first.get('Message')}")
                deleted += len(keys)
            return deleted

        return await self._call(f"empty {prefix} in bucket {self.bucket!r}", work)

    async def put(self, key: str, data: bytes) -> None:
        await self._call(f"write {key} in bucket {self.bucket!r}",
                         lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data))

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; None if there is none by that key."""
        def work() -> bytes | None:
            try:
                return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in MISSING | {"NoSuchKey"}:
                    return None
                raise

        return await self._call(f"read {key} in bucket {self.bucket!r}", work)

    async def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under `prefix` (which ends with '/')."""
        def work() -> list[str]:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/")
            return [p["Prefix"][len(prefix):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]

        return await self._call(f"list {prefix} in bucket {self.bucket!r}", work)
