"""How this process talks to S3: the endpoint and region from the standard AWS environment,
the same settings for boto3 and GDAL (rasterio), a cached client, and S3 errors turned into
one actionable line naming the URI (never the credentials)."""

from __future__ import annotations

import contextlib
import functools
import os
from urllib.parse import urlparse

from raylib.errors import InputError, StorageError


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def gdal_options() -> dict[str, str | int]:
    """GDAL configuration for fast, correct cloud reads (applied via ``rasterio.Env``)."""
    opts = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no LIST per open
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.ovr",
        "GDAL_HTTP_MAX_RETRY": "4",
        "GDAL_HTTP_RETRY_DELAY": "0.5",
        "GDAL_HTTP_TIMEOUT": "60",
        "GDAL_HTTP_CONNECTTIMEOUT": "10",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "VSI_CACHE": "TRUE",  # block cache of one open file
        # No cache that outlives an open file: a process that read a scene once (a notebook,
        # a long-lived worker) must see the new object when the scene is rewritten in place
        # (incremental mapping); re-opening costs one header read per read batch.
        "CPL_VSIL_CURL_NON_CACHED": "/vsis3/",
        "GDAL_CACHEMAX": 256,  # MB; rasterio wants an int here
    }
    ep = endpoint_url()
    if ep:
        u = urlparse(ep if "://" in ep else f"https://{ep}")
        opts["AWS_S3_ENDPOINT"] = u.netloc
        opts["AWS_HTTPS"] = "NO" if u.scheme == "http" else "YES"
        opts["AWS_VIRTUAL_HOSTING"] = "FALSE"
    reg = region()
    if reg:
        opts["AWS_REGION"] = reg
    return opts


@functools.lru_cache(maxsize=1)
def _s3_client_cached(ep: str | None, reg: str | None, key_id: str | None):
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"max_attempts": 10, "mode": "standard"},  # rides out an object-store restart (~1 min)
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if ep else {},
    )
    return boto3.client("s3", endpoint_url=ep, region_name=reg or "us-east-1", config=cfg)


def s3_client():
    """A boto3 S3 client for the current environment (cached per process)."""
    return _s3_client_cached(endpoint_url(), region(), os.environ.get("AWS_ACCESS_KEY_ID"))


@contextlib.contextmanager
def rasterio_env():
    """``rasterio.Env`` with this module's GDAL settings."""
    import rasterio

    with rasterio.Env(**gdal_options()) as env:
        yield env


# --------------------------------------------------------------------------- diagnosis


def client_error_code(exc) -> str:
    """The error code of a botocore ``ClientError`` ('' for others)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def explain_s3_error(exc: Exception, uri: str) -> StorageError | InputError:
    """Turn a boto3/botocore exception into an actionable error that names ``uri``."""
    from botocore.exceptions import (ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError,
                                     ReadTimeoutError)

    ep = endpoint_url() or "the AWS default endpoint"
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"No AWS credentials found to read {uri}.",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role.",
        )
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return StorageError(
            f"Cannot reach the S3 endpoint {ep} for {uri}.",
            "check AWS_ENDPOINT_URL / network access, or that the object store is running.",
        )
    if isinstance(exc, ClientError):
        code = client_error_code(exc)
        if code in ("NoSuchBucket",):
            return StorageError(f"The bucket of {uri} does not exist at {ep}.", "check the bucket name.")
        if code in ("404", "NoSuchKey", "NotFound"):
            return InputError(f"{uri} does not exist.", "check the key or prefix (listing the bucket shows what is there).")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"Access to {uri} was denied ({code}).",
                "check the credentials and that they may read/write this bucket.",
            )
        return StorageError(f"S3 error {code or type(exc).__name__} for {uri}.", "check the URI and credentials.")
    return StorageError(f"Cannot access {uri}: {type(exc).__name__}.", "check the URI, network and credentials.")
