"""One place that turns a URI into reads and writes: local paths and ``s3://``.

S3 settings come from the standard AWS environment (``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3`` for a custom endpoint, ``AWS_REGION``, credentials from the
usual chain: environment, ``~/.aws``, instance profile).  The same settings are handed
to boto3, GDAL (rasterio) and pyarrow so that every reader sees the same bucket.
Credentials are never copied into options, logs or error messages. Those settings, the
clients and the diagnosis of S3 errors live in ``io.s3``; storage uses them (and callers
may reach them as ``storage.s3_client``, ``storage.rasterio_env``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from raylib.errors import ConfigError, InputError, StorageError
from raylib.io.s3 import (client_error_code, endpoint_url, explain_s3_error, gdal_options,  # noqa: F401
                          rasterio_env, region, s3_client)

RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Location:
    """A parsed URI: ``scheme`` is ``file`` or ``s3``."""

    scheme: str
    bucket: str  # "" for local paths
    key: str  # S3 key, or the absolute local path

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else self.key

    @property
    def gdal_path(self) -> str:
        return f"/vsis3/{self.bucket}/{self.key}" if self.is_s3 else self.key

    @property
    def arrow_path(self) -> str:
        return f"{self.bucket}/{self.key}".rstrip("/") if self.is_s3 else self.key.rstrip("/") or "/"


def parse(uri: str) -> Location:
    """Parse a local path or an ``s3://bucket/key`` URI."""
    if not isinstance(uri, str) or not uri.strip():
        raise InputError(f"Empty location {uri!r}.", "give a local path or an s3://bucket/key URI.")
    uri = uri.strip()
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InputError(f"{uri!r} has no bucket name.", "write it as s3://bucket/key.")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme and len(parsed.scheme) > 1:  # len 1: a Windows drive letter
        raise InputError(
            f"Unsupported storage scheme {parsed.scheme!r} in {uri!r}.",
            "use a local path or an s3:// URI (for S3-compatible stores set AWS_ENDPOINT_URL).",
        )
    keep_slash = uri.endswith("/")
    path = os.path.abspath(os.path.expanduser(uri))
    return Location("file", "", path + ("/" if keep_slash and not path.endswith("/") else ""))


def join(uri: str, *parts: str) -> str:
    """``uri`` / ``parts``; a part that would leave ``uri`` (``..``, an absolute path) is refused,
    so names taken from scenes or configs cannot write outside the output folder."""
    for part in parts:
        if part.startswith(("/", "\\")) or ".." in part.replace("\\", "/").split("/"):
            raise ConfigError(f"The name {part!r} would leave {uri}.", "use plain file names inside the folder.")
    loc = parse(uri)
    if loc.is_s3:
        return f"s3://{loc.bucket}/" + posixpath.join(loc.key.rstrip("/"), *parts).lstrip("/")
    return os.path.join(loc.key, *parts)


def basename(uri: str) -> str:
    return posixpath.basename(parse(uri).key.rstrip("/"))


# --------------------------------------------------------------------------- S3 settings


def arrow_filesystem(uri: str):
    """``(pyarrow.fs.FileSystem, path)`` for reading/writing Parquet at ``uri``."""
    from pyarrow import fs as pafs

    loc = parse(uri)
    if not loc.is_s3:
        return pafs.LocalFileSystem(), loc.arrow_path
    kwargs: dict = {"region": region() or "us-east-1"}
    ep = endpoint_url()
    if ep:
        u = urlparse(ep if "://" in ep else f"https://{ep}")
        kwargs.update(endpoint_override=u.netloc, scheme=u.scheme or "https")
    return pafs.S3FileSystem(**kwargs), loc.arrow_path


# --------------------------------------------------------------------------- queries


def exists(uri: str) -> bool:
    loc = parse(uri)
    if not loc.is_s3:
        return os.path.exists(loc.key)
    from botocore.exceptions import ClientError

    try:
        s3_client().head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except ClientError as exc:
        if client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise explain_s3_error(exc, uri) from None
    except Exception as exc:  # connection problems
        raise explain_s3_error(exc, uri) from None


_LISTED: dict[str, str] = {}  # S3 URI -> fingerprint, from the listings this process made


def forget_listings() -> None:
    """Fingerprints come from requests made after this (a job calls it as it starts)."""
    _LISTED.clear()


def _s3_fingerprint(size: int, etag: str) -> str:
    return f"size={size};etag={etag.strip(chr(34))}"


def fingerprint(uri: str) -> str:
    """What identifies this version of an object: S3 ETag and size, or a local file's size
    and modification time (ns). A rewritten scene gets a new fingerprint. Objects found by
    ``list_files`` in this process cost no request (a listing carries size and ETag)."""
    loc = parse(uri)
    if not loc.is_s3:
        st = os.stat(loc.key)
        return f"size={st.st_size};mtime_ns={st.st_mtime_ns}"
    if loc.uri in _LISTED:
        return _LISTED[loc.uri]
    try:
        head = s3_client().head_object(Bucket=loc.bucket, Key=loc.key)
    except Exception as exc:
        raise explain_s3_error(exc, uri) from None
    return _s3_fingerprint(head["ContentLength"], head.get("ETag", ""))


def check_bucket(uri: str) -> None:
    """Fail early, with a clear message, when the bucket of ``uri`` cannot be reached."""
    loc = parse(uri)
    if not loc.is_s3:
        return
    try:
        s3_client().head_bucket(Bucket=loc.bucket)
    except Exception as exc:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and client_error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(f"The bucket of {uri} does not exist at {endpoint_url() or 'AWS'}.",
                               "create it or check the bucket name.") from None
        raise explain_s3_error(exc, uri) from None


def list_files(uri: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Every file under a prefix/folder (recursive), as URIs, sorted."""
    loc = parse(uri)
    out: list[str] = []
    if loc.is_s3:
        prefix = loc.key if (loc.key.endswith("/") or not loc.key) else loc.key + "/"
        try:
            pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    out.append(f"s3://{loc.bucket}/{obj['Key']}")
                    _LISTED[out[-1]] = _s3_fingerprint(obj["Size"], obj.get("ETag", ""))
        except Exception as exc:
            raise explain_s3_error(exc, uri) from None
    else:
        root = Path(loc.key)
        if not root.is_dir():
            raise InputError(f"{uri} is not a folder.", "give an existing folder or a single file.")
        out = [str(p) for p in root.rglob("*") if p.is_file()]
    if suffixes:
        out = [u for u in out if u.lower().endswith(tuple(s.lower() for s in suffixes))]
    return sorted(out)


def as_prefix(uri: str) -> str:
    """``uri`` written as a folder/prefix (trailing slash)."""
    return uri if uri.endswith("/") else uri + "/"


def folder_files(uri: str) -> list[str]:
    """Every file under the folder/prefix ``uri``; empty when there is no such folder."""
    loc = parse(uri)
    if not loc.is_s3 and not os.path.isdir(loc.key):
        return []
    return list_files(as_prefix(uri))


def files_by_name(uri: str) -> dict[str, str]:
    """Every file under the folder/prefix ``uri`` by its name relative to it
    (``"zone=32614/part-00000.parquet"`` -> its URI); empty when there is no such folder.
    The names do not depend on how ``uri`` was written (relative, ``~``, ``file://``, a
    trailing slash): listings give absolute paths, so a name is never cut from one by the
    length of the folder as the user wrote it."""
    base = as_prefix(join(uri))
    return {u[len(base):]: u for u in folder_files(uri) if u.startswith(base)}


# An output folder's ``_inputs/``: inputs a run derived and keeps beside its output (a STAC
# search's items, the scenes of ``landcover map --stac``). A folder holding only them is
# empty to the checks below, and clearing an output for a new run keeps them.
INPUTS = "_inputs"
STAC_INPUTS = f"{INPUTS}/stac"  # map --stac: the items it mapped, kept with the map (pipelines.map.stac_input)


def _outputs_in(uri: str) -> list[str]:
    inputs = join(uri, INPUTS) + "/"
    return [u for u in folder_files(uri) if not u.startswith(inputs)]


def check_own_folder(uri: str, marker: str, what: str) -> bool:
    """Whether the folder ``uri`` holds anything (its ``_inputs/`` aside); refuse a
    non-empty folder that is not ours (has no ``marker``), naming it."""
    if not _outputs_in(uri):
        return False
    if not exists(join(uri, marker)):
        raise ConfigError(f"{uri} is not empty and is not {what}; refusing to write into it.",
                          "choose an empty or new --out.")
    return True


def clear_own_folder(uri: str, marker: str, what: str) -> None:
    """Empty the folder ``uri`` for a new output when it is ours (``check_own_folder``),
    keeping its ``_inputs/``."""
    if not check_own_folder(uri, marker, what):
        return
    loc = parse(uri)
    if not folder_files(join(uri, INPUTS)):
        delete_prefix(as_prefix(uri))
    elif not loc.is_s3:
        for name in os.listdir(loc.key):
            if name != INPUTS:
                delete_prefix(os.path.join(loc.key, name))
    else:
        keys = [parse(u).key for u in _outputs_in(uri)]
        for i in range(0, len(keys), 1000):
            s3_client().delete_objects(
                Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in keys[i: i + 1000]], "Quiet": True})


def is_prefix(uri: str) -> bool:
    """True when ``uri`` names a folder/prefix rather than one object."""
    loc = parse(uri)
    if loc.is_s3:
        return loc.key == "" or loc.key.endswith("/")
    return os.path.isdir(loc.key)


# --------------------------------------------------------------------------- reads/writes


def read_bytes(uri: str) -> bytes:
    loc = parse(uri)
    if loc.is_s3:
        try:
            return s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except Exception as exc:
            raise explain_s3_error(exc, uri) from None
    try:
        return Path(loc.key).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{uri} does not exist.", "check the path.") from None


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` sets
    it to read it: another thread creating a file meanwhile would get the wrong mode)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file(folder: str | os.PathLike, prefix: str = ".tmp-", suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder`` (an output's own folder: a rename publishes it),
    with the mode a new file gets under the umask (mkstemp's 0600 would leave a published map,
    report or COG readable by its owner alone, not by the team on a shared disk)."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, path


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object atomically: readers see the old state or the complete new one."""
    loc = parse(uri)
    if loc.is_s3:
        try:
            s3_client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data)
        except Exception as exc:
            raise explain_s3_error(exc, uri) from None
        return
    path = Path(loc.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def delete_prefix(uri: str) -> int:
    """Delete every object under a folder/prefix; returns how many were removed."""
    loc = parse(uri)
    if not loc.is_s3:
        import shutil

        if os.path.isdir(loc.key):
            n = sum(len(f) for _, _, f in os.walk(loc.key))
            shutil.rmtree(loc.key)
            return n
        if os.path.isfile(loc.key):
            os.unlink(loc.key)
            return 1
        return 0
    keys = [parse(u).key for u in list_files(uri)] if is_prefix(uri) else [loc.key]
    for i in range(0, len(keys), 1000):
        s3_client().delete_objects(
            Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
        )
    return len(keys)


def download_folder(uri: str, dest: str | os.PathLike) -> Path:
    """Copy every object under an ``s3://`` prefix into the local folder ``dest``."""
    loc = parse(uri)
    dest = Path(dest)
    files = list_files(uri)
    if not files:
        raise InputError(f"{uri} holds no files.", "check the prefix (it should end with the model folder name).")
    prefix = loc.key.rstrip("/") + "/"
    for f in files:
        rel = parse(f).key[len(prefix):]
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_bytes(f))
    return dest


def upload_file(path: str | os.PathLike, uri: str) -> None:
    """Copy one local file to ``uri`` (S3: a multipart upload, complete or absent; local: a
    copy made complete by a rename)."""
    loc = parse(uri)
    if loc.is_s3:
        try:
            s3_client().upload_file(str(path), loc.bucket, loc.key)
        except Exception as exc:
            raise explain_s3_error(exc, uri) from None
        return
    dst = Path(loc.key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".tmp-{dst.name}")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dst)


def upload_folder(src: str | os.PathLike, uri: str) -> None:
    """Copy a local folder to ``uri`` (local or S3), file by file."""
    src = Path(src)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            write_bytes(join(uri, p.relative_to(src).as_posix()), p.read_bytes())


def move(src: str, dst: str) -> None:
    """Move one object/file (rename locally; copy + delete on S3)."""
    s, d = parse(src), parse(dst)
    if not s.is_s3 and not d.is_s3:
        Path(d.key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(s.key, d.key)
        return
    if s.is_s3 and d.is_s3:
        try:
            s3_client().copy_object(Bucket=d.bucket, Key=d.key, CopySource={"Bucket": s.bucket, "Key": s.key})
            s3_client().delete_object(Bucket=s.bucket, Key=s.key)
        except Exception as exc:
            raise explain_s3_error(exc, src) from None
        return
    write_bytes(dst, read_bytes(src))
    delete_prefix(src)
