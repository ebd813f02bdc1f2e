"""The PMC Cloud source: build from the PMC Open Access bucket through its S3 Inventory.

Since 2026 PubMed Central's Open Access articles are distributed only as the public bucket
``s3://pmc-oa-opendata`` (also ``https://pmc-oa-opendata.s3.amazonaws.com/``): one flat prefix per
article *version* (``PMC10009416.1/`` with the JATS XML, text, PDF, metadata JSON and media under
their publisher names), the same metadata JSON under ``metadata/``, and a daily S3 Inventory of
``metadata/`` under ``inventory-reports/pmc-oa-opendata/metadata/<YYYY-MM-DDTHH-MMZ>/``.

Walking that bucket like a folder tree lists ~8 million prefixes before any work, also walks
``metadata/``, ``inventory-reports/`` and ``deprecated/``, and keeps every version of every article.
This module does what the layout is made for instead:

1. **Plan** (driver, once per build, frozen for ``--resume``): read the newest *complete*
   inventory snapshot (the newest dated folder may still lack its ``manifest.json``; then the one
   before), stream its gzipped CSV files into an on-disk SQLite table (bounded memory at any
   bucket size), keep one version per PMCID, apply ``--pmcids`` / ``--limit``, and — for an
   update — diff against the previous build's article state. The result is an ordered task list.
2. **Per article** (workers, local processes or Ray): GET the version's metadata JSON, drop it
   when retracted, historical OCR or not under an accepted licence, GET the XML and only the media
   files that the XML's ``<graphic>`` elements reference (never PDFs or supplements), verifying
   each against the ``?md5=`` in the metadata. Every request is retried with exponential back-off
   on throttling (503 SlowDown), timeouts and connection resets; each worker has one request in
   flight at a time, so ``--workers`` bounds the load on the endpoint.
3. **Finish**: ``pmc_articles.parquet`` (the state an update diffs against: one row per PMCID with
   its version, metadata ETag, outcome and the sample keys it produced) and ``removed.parquet``
   (tombstones: samples of earlier builds that are retracted, withdrawn or superseded).

Requests go through botocore directly (not s3fs), so retries, timeouts and request counts are
ours; the same code serves AWS, any S3-compatible mirror (MinIO) and moto's server in the tests.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import itertools
import json
import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import split_protocol

from biomedclip.data.extract import ArticleResult, ExtractSettings, extract_figures
from biomedclip.data.jats import JatsError, normalize_license, parse_article
from biomedclip.data.records import ArticleRef, ItemError, ItemFailure
from biomedclip.data.sources import article_kind, options_for
from biomedclip.errors import BiomedclipError

if TYPE_CHECKING:
    from biomedclip.data.pipeline import BuildConfig

T = TypeVar("T")

PMC_BUCKET = "pmc-oa-opendata"
INVENTORY_ROOT = "inventory-reports/"
PLAN_FILE = "pmc_plan.sqlite"
ARTICLES_FILE = "pmc_articles.parquet"
REMOVED_FILE = "removed.parquet"

CC_LICENSES: tuple[str, ...] = ("CC BY", "CC BY-SA", "CC BY-ND", "CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND", "CC0")
"""The Creative Commons codes of the bucket's ``license_code``: the default licence filter."""

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".bmp", ".webp")
"""Media that can be a figure; everything else in ``media_urls`` (PDF, xlsx, video…) is never fetched."""

_META_KEY = re.compile(r"^metadata/PMC(\d+)\.(\d+)\.json$")
_SNAPSHOT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
_VERSION_PATH = re.compile(r"(PMC\d+\.\d+/[^?#]+)$")
_AWS_HOST = re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-](?P<region>[a-z]{2}(?:-[a-z]+)+-\d))?\.amazonaws\.com$")
_RETRY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                          "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"})
_MAX_NOT_FOUND_EXAMPLES = 20


class PmcCloudError(BiomedclipError):
    """The PMC Cloud source as a whole cannot be used (no complete inventory, bad --pmcids file …)."""


class PmcFetchError(ItemFailure):
    """One object could not be used: ``missing_object``, ``fetch_failed`` (timeouts, resets, no
    connection), ``throttled`` (503 SlowDown to the last attempt), ``md5_mismatch``,
    ``access_denied``, ``bad_metadata``. The build counts it and goes on."""


# --------------------------------------------------------------------------- licences and options


def canonical_license(code: str) -> str:
    """One spelling per licence: ``cc-by-nc`` / ``CC_BY_NC`` / ``CC BY-NC`` → ``CC BY-NC``; ``cc0`` → ``CC0``."""
    text = re.sub(r"[\s_]+", " ", code.strip().upper().replace("_", "-"))
    text = re.sub(r"^CC[\s-]*0$", "CC0", text)
    text = re.sub(r"^CC[\s-]+", "CC ", text)
    return text.replace(" - ", "-")


def parse_licenses(values: Sequence[str]) -> tuple[str, ...]:
    """Licence filter from ``--license`` values: codes in any spelling, ``cc`` (every Creative
    Commons code, the default), ``any`` (no filter). Comma-separated lists are accepted too."""
    codes: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            lower = part.lower()
            if lower == "cc":
                codes.extend(CC_LICENSES)
            elif lower in ("any", "all"):
                codes.append("*")
            else:
                codes.append(canonical_license(part))
    if not codes:
        raise PmcCloudError("--license needs at least one code (e.g. 'CC BY', 'cc', 'TDM' or 'any')")
    return tuple(dict.fromkeys(codes))


def project_license(code: str) -> str:
    """The bucket's licence code in the manifest's vocabulary (``cc-by-nc``, ``cc0``, ``tdm`` …)."""
    canonical = canonical_license(code or "")
    if canonical == "TDM":
        return "tdm"
    return normalize_license(canonical) if canonical else "unknown"


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class PmcOptions:
    """How a PMC Cloud source is read. Everything but the retry knobs decides the output.

    ``mode``: ``auto`` (the root of pmc-oa-opendata, or any other bucket root holding ``inventory-reports/``),
    ``on`` (every s3/http(s) source is a PMC Cloud root) or ``off`` (walk it as folders).
    ``versions``: ``newest``, or ``newest-published`` (the newest version that is not an author
    manuscript, else the newest). ``limit`` caps the articles a build or update processes (in
    plan order: newest PMCIDs first). ``since``: a previous build folder to update.
    """

    mode: Literal["auto", "on", "off"] = "auto"
    licenses: tuple[str, ...] = CC_LICENSES
    keep_retracted: bool = False
    keep_historical_ocr: bool = False
    versions: Literal["newest", "newest-published"] = "newest"
    pmcids_file: str | None = None
    limit: int | None = None
    since: str | None = None
    snapshot: str | None = None
    max_attempts: int = 8
    retry_base_s: float = 0.5
    retry_max_s: float = 20.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "on", "off"):
            raise PmcCloudError(f"PMC Cloud mode {self.mode!r}: use auto, on or off")
        if self.versions not in ("newest", "newest-published"):
            raise PmcCloudError(f"--versions {self.versions!r}: use newest or newest-published")
        if self.limit is not None and self.limit < 1:
            raise PmcCloudError("--limit must be at least 1")
        if self.max_attempts < 1:
            raise PmcCloudError("max_attempts must be at least 1")
        if self.snapshot is not None and not _SNAPSHOT.match(self.snapshot):
            raise PmcCloudError(f"--inventory-snapshot {self.snapshot!r} is not a YYYY-MM-DDTHH-MMZ folder name")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the output (a resume must not change them)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("max_attempts", "retry_base_s", "retry_max_s", "timeout_s")}
        data["licenses"] = list(self.licenses)
        if self.pmcids_file:
            try:
                stat = os.stat(self.pmcids_file)
                data["pmcids_sha256"] = _file_sha256(self.pmcids_file, stat.st_mtime_ns, stat.st_size)
            except OSError:
                data["pmcids_sha256"] = None
        return data

    @classmethod
    def from_fingerprint(cls, data: dict[str, Any]) -> PmcOptions:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "licenses" in values:
            values["licenses"] = tuple(values["licenses"])
        return cls(**values)


# --------------------------------------------------------------------------- where the bucket is


@dataclass(frozen=True)
class BucketLocation:
    """An S3 bucket (and key prefix) laid out like PMC Cloud, and how to reach it."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    addressing: Literal["auto", "path", "virtual"] = "auto"

    def uri(self, key: str) -> str:
        """The ``s3://`` name of a root-relative key (used in errors and the manifest)."""
        return f"s3://{self.bucket}/{self.prefix}{key}"

    @property
    def root(self) -> str:
        return self.uri("")


def _norm_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""


def location_for(source: str, storage_options: dict[str, Any] | None = None) -> BucketLocation:
    """Where a source lives: ``s3://BUCKET[/PREFIX]`` (endpoint from the storage options), a
    virtual-hosted AWS URL (``https://BUCKET.s3.amazonaws.com/``) or a path-style endpoint
    (``http://host:9000/BUCKET/PREFIX``, e.g. MinIO). The HTTPS endpoint of a bucket *is* the S3
    API, so all three are read the same way."""
    protocol, path = split_protocol(source)
    if protocol in ("s3", "s3a"):
        bucket, _, prefix = path.partition("/")
        opts = options_for(source, storage_options)
        client_kwargs = opts.get("client_kwargs") or {}
        endpoint = opts.get("endpoint_url") or client_kwargs.get("endpoint_url")
        region = client_kwargs.get("region_name") or opts.get("region_name") or "us-east-1"
        if not bucket:
            raise PmcCloudError(f"{source}: no bucket name")
        return BucketLocation(bucket, _norm_prefix(prefix), endpoint, region)
    if protocol in ("http", "https"):
        parts = urlsplit(source)
        host = parts.hostname or ""
        match = _AWS_HOST.match(host)
        if match:
            region = match.group("region") or "us-east-1"
            return BucketLocation(match.group("bucket"), _norm_prefix(unquote(parts.path)), None, region, "virtual")
        bucket, _, prefix = unquote(parts.path).strip("/").partition("/")
        if not bucket:
            raise PmcCloudError(f"{source}: a path-style S3 URL needs the bucket as its first path segment")
        return BucketLocation(bucket, _norm_prefix(prefix), f"{parts.scheme}://{parts.netloc}", "us-east-1", "path")
    raise PmcCloudError(
        f"{source}: a PMC Cloud source is s3://BUCKET[/PREFIX] or an S3 endpoint over http(s) "
        "(https://pmc-oa-opendata.s3.amazonaws.com/, http://host:9000/BUCKET/)"
    )


def is_pmc_cloud_source(source: str, options: PmcOptions, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether a build source is read as a PMC Cloud bucket root (see :attr:`PmcOptions.mode`).

    ``auto`` costs at most one small LIST (``inventory-reports/``, one key) for the root of an S3
    bucket other than the real one; prefixes, single files, http(s) and local paths are never probed.
    """
    if options.mode == "off":
        return False
    protocol = split_protocol(source)[0] or "file"
    name = source.rstrip("/").rsplit("/", 1)[-1]
    if protocol not in ("s3", "s3a", "http", "https") or article_kind(name) is not None:
        if options.mode == "on" and protocol not in ("s3", "s3a", "http", "https"):
            raise PmcCloudError(f"{source}: --pmc-cloud needs an s3:// or http(s):// bucket root")
        return False
    location = location_for(source, storage_options)
    if options.mode == "on":
        return True
    if location.bucket == PMC_BUCKET:
        return not location.prefix  # the real bucket: its root; one of its folders is walked as a folder
    if protocol in ("http", "https") or location.prefix:
        return False  # only bucket roots are probed (a mirror under a prefix: --pmc-cloud)
    try:
        return S3Store(location, storage_options, replace(options, max_attempts=min(options.max_attempts, 3))
                       ).has_any(INVENTORY_ROOT)
    except PmcFetchError as exc:
        if exc.reason != "throttled":
            return False  # unreachable or unreadable: the folder walk reports the problem
        # Guessing "no" for a throttled bucket would walk millions of prefixes.
        raise PmcCloudError(f"cannot tell whether {source} is a PMC Cloud bucket ({exc.detail}); "
                            "pass --pmc-cloud or --no-pmc-cloud") from exc


# --------------------------------------------------------------------------- S3 access with retries


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - S3's content checksum scheme, not security


@functools.cache
def _transient_errors() -> tuple[type[BaseException], ...]:
    import botocore.exceptions as bce
    import urllib3.exceptions

    return (bce.HTTPClientError, bce.ConnectionError, bce.IncompleteReadError, urllib3.exceptions.HTTPError,
            ConnectionError, TimeoutError)


_CLIENTS: dict[str, Any] = {}


def _credentials(location: BucketLocation, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Credentials from the storage options (anonymous unless key/secret/profile are given)."""
    opts = options_for(f"s3://{location.bucket}/", storage_options)
    return {
        "anon": bool(opts.get("anon", False)),
        "key": opts.get("key"),
        "secret": opts.get("secret"),
        "token": opts.get("token"),
        "profile": opts.get("profile"),
    }


def _make_client(location: BucketLocation, credentials: dict[str, Any], timeout_s: float) -> Any:
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    session = botocore.session.Session(profile=credentials.get("profile"))
    config_kwargs: dict[str, Any] = {
        "region_name": location.region,
        "retries": {"total_max_attempts": 1, "mode": "standard"},  # retries are ours (counted, backed off)
        "connect_timeout": timeout_s,
        "read_timeout": timeout_s,
        "max_pool_connections": 4,
        "s3": {"addressing_style": location.addressing},
    }
    if credentials["anon"]:
        config_kwargs["signature_version"] = UNSIGNED
    return session.create_client(
        "s3",
        endpoint_url=location.endpoint_url,
        aws_access_key_id=credentials.get("key"),
        aws_secret_access_key=credentials.get("secret"),
        aws_session_token=credentials.get("token"),
        config=Config(**config_kwargs),
    )


def _error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class S3Store:
    """GET and LIST on one bucket location with bounded, backed-off retries and counters.

    Holds no open connection when pickled: the botocore client is built on first use in each
    process and cached there. ``counts`` adds up ``requests`` (every attempt), ``retries`` and
    ``bytes`` (bodies received), which the build reports per article.
    """

    def __init__(self, location: BucketLocation, storage_options: dict[str, Any] | None,
                 options: PmcOptions) -> None:
        self.location = location
        self.options = options
        self._credentials = _credentials(location, storage_options)
        self.counts: Counter = Counter()

    @property
    def client(self) -> Any:
        key = json.dumps([asdict(self.location), self._credentials, self.options.timeout_s], sort_keys=True)
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = _make_client(self.location, self._credentials, self.options.timeout_s)
        return client

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    # -- retry loop --------------------------------------------------------------------------
    def _retry(self, what: str, call: Callable[[], T]) -> T:
        from botocore.exceptions import ClientError

        attempt = 0
        while True:
            try:
                return call()
            except ClientError as exc:
                code, status = _error_code(exc)
                if code in ("NoSuchKey", "NoSuchBucket", "NotFound") or status == 404:
                    raise PmcFetchError("missing_object", f"{what} does not exist ({code or status})") from exc
                if code in ("AccessDenied", "Forbidden") or status == 403:
                    raise PmcFetchError("access_denied", f"{what}: access denied; the bucket is read anonymously "
                                        "unless key/secret storage options are given") from exc
                if code not in _RETRY_CODES and status not in (500, 502, 503, 504):
                    raise PmcFetchError("fetch_failed", f"{what}: {code or status}: {exc}") from exc
                error: BaseException = exc
                reason = "throttled"
            except _transient_errors() as exc:
                error = exc
                reason = "fetch_failed"
            attempt += 1
            if attempt >= self.options.max_attempts:
                raise PmcFetchError(
                    reason,
                    f"{what}: gave up after {attempt} attempts ({type(error).__name__}: {error}); the endpoint "
                    "is throttling or unreachable — rerun with --resume later",
                ) from error
            self.counts["retries"] += 1
            delay = min(self.options.retry_max_s, self.options.retry_base_s * 2 ** (attempt - 1))
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto

    # -- requests ----------------------------------------------------------------------------
    def get(self, key: str, *, md5: str | None = None, listed_in: str = "") -> bytes:
        """Bytes of one root-relative key; with ``md5``, verified (``md5_mismatch`` otherwise)."""
        what = self.location.uri(key)

        def call() -> bytes:
            self.counts["requests"] += 1
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.location.prefix + key)
            return response["Body"].read()

        data = self._retry(what, call)
        self.counts["bytes"] += len(data)
        if md5 and _md5_hex(data) != md5.lower():
            where = f" (listed in {listed_in})" if listed_in else ""
            raise PmcFetchError("md5_mismatch", f"{what}: md5 {_md5_hex(data)} differs from {md5}{where}; "
                                "the object is corrupt or changed since its metadata was written")
        return data

    def list_dir(self, prefix: str) -> tuple[list[str], list[str]]:
        """(sub-prefixes, keys) directly under a root-relative prefix, all pages."""
        what = self.location.uri(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": self.location.prefix + prefix,
                                  "Delimiter": "/", "MaxKeys": 1000}
        folders: list[str] = []
        keys: list[str] = []
        cut = len(self.location.prefix)
        def call() -> dict[str, Any]:
            self.counts["requests"] += 1
            return self.client.list_objects_v2(**kwargs)

        while True:
            page = self._retry(what, call)
            folders += [p["Prefix"][cut:] for p in page.get("CommonPrefixes", [])]
            keys += [o["Key"][cut:] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return folders, keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def has_any(self, prefix: str) -> bool:
        """Whether any key starts with the root-relative prefix (one LIST of one key)."""
        def call() -> dict[str, Any]:
            self.counts["requests"] += 1
            return self.client.list_objects_v2(Bucket=self.location.bucket, Prefix=self.location.prefix + prefix,
                                               MaxKeys=1)

        return bool(self._retry(self.location.uri(prefix), call).get("KeyCount"))

    def open_stream(self, key: str) -> _ResumableReader:
        """A sequential reader of one object that resumes with a Range GET after a dropped connection."""
        return _ResumableReader(self, key)


class _ResumableReader(io.RawIOBase):
    """Raw stream over one object: a failed read reopens at the current offset (Range request),
    so a connection reset halfway through a large inventory file loses nothing; ``md5`` is the
    checksum of the bytes read so far."""

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._body: Any = None
        self._pos = 0
        self.md5 = hashlib.md5()  # noqa: S324 - S3 checksum scheme

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        store = self._store

        def call() -> bytes:
            if self._body is None:
                store.counts["requests"] += 1
                kwargs: dict[str, Any] = {"Bucket": store.location.bucket, "Key": store.location.prefix + self._key}
                if self._pos:
                    kwargs["Range"] = f"bytes={self._pos}-"
                self._body = store.client.get_object(**kwargs)["Body"]
            try:
                return self._body.read(len(buffer))
            except BaseException:
                self._body = None
                raise

        data = store._retry(store.location.uri(self._key), call)
        size = len(data)
        buffer[:size] = data
        self._pos += size
        self.md5.update(data)
        store.counts["bytes"] += size
        return size

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()


# --------------------------------------------------------------------------- the inventory


@dataclass
class Snapshot:
    """One complete inventory snapshot: where it is and what it lists."""

    name: str
    manifest_key: str
    manifest_sha256: str
    columns: list[str]
    files: list[dict[str, Any]]
    incomplete_skipped: list[str] = field(default_factory=list)


def find_snapshot(store: S3Store, pinned: str | None = None) -> Snapshot:
    """The newest dated inventory folder whose ``manifest.json`` exists (or the pinned one).

    Only ``inventory-reports/`` is listed: first ``inventory-reports/pmc-oa-opendata/metadata/``,
    else each ``inventory-reports/<source>/`` (a mirror may name itself); ``hive/`` and ``data/``
    are not snapshots and are never read.
    """
    base = f"{INVENTORY_ROOT}{PMC_BUCKET}/metadata/"
    folders, _ = store.list_dir(base)
    if not folders:
        roots, _ = store.list_dir(INVENTORY_ROOT)
        for root in roots:
            folders, _ = store.list_dir(root + "metadata/")
            if folders:
                base = root + "metadata/"
                break
    names = sorted((f[len(base):].rstrip("/") for f in folders), reverse=True)
    dated = [n for n in names if _SNAPSHOT.match(n)]
    if pinned:
        if pinned not in dated:
            raise PmcCloudError(f"inventory snapshot {pinned} not found under {store.location.uri(base)} "
                                f"(there: {', '.join(dated[:5]) or 'none'}; S3 keeps inventories 30 days)")
        dated = [pinned]
    skipped: list[str] = []
    for name in dated:
        key = f"{base}{name}/manifest.json"
        try:
            body = store.get(key)
        except PmcFetchError as exc:
            if exc.reason != "missing_object":
                raise PmcCloudError(f"cannot read {store.location.uri(key)}: {exc.detail}") from exc
            skipped.append(name)  # still being written: S3 writes the manifest last
            continue
        try:
            manifest = json.loads(body)
            files = list(manifest["files"])
            schema = str(manifest.get("fileSchema", "Bucket, Key, LastModifiedDate, ETag"))
            file_format = str(manifest.get("fileFormat", "CSV"))
        except (ValueError, KeyError, TypeError) as exc:
            raise PmcCloudError(f"{store.location.uri(key)} is not an S3 Inventory manifest: {exc}") from exc
        if file_format.upper() != "CSV":
            raise PmcCloudError(f"{store.location.uri(key)}: inventory format {file_format} is not supported (CSV)")
        columns = [c.strip() for c in schema.split(",")]
        if "Key" not in columns:
            raise PmcCloudError(f"{store.location.uri(key)}: fileSchema {schema!r} has no Key column")
        return Snapshot(name, key, hashlib.sha256(body).hexdigest(), columns, files, skipped)
    raise PmcCloudError(
        f"no complete inventory under {store.location.uri(base)} (dated folders: {', '.join(names[:5]) or 'none'}"
        f"{'; without manifest.json: ' + ', '.join(skipped) if skipped else ''}); S3 writes one a day — retry later"
    )


def iter_inventory(store: S3Store, snapshot: Snapshot) -> Iterator[tuple[str, str, str]]:
    """(Key, LastModifiedDate, ETag) of every row, streamed file by file; each data file's
    checksum is verified against the manifest once it has been read to its end."""
    index = {name: snapshot.columns.index(name) for name in ("Key", "LastModifiedDate", "ETag")
             if name in snapshot.columns}
    k = index["Key"]
    m = index.get("LastModifiedDate")
    e = index.get("ETag")
    for entry in snapshot.files:
        key = str(entry["key"])
        raw = store.open_stream(key)
        try:
            with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BufferedReader(raw, 1 << 18)), encoding="utf-8",
                                  newline="") as text:
                for row in csv.reader(text):
                    if len(row) <= k:
                        continue
                    name = row[k]
                    if "%" in name or "+" in name:
                        name = unquote_plus(name)  # S3 Inventory URL-encodes keys in CSV
                    yield name, row[m] if m is not None else "", row[e].strip('"') if e is not None else ""
        except PmcFetchError as exc:
            raise PmcCloudError(f"inventory file {store.location.uri(key)}: {exc.detail}") from exc
        except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
            raise PmcCloudError(f"inventory file {store.location.uri(key)} is corrupt: {exc}") from exc
        expected = str(entry.get("MD5checksum", "")).lower()
        if expected and raw.md5.hexdigest() != expected:
            raise PmcCloudError(f"inventory file {store.location.uri(key)}: md5 {raw.md5.hexdigest()} differs "
                                f"from {expected} in {snapshot.manifest_key}; retry the build")


def read_pmcids(path: str) -> Iterator[int]:
    """PMCID numbers of a ``--pmcids`` file: one per line (``PMC123``, ``pmc123`` or ``123``);
    blank lines and ``#`` comments are ignored."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise PmcCloudError(f"--pmcids {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            match = re.fullmatch(r"(?i)(?:pmc)?(\d+)(?:\.\d+)?", text)
            if not match:
                raise PmcCloudError(f"--pmcids {path}, line {number}: {text!r} is not a PMCID (e.g. PMC10009416)")
            yield int(match.group(1))


# --------------------------------------------------------------------------- the plan


_ARTICLE_SCHEMA = pa.schema([
    ("pmc", pa.int64()), ("pmcid", pa.string()), ("version", pa.int32()), ("etag", pa.string()),
    ("sig", pa.string()), ("outcome", pa.string()), ("license_code", pa.string()), ("build", pa.string()),
    ("sample_keys", pa.list_(pa.string())),
])
_REMOVED_SCHEMA = pa.schema([
    ("key", pa.string()), ("pmcid", pa.string()), ("reason", pa.string()), ("version", pa.int32()),
    ("build", pa.string()),
])


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path))
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA temp_store=FILE")
    connection.execute("PRAGMA cache_size=-65536")  # 64 MB page cache: bounded whatever the bucket size
    return connection


class PmcPlan:
    """A frozen build plan for one PMC Cloud source, kept in ``OUT/_build/pmc_plan.sqlite``.

    The task list is fixed when the build starts, so a resumed build continues the *same* list
    even if a newer inventory has appeared meanwhile.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self.meta: dict[str, Any] = {k: json.loads(v) for k, v in self._db.execute("SELECT k, v FROM meta")}
        self.source: str = self.meta["source"]
        self.location = BucketLocation(**self.meta["location"])
        self.options = PmcOptions.from_fingerprint(self.meta["options"])
        self.count: int = int(self.meta["tasks"])

    def with_runtime(self, options: PmcOptions) -> PmcPlan:
        """Use this run's retry/timeout knobs (they do not change the output)."""
        self.options = replace(self.options, max_attempts=options.max_attempts, retry_base_s=options.retry_base_s,
                               retry_max_s=options.retry_max_s, timeout_s=options.timeout_s)
        return self

    def items(self, skip: int = 0) -> Iterator[PmcTask]:
        """The planned tasks from position ``skip`` on, in plan order."""
        cursor = self._db.execute("SELECT pmc, kind, versions, prev FROM tasks WHERE seq > ? ORDER BY seq", (skip,))
        for pmc, kind, versions, prev in cursor:
            yield PmcTask(
                location=self.location, options=self.options, pmc=int(pmc), kind=kind,
                versions=tuple((ver, f"metadata/PMC{pmc}.{ver}.json", etag) for ver, etag in json.loads(versions))
                if versions else (),
                prev=prev,
            )

    def summary(self, skipped: Counter, counts: Counter) -> dict[str, Any]:
        """The ``pmc_cloud`` section of stats.json: snapshot (to reproduce the build), plan, costs."""
        processed = sum(v for k, v in counts.items() if k == "fetched_articles")
        licenses = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("license:")}
        meta = self.meta
        return {
            "source": self.source,
            "bucket": self.location.root,
            "snapshot": meta["snapshot"],
            "manifest_key": meta["manifest_key"],
            "manifest_sha256": meta["manifest_sha256"],
            "incomplete_snapshots_skipped": meta["incomplete_skipped"],
            "inventory": meta["inventory"],
            "pmcids": meta["pmcids"],
            "plan": meta["plan"],
            "since": meta.get("since"),
            "options": meta["options"],
            "skipped": dict(sorted(skipped.items())),
            "licenses": licenses,
            "tombstones": int(counts.get("tombstones", 0)),
            "requests": int(counts.get("requests", 0)),
            "retries": int(counts.get("retries", 0)),
            "bytes": int(counts.get("bytes", 0)),
            "articles_fetched": processed,
            "requests_per_article": round(counts.get("requests", 0) / processed, 3) if processed else 0.0,
            "bytes_per_article": round(counts.get("bytes", 0) / processed) if processed else 0,
        }

    def finish(self, out: Path, records_log: Path, manifest: Path) -> None:
        """Write ``removed.parquet`` and ``pmc_articles.parquet`` (the state for the next update)."""
        build_name = out.name
        db = _connect(out / "_build" / "pmc_finish.sqlite")
        try:
            db.executescript("DROP TABLE IF EXISTS done; DROP TABLE IF EXISTS kept;"
                             "CREATE TABLE done(pmc INTEGER PRIMARY KEY, row TEXT);"
                             "CREATE TABLE kept(pmc INTEGER, key TEXT);")
            removed_rows: list[dict[str, Any]] = []
            with pq.ParquetWriter(str(out / (REMOVED_FILE + ".tmp")), _REMOVED_SCHEMA) as removed:
                for record in _iter_records(records_log):
                    if record["type"] == "tombstone":
                        for key in record["keys"]:
                            removed_rows.append({"key": key, "pmcid": record["pmcid"], "reason": record["reason"],
                                                 "version": record["version"], "build": record["build"]})
                        if len(removed_rows) >= 50_000:
                            removed.write_table(pa.Table.from_pylist(removed_rows, schema=_REMOVED_SCHEMA))
                            removed_rows = []
                    elif record["type"] == "article":
                        db.execute("INSERT OR REPLACE INTO done VALUES (?, ?)", (record["pmc"], json.dumps(record)))
                removed.write_table(pa.Table.from_pylist(removed_rows, schema=_REMOVED_SCHEMA))
            if manifest.exists():
                for batch in pq.ParquetFile(str(manifest)).iter_batches(columns=["pmcid", "key"], batch_size=65_536):
                    db.executemany("INSERT INTO kept VALUES (?, ?)",
                                   ((int(p[3:]), k) for p, k in zip(batch.column(0).to_pylist(),
                                                                    batch.column(1).to_pylist(), strict=True)
                                    if p and p[3:].isdigit()))
            db.execute("CREATE INDEX kept_pmc ON kept(pmc)")
            db.execute(f"ATTACH DATABASE '{self.path}' AS plan")
            self._write_articles(db, out / (ARTICLES_FILE + ".tmp"), build_name)
            db.commit()
        finally:
            db.close()
            (out / "_build" / "pmc_finish.sqlite").unlink(missing_ok=True)
        os.replace(out / (REMOVED_FILE + ".tmp"), out / REMOVED_FILE)
        os.replace(out / (ARTICLES_FILE + ".tmp"), out / ARTICLES_FILE)

    @staticmethod
    def _write_articles(db: sqlite3.Connection, target: Path, build_name: str) -> None:
        """New rows of this build, else the previous build's rows (withdrawn ones dropped)."""
        query = """
            SELECT pmc, 'done', row FROM done
            UNION ALL
            SELECT p.pmc, 'prev', p.row FROM plan.prev p WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.pmc = p.pmc)
            ORDER BY 1 DESC"""
        rows: list[dict[str, Any]] = []
        with pq.ParquetWriter(str(target), _ARTICLE_SCHEMA) as writer:
            for pmc, origin, text in db.execute(query):
                record = json.loads(text)
                if origin == "done":
                    if record["outcome"] == "withdrawn":
                        continue
                    keys = [k for (k,) in db.execute("SELECT key FROM kept WHERE pmc = ? ORDER BY rowid", (pmc,))]
                    record = {**record, "build": build_name, "sample_keys": keys}
                rows.append({name: record.get(name) for name in _ARTICLE_SCHEMA.names})
                if len(rows) >= 50_000:
                    writer.write_table(pa.Table.from_pylist(rows, schema=_ARTICLE_SCHEMA))
                    rows = []
            writer.write_table(pa.Table.from_pylist(rows, schema=_ARTICLE_SCHEMA))


def _iter_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def create_plan(source: str, options: PmcOptions, storage_options: dict[str, Any] | None, work: Path) -> PmcPlan:
    """Read the inventory and write the task list (``work/pmc_plan.sqlite``); see the module docstring."""
    location = location_for(source, storage_options)
    store = S3Store(location, storage_options, options)
    previous = _previous_articles(options.since) if options.since else None
    snapshot = find_snapshot(store, options.snapshot)
    target = work / PLAN_FILE
    partial = work / (PLAN_FILE + ".partial")
    scratch = work / "pmc_inventory.sqlite"  # the whole inventory: deleted once the task list is written
    for path in (partial, scratch):
        path.unlink(missing_ok=True)
    db = _connect(partial)
    try:
        db.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
        db.execute("PRAGMA scratch.journal_mode=OFF")
        db.execute("PRAGMA scratch.synchronous=OFF")
        db.executescript("""
            CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT);
            CREATE TABLE scratch.inv(pmc INTEGER, ver INTEGER, etag TEXT);
            CREATE TABLE scratch.wanted(pmc INTEGER PRIMARY KEY);
            CREATE TABLE scratch.sel(pmc INTEGER PRIMARY KEY, sig TEXT);
            CREATE TABLE prev(pmc INTEGER PRIMARY KEY, sig TEXT, outcome TEXT, row TEXT);
            CREATE TABLE tasks(seq INTEGER PRIMARY KEY, pmc INTEGER, kind TEXT, versions TEXT, prev TEXT);
        """)
        inventory = _load_inventory(db, store, snapshot)
        pmcids = _load_wanted(db, options.pmcids_file)
        if previous is not None:
            _load_previous(db, previous)
        plan = _select_and_diff(db, options, wanted=options.pmcids_file is not None, update=previous is not None)
        inventory["duplicate_rows"] = plan.pop("duplicate_rows")
        if options.pmcids_file:
            pmcids.update(_not_found(db))
        meta = {
            "source": source,
            "location": asdict(location),
            "options": options.fingerprint(),
            "snapshot": snapshot.name,
            "manifest_key": location.uri(snapshot.manifest_key),
            "manifest_sha256": snapshot.manifest_sha256,
            "incomplete_skipped": snapshot.incomplete_skipped,
            "inventory": inventory,
            "pmcids": pmcids,
            "plan": plan,
            "since": options.since,
            "plan_requests": int(store.counts["requests"]),
            "tasks": plan["tasks"],
        }
        db.executemany("INSERT INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in meta.items()))
        db.commit()
        db.execute("DETACH DATABASE scratch")
    finally:
        db.close()
        scratch.unlink(missing_ok=True)
    os.replace(partial, target)
    return PmcPlan(target).with_runtime(options)


def _load_inventory(db: sqlite3.Connection, store: S3Store, snapshot: Snapshot) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    def rows() -> Iterator[tuple[int, int, str]]:
        for key, _modified, etag in iter_inventory(store, snapshot):
            counts["rows"] += 1
            match = _META_KEY.match(key)
            if match is None:
                counts["other_rows"] += 1
                continue
            yield int(match.group(1)), int(match.group(2)), etag

    db.executemany("INSERT INTO inv VALUES (?, ?, ?)", rows())
    db.execute("CREATE INDEX scratch.inv_order ON inv(pmc DESC, ver DESC)")
    return {"rows": counts["rows"], "metadata_rows": counts["rows"] - counts["other_rows"],
            "other_rows": counts["other_rows"], "duplicate_rows": 0, "files": len(snapshot.files)}


def _load_wanted(db: sqlite3.Connection, path: str | None) -> dict[str, Any]:
    if not path:
        return {"requested": None}
    db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((n,) for n in read_pmcids(path)))
    requested = db.execute("SELECT COUNT(*) FROM wanted").fetchone()[0]
    if not requested:
        raise PmcCloudError(f"--pmcids {path} lists no PMCID")
    return {"requested": requested}


def _not_found(db: sqlite3.Connection) -> dict[str, Any]:
    missing = "FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM sel s WHERE s.pmc = w.pmc)"
    count = db.execute(f"SELECT COUNT(*) {missing}").fetchone()[0]
    examples = [f"PMC{n}" for (n,) in db.execute(f"SELECT w.pmc {missing} ORDER BY w.pmc LIMIT ?",
                                                 (_MAX_NOT_FOUND_EXAMPLES,))]
    return {"not_found": count, "not_found_examples": examples}


def _previous_articles(since: str) -> Path:
    folder = Path(since)
    path = folder / ARTICLES_FILE
    if not path.exists():
        raise PmcCloudError(f"{folder} is not a finished PMC Cloud build ({ARTICLES_FILE} missing): an update "
                            "needs the folder of a completed `biomedclip data build` of the bucket")
    return path


def _load_previous(db: sqlite3.Connection, path: Path) -> None:
    parquet = pq.ParquetFile(str(path))
    for batch in parquet.iter_batches(batch_size=65_536):
        db.executemany("INSERT INTO prev VALUES (?, ?, ?, ?)",
                       ((row["pmc"], row["sig"], row["outcome"], json.dumps(row)) for row in batch.to_pylist()))


def _select_and_diff(db: sqlite3.Connection, options: PmcOptions, *, wanted: bool, update: bool) -> dict[str, Any]:
    """One row per PMCID (all its versions, newest first) → ``sel``; then the task list."""
    where = "WHERE pmc IN (SELECT pmc FROM wanted)" if wanted else ""
    cursor = db.execute(f"SELECT pmc, ver, etag FROM inv {where} ORDER BY pmc DESC, ver DESC")
    duplicates = considered = 0

    def grouped() -> Iterator[tuple[int, str]]:
        nonlocal duplicates, considered
        for pmc, rows in itertools.groupby(cursor, key=lambda r: r[0]):
            versions: list[list[Any]] = []
            for _, ver, etag in rows:
                considered += 1
                if versions and versions[-1][0] == ver:
                    duplicates += 1  # the same key in two inventory files
                    continue
                versions.append([ver, etag])
            yield pmc, json.dumps(versions, separators=(",", ":"))  # newest first: the diff signature

    db.executemany("INSERT INTO sel VALUES (?, ?)", grouped())
    selected = db.execute("SELECT COUNT(*) FROM sel").fetchone()[0]
    limit = options.limit if options.limit is not None else -1
    db.execute("""
        INSERT INTO tasks(pmc, kind, versions, prev)
        SELECT pmc, kind, versions, prev FROM (
            SELECT s.pmc AS pmc,
                   CASE WHEN p.pmc IS NULL THEN 'new' WHEN p.outcome = 'error' THEN 'retry' ELSE 'changed' END AS kind,
                   s.sig AS versions, p.row AS prev
            FROM sel s LEFT JOIN prev p ON p.pmc = s.pmc
            WHERE p.pmc IS NULL OR p.sig IS NOT s.sig OR p.outcome = 'error'
            UNION ALL
            SELECT p.pmc, 'withdrawn', NULL, p.row FROM prev p
            WHERE NOT EXISTS (SELECT 1 FROM sel s WHERE s.pmc = p.pmc)
        ) ORDER BY pmc DESC LIMIT ?""", (limit,))
    kinds = dict(db.execute("SELECT kind, COUNT(*) FROM tasks GROUP BY kind").fetchall())
    tasks = sum(kinds.values())
    plan: dict[str, Any] = {"tasks": tasks, "pmcids": selected, "limit": options.limit}
    if update:
        previous = db.execute("SELECT COUNT(*) FROM prev").fetchone()[0]
        plan["update"] = {k: kinds.get(k, 0) for k in ("new", "changed", "retry", "withdrawn")}
        plan["update"]["unchanged"] = previous - sum(kinds.get(k, 0) for k in ("changed", "retry", "withdrawn"))
    db.commit()
    plan["duplicate_rows"] = duplicates
    plan["versions_not_selected"] = considered - duplicates - selected
    return plan


def prepare(config: BuildConfig, work: Path, *, fresh: bool) -> PmcPlan | None:
    """The plan of this build's PMC Cloud source (None when it has none).

    A resumed build reuses the plan it started with (the detection is not repeated, the
    inventory not re-read); a new build detects its source and plans it.
    """
    options = getattr(config, "pmc", None) or PmcOptions()
    path = work / PLAN_FILE
    if not fresh and path.exists():
        return PmcPlan(path).with_runtime(options)
    path.unlink(missing_ok=True)
    sources = [s for s in config.sources if is_pmc_cloud_source(s, options, config.storage_options)]
    if not sources:
        if options.since:
            raise PmcCloudError("an update (--since) needs a PMC Cloud source (s3://pmc-oa-opendata/ or --pmc-cloud)")
        return None
    if len(sources) > 1:
        raise PmcCloudError(f"one PMC Cloud source per build, got {len(sources)}: {', '.join(sources)}")
    return create_plan(sources[0], options, config.storage_options, work)


def update_config(previous: Path, out: Path, **runtime: Any) -> BuildConfig:
    """The build that brings ``previous`` (a finished PMC Cloud build) up to date into ``out``.

    Same sources and settings as the previous build (filters, splits, licences, subsets), the
    newest inventory, and ``since=previous``; ``runtime`` sets what does not change the output
    (executor, workers, storage_options, ray_address, checkpoint_seconds) and the retry knobs
    (``max_attempts``, ``timeout_s``). Credentials are never stored in a build: pass them again.
    """
    from biomedclip.data.filters import FilterConfig
    from biomedclip.data.pipeline import BuildConfig

    previous = Path(previous)
    _previous_articles(str(previous))
    try:
        settings = json.loads((previous / "stats.json").read_text())["settings"]
    except (OSError, ValueError, KeyError) as exc:
        raise PmcCloudError(f"{previous}/stats.json is missing or unreadable: {exc}") from exc
    retry = {k: runtime.pop(k) for k in ("max_attempts", "retry_base_s", "retry_max_s", "timeout_s") if k in runtime}
    pmc = PmcOptions.from_fingerprint(settings.get("pmc_cloud") or {})
    pmc = replace(pmc, since=str(previous), snapshot=None, **retry)
    return BuildConfig(
        sources=list(settings["sources"]), out=Path(out), splits=dict(settings["splits"]),
        filters=FilterConfig(**settings["filters"]), max_side=settings["max_side"],
        max_pixels=settings["max_pixels"], jpeg_quality=settings["jpeg_quality"],
        shard_size=settings["shard_size"], pmc=pmc, **runtime,
    )


# --------------------------------------------------------------------------- per-article work


_WORKER_STORES: dict[str, S3Store] = {}


def _worker_store(location: BucketLocation, storage_options: dict[str, Any] | None, options: PmcOptions) -> S3Store:
    key = json.dumps([asdict(location), storage_options, options.max_attempts, options.retry_base_s,
                      options.retry_max_s, options.timeout_s], sort_keys=True, default=str)
    store = _WORKER_STORES.get(key)
    if store is None:
        store = _WORKER_STORES[key] = S3Store(location, storage_options, options)
    return store


def _key_and_md5(url: str, fallback: str = "") -> tuple[str, str | None]:
    """Root-relative key and ``?md5=`` of a metadata URL (``s3://pmc-oa-opendata/PMC1.1/f.jpg?md5=…``).

    The key is taken from the version folder on (``PMC1.1/f.jpg``), so a mirror whose metadata
    still names the original bucket resolves to its own copy.
    """
    parts = urlsplit(url)
    values = parse_qs(parts.query).get("md5")
    md5 = values[0] if values else None
    match = _VERSION_PATH.search(unquote(parts.path))
    return (match.group(1) if match else unquote(parts.path).lstrip("/") or fallback), md5


@dataclass
class PmcMediaStore:
    """The figure-capable media of one article version, fetched (and md5-verified) on read."""

    store: S3Store
    files: dict[str, tuple[str, str | None]]
    listed_in: str = ""

    def names(self) -> list[str]:
        return sorted(self.files)

    def read(self, name: str) -> bytes:
        if name not in self.files:
            raise KeyError(name)
        key, md5 = self.files[name]
        return self.store.get(key, md5=md5, listed_in=self.listed_in)


@dataclass(frozen=True)
class PmcTask:
    """One planned article: all its versions in the inventory (newest first), and what the
    previous build held for it (JSON, None in a first build). ``kind``: new, changed, retry,
    withdrawn."""

    location: BucketLocation
    options: PmcOptions
    pmc: int
    kind: str
    versions: tuple[tuple[Any, ...], ...]
    prev: str | None = None

    @property
    def pmcid(self) -> str:
        return f"PMC{self.pmc}"

    def process(self, settings: ExtractSettings) -> ArticleResult:
        """Executor entry point (see :func:`biomedclip.data.extract.process_batch`)."""
        store = _worker_store(self.location, settings.storage_options, self.options)
        before = Counter(store.counts)
        result = _process(self, store, settings)
        for key, value in (store.counts - before).items():
            result.counts[key] = result.counts.get(key, 0) + value
        return result


def _skip_reason(meta: dict[str, Any], options: PmcOptions) -> str:
    if meta.get("is_retracted") and not options.keep_retracted:
        return "retracted"
    if meta.get("is_historical_ocr") and not options.keep_historical_ocr:
        return "historical_ocr"
    code = canonical_license(str(meta.get("license_code") or ""))
    if "*" not in options.licenses and code not in options.licenses:
        return "license_excluded"
    return ""


def _choose_version(task: PmcTask, store: S3Store) -> tuple[tuple[Any, ...], dict[str, Any]]:
    first: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    for version in task.versions:
        meta = _get_metadata(store, str(version[1]))
        if first is None:
            first = (version, meta)
        if task.options.versions == "newest" or not meta.get("is_manuscript"):
            return version, meta
    assert first is not None
    return first


def _get_metadata(store: S3Store, key: str) -> dict[str, Any]:
    body = store.get(key)
    try:
        meta = json.loads(body)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise PmcFetchError("bad_metadata", f"{store.location.uri(key)} is not valid metadata JSON: {exc}") from exc
    return meta


def _media_files(meta: dict[str, Any], store: S3Store, name: str) -> dict[str, tuple[str, str | None]]:
    files: dict[str, tuple[str, str | None]] = {}
    urls = meta.get("media_urls")
    if isinstance(urls, list):
        pairs = [_key_and_md5(str(u)) for u in urls]
    else:  # older metadata without media_urls: one LIST of this version's own folder
        _, keys = store.list_dir(f"{name}/")
        pairs = [(k, None) for k in keys]
    for key, md5 in pairs:
        base = key.rsplit("/", 1)[-1]
        if base.lower().endswith(IMAGE_SUFFIXES):
            files.setdefault(base, (key, md5))
    return files


def _process(task: PmcTask, store: S3Store, settings: ExtractSettings) -> ArticleResult:
    """Metadata → filters → XML → referenced figures, for one article; never raises for bad input."""
    prev = json.loads(task.prev) if task.prev else None
    pmcid = task.pmcid
    if task.kind == "withdrawn":
        assert prev is not None, "a withdrawn task always carries the previous build's row"
        result = ArticleResult(uri=task.location.uri(f"metadata/{pmcid}.{prev['version']}.json"), skipped="withdrawn")
        result.records.append({"type": "article", "pmc": task.pmc, "outcome": "withdrawn"})
        _add_tombstone(result, task, prev, "withdrawn")
        return result
    newest = task.versions[0]
    result = ArticleResult(uri=task.location.uri(str(newest[1])))
    if prev and task.options.versions == "newest" and (prev["version"], prev["etag"]) == (newest[0], newest[2]):
        result.skipped = "unchanged"  # only an older version changed: nothing to redo
        return result
    try:
        version, meta = _choose_version(task, store)
        if prev and (prev["version"], prev["etag"]) == (version[0], version[2]):
            result.skipped = "unchanged"
            return result
        _fill(task, store, settings, result, version, meta, prev)
    except PmcFetchError as exc:
        result.errors.append(exc.to_item_error(result.uri))
        result.parsed = False
        if prev is None:  # a previous build's samples stay valid until the article can be read again
            result.records.append(_article_record(task, newest, "error", ""))
    return result


def _fill(task: PmcTask, store: S3Store, settings: ExtractSettings, result: ArticleResult,
          version: tuple[Any, ...], meta: dict[str, Any], prev: dict[str, Any] | None) -> None:
    name = f"{task.pmcid}.{version[0]}"
    meta_uri = task.location.uri(str(version[1]))
    code = canonical_license(str(meta.get("license_code") or ""))
    reason = _skip_reason(meta, task.options)
    if reason:
        result.skipped = reason
        result.records.append(_article_record(task, version, f"skipped:{reason}", code))
        if prev:
            _add_tombstone(result, task, prev, reason)
        return
    result.counts["fetched_articles"] = 1
    xml_key, xml_md5 = _key_and_md5(str(meta.get("xml_url") or ""), fallback=f"{name}/{name}.xml")
    if not meta.get("xml_url"):
        xml_key = f"{name}/{name}.xml"
    xml_uri = task.location.uri(xml_key)
    result.uri = xml_uri
    xml = store.get(xml_key, md5=xml_md5, listed_in=meta_uri)
    ref = ArticleRef(uri=xml_uri, kind="folder")
    try:
        article = parse_article(xml, xml_uri)
    except JatsError as exc:
        result.errors.append(ItemError(xml_uri, exc.reason, exc.detail))
        if prev is None:
            result.records.append(_article_record(task, version, "error", code))
        return
    article.pmcid = article.pmcid or task.pmcid
    if article.figures:
        media = PmcMediaStore(store, _media_files(meta, store, name), listed_in=meta_uri)
    else:
        media = PmcMediaStore(store, {}, listed_in=meta_uri)
    extract_figures(ref, article, media, settings, result)
    result.article_id = task.pmcid
    for sample in result.samples:
        sample.meta["license"] = project_license(code)
        sample.meta["license_code"] = code
        sample.meta["pmc_version"] = name
    result.counts[f"license:{code or 'unknown'}"] = 1
    result.records.append(_article_record(task, version, "built", code))
    if prev:
        _add_tombstone(result, task, prev, "superseded")


def _article_record(task: PmcTask, version: tuple[Any, ...], outcome: str, code: str) -> dict[str, Any]:
    return {"type": "article", "pmc": task.pmc, "pmcid": task.pmcid, "version": int(version[0]),
            "etag": str(version[2]), "sig": json.dumps([[v[0], v[2]] for v in task.versions], separators=(",", ":")),
            "outcome": outcome, "license_code": code}


def _add_tombstone(result: ArticleResult, task: PmcTask, prev: dict[str, Any], reason: str) -> None:
    """Mark the samples an earlier build holds for this article as removed (why: ``reason``)."""
    keys = list(prev.get("sample_keys") or [])
    result.records.append({"type": "tombstone", "pmc": task.pmc, "pmcid": task.pmcid, "reason": reason,
                           "version": prev.get("version"), "build": prev.get("build"), "keys": keys})
    result.counts["tombstones"] = result.counts.get("tombstones", 0) + len(keys)
