"""Article sources: find PMC articles and open them as :class:`ArticleBundle` (XML + media).

Two layouts are supported, in any mix and under any fsspec URL (plain path, ``file://``,
``s3://``, ``http(s)://``, ``memory://`` …):

* **folder** – ``*.nxml`` / ``*.xml`` files with their media files beside them, nested to any
  depth. The PMC Cloud Service bucket (``s3://pmc-oa-opendata/PMC…/PMC….xml`` plus ``.json`` and
  media) is this layout over S3. The media of an article are the other files in its directory.
* **package** – legacy PMC OA article packages, one ``PMCxxxx.tar.gz`` (or ``.tgz``) per article.
  They are streamed into memory and never extracted to disk, so a hostile archive cannot write
  anywhere; unsafe members are reported as problems and skipped.

Discovery is streaming and deterministic: each directory is listed on its own (S3 listings are
read page by page), entries are visited in sorted order with directories compared as
``name/`` — which is exactly the order of the resulting uris, the order :class:`ArticleRef`
sorts by. Refs and media stores hold only strings and dicts (no open filesystem objects), so
they pickle across worker processes and Ray tasks; filesystems are rebuilt from the uri and
storage options where they are used (fsspec caches the instances).

Storage options are one dict for all sources. Flat keys apply to every non-local source; a key
named after a protocol whose value is a dict (``{"s3": {...}, "http": {...}}``) applies to that
protocol only. S3 is anonymous by default (the PMC bucket is public) unless the options carry
``anon`` or credentials.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath
from typing import Any

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.spec import AbstractFileSystem

from biomedclip.data.records import ArticleBundle, ArticleKind, ArticleRef, DictMediaStore, ItemError, ItemFailure

XML_SUFFIXES: tuple[str, ...] = (".nxml", ".xml")
"""Article XML suffixes, in order of preference when a package holds several."""

PACKAGE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz")
NON_MEDIA_SUFFIXES: tuple[str, ...] = (*XML_SUFFIXES, ".json")
"""Files beside an article that are not its media (the XML itself, PMC metadata JSON)."""

DEFAULT_MAX_PACKAGE_BYTES = 2_000_000_000
DEFAULT_MAX_MEMBER_BYTES = 512_000_000

_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
_S3_CREDENTIAL_KEYS = frozenset(
    {"anon", "key", "secret", "token", "profile", "session", "username", "password"}
)
_S3_PAGE_SIZE = 1000  # objects per ListObjectsV2 page (the S3 maximum); tests lower it to exercise paging


class SourceError(ItemFailure):
    """A whole source or article could not be used.

    ``reason`` is a machine-readable code (``missing_source``, ``unsupported_source``,
    ``unreadable_source``, ``unreadable_file``, ``truncated_package``, ``no_xml_in_package``,
    ``package_too_large``) so the build can count it in stats.json; ``detail`` names the file and
    says what to do.
    """


# --------------------------------------------------------------------------- names and options


def article_kind(name: str) -> ArticleKind | None:
    """Which kind of article a file name denotes (``folder`` XML, ``package``), or None."""
    lower = name.lower()
    if lower.endswith(XML_SUFFIXES):
        return "folder"
    if lower.endswith(PACKAGE_SUFFIXES):
        return "package"
    return None


def is_media_name(name: str) -> bool:
    """Whether a sibling file counts as article media (not hidden, not XML/JSON metadata)."""
    return bool(name) and not name.startswith(".") and not name.lower().endswith(NON_MEDIA_SUFFIXES)


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn CLI ``KEY=VALUE`` flags into an fsspec storage-options dict.

    Values are JSON-decoded when possible (``anon=true`` → True, ``max_concurrency=4`` → 4,
    ``client_kwargs={"region_name": "us-east-1"}`` → dict) and kept as strings otherwise (URLs).
    Dotted keys nest: ``client_kwargs.region_name=eu-west-1`` or ``s3.endpoint_url=…`` (the
    latter scopes the option to s3 sources only). ``endpoint_url`` stays a top-level key, where
    the installed s3fs accepts it; for an s3fs too old for that it is moved into
    ``client_kwargs`` when the filesystem is built.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"storage option {pair!r} is not KEY=VALUE (e.g. endpoint_url=http://host:9000)")
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"storage option {pair!r}: {part!r} is already set to a plain value")
            target = child
        target[leaf] = _decode_value(raw.strip())
    return options


def _decode_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@cache
def _s3fs_takes_endpoint_url() -> bool:
    """Whether the installed s3fs accepts ``endpoint_url`` as a constructor argument."""
    s3_class = fsspec.get_filesystem_class("s3")
    return "endpoint_url" in inspect.signature(s3_class.__init__).parameters


def _protocol(uri: str) -> str:
    return split_protocol(uri)[0] or "file"


def options_for(uri: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The storage options that apply to one uri (see the module docstring for the rules)."""
    protocol = _protocol(uri)
    flat: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    known = set(fsspec.available_protocols())
    for key, value in (storage_options or {}).items():
        if key in known and isinstance(value, dict):
            scoped[key] = value
        else:
            flat[key] = value
    options = {} if protocol in _LOCAL_PROTOCOLS else dict(flat)
    for alias in _protocol_aliases(protocol):
        options.update(scoped.get(alias, {}))
    if protocol in _S3_PROTOCOLS:
        options = _s3_options(options)
    return options


def _protocol_aliases(protocol: str) -> tuple[str, ...]:
    try:
        names = fsspec.get_filesystem_class(protocol).protocol
    except (ValueError, ImportError):
        return (protocol,)
    names = (names,) if isinstance(names, str) else tuple(names)
    return (protocol, *[n for n in names if n != protocol])


def _s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """Anonymous by default (public PMC bucket); endpoint where this s3fs expects it."""
    options = dict(options)
    if not _S3_CREDENTIAL_KEYS & options.keys():
        options["anon"] = True
    if "endpoint_url" in options and not _s3fs_takes_endpoint_url():
        client_kwargs = dict(options.get("client_kwargs") or {})
        client_kwargs.setdefault("endpoint_url", options.pop("endpoint_url"))
        options["client_kwargs"] = client_kwargs
    return options


def _filesystem(uri: str, storage_options: dict[str, Any] | None) -> tuple[AbstractFileSystem, str]:
    """(filesystem, path) for a uri; fsspec reuses cached instances for equal arguments."""
    return url_to_fs(uri, **options_for(uri, storage_options))


def _path_to_uri(fs: AbstractFileSystem, source: str, path: str) -> str:
    """Give a listed path the same style as the source (plain paths stay plain)."""
    if "://" in source:
        return fs.unstrip_protocol(path)
    return path


# --------------------------------------------------------------------------- discovery


def discover(source: str, *, storage_options: dict[str, Any] | None = None) -> Iterator[ArticleRef]:
    """Yield every article under ``source`` (a directory/prefix, one XML file or one package).

    Streaming (one directory listing in memory at a time; S3 listings page by page) and
    deterministic: the refs come out in uri order. Hidden files and directories are skipped.
    Raises :class:`SourceError` (``missing_source``, ``unsupported_source``,
    ``unreadable_source``) when the source itself cannot be used.
    """
    try:
        fs, root = _filesystem(source, storage_options)
    except (ValueError, ImportError) as exc:  # unknown protocol or its package not installed
        raise SourceError("unsupported_source", f"{source}: {exc}") from exc
    kind = article_kind(_base_name(root))
    if kind is not None and _is_file(fs, root, source):
        yield ArticleRef(uri=_path_to_uri(fs, source, root), kind=kind)
        return
    if not _is_dir(fs, root, source):
        if _is_file(fs, root, source):
            raise SourceError(
                "unsupported_source",
                f"{source} is a file but not an article (.nxml/.xml) or package (.tar.gz/.tgz); "
                "pass a folder, an article XML or a PMC OA package",
            )
        raise SourceError(
            "missing_source", f"{source} does not exist (or is empty); check the path/URL and its options"
        )
    for path, kind in _walk(fs, root, source):
        yield ArticleRef(uri=_path_to_uri(fs, source, path), kind=kind)


def discover_all(
    sources: Sequence[str], *, storage_options: dict[str, Any] | None = None
) -> Iterator[ArticleRef]:
    """Articles of several sources, source by source in the given order, each uri once."""
    seen: set[str] = set()
    for source in sources:
        for ref in discover(source, storage_options=storage_options):
            if ref.uri not in seen:
                seen.add(ref.uri)
                yield ref


def _walk(fs: AbstractFileSystem, root: str, source: str) -> Iterator[tuple[str, ArticleKind]]:
    """Depth-first walk with an explicit stack (no recursion limit on deep trees)."""
    local = _is_local(fs)
    stack: list[tuple[Iterator[tuple[str, bool]], str]] = [
        (_sorted_entries(fs, root, source), _real(root) if local else root)
    ]
    while stack:
        entries, _ = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path, is_dir = entry
        name = _base_name(path)
        if not name or name.startswith("."):
            continue
        if is_dir:
            key = _real(path) if local else path
            if key not in {k for _, k in stack}:  # a symlink back to an ancestor would loop forever
                stack.append((_sorted_entries(fs, path, source), key))
            continue
        kind = article_kind(name)
        if kind is not None:
            yield path, kind


def _is_local(fs: AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return bool(_LOCAL_PROTOCOLS & set(protocols))


def _real(path: str) -> str:
    return os.path.realpath(path)


def _sorted_entries(fs: AbstractFileSystem, path: str, source: str) -> Iterator[tuple[str, bool]]:
    """(path, is_dir) of one directory in uri order (directories compare as ``name/``)."""
    if _is_s3(fs):
        yield from _s3_entries(fs, path, source)
        return
    try:
        infos = fs.ls(path, detail=True)
    except OSError as exc:
        raise SourceError("unreadable_source", f"cannot list {path} under {source}: {exc}") from exc
    # HTTP listings name directories "…/sub/"; keep that form (no redirect per directory).
    entries = [(info["name"], info.get("type") == "directory") for info in infos]
    entries = [(p, d) for p, d in entries if p.rstrip("/") != path.rstrip("/")]
    entries.sort(key=_entry_sort_key)
    yield from entries


def _entry_sort_key(entry: tuple[str, bool]) -> str:
    path, is_dir = entry
    return path.rstrip("/") + "/" if is_dir else path


def _is_s3(fs: AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return bool(_S3_PROTOCOLS & set(protocols))


def _s3_entries(fs: AbstractFileSystem, path: str, source: str) -> Iterator[tuple[str, bool]]:
    """Stream one S3 "directory" page by page.

    ``fs.ls`` would hold (and cache) the whole listing — millions of prefixes at the top of the
    PMC bucket. S3 returns keys and common prefixes together in UTF-8 binary order (= code point
    order), so sorting each page keeps the global order.
    """
    bucket, prefix = _s3_bucket_prefix(fs, path)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": _S3_PAGE_SIZE}
    while True:
        try:
            page = _s3_list(fs, kwargs, source)
        except FileNotFoundError as exc:  # bucket deleted mid-walk
            raise SourceError("unreadable_source", f"cannot list s3://{bucket}/{prefix}: {exc}") from exc
        entries = [(f"{bucket}/{p['Prefix'].rstrip('/')}", True) for p in page.get("CommonPrefixes", [])]
        entries += [(f"{bucket}/{o['Key']}", False) for o in page.get("Contents", []) if o["Key"] != prefix]
        entries.sort(key=_entry_sort_key)
        yield from entries
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _s3_bucket_prefix(fs: AbstractFileSystem, path: str) -> tuple[str, str]:
    bucket, key, _ = fs.split_path(path)
    return bucket, (key.strip("/") + "/") if key.strip("/") else ""


def _s3_list(fs: AbstractFileSystem, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    try:
        return fs.call_s3("list_objects_v2", **kwargs)
    except FileNotFoundError:
        raise
    except Exception as exc:  # s3fs raises OSError, botocore its own types (no network: EndpointConnectionError)
        raise SourceError(
            "unreadable_source",
            f"cannot list s3://{kwargs['Bucket']}/{kwargs['Prefix']} ({source}): {type(exc).__name__}: {exc}; "
            "check the network, the endpoint and credentials (S3 is anonymous unless anon/key/secret are given)",
        ) from exc


def _is_dir(fs: AbstractFileSystem, path: str, source: str) -> bool:
    """Directory test that never lists a whole (possibly huge) S3 prefix."""
    if _is_s3(fs):
        bucket, prefix = _s3_bucket_prefix(fs, path)
        try:
            page = _s3_list(fs, {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1}, source)
        except FileNotFoundError:  # no such bucket
            return False
        return bool(page.get("KeyCount") or page.get("Contents") or page.get("CommonPrefixes"))
    try:
        return bool(fs.isdir(path))
    except OSError as exc:
        raise SourceError("unreadable_source", f"cannot inspect {source}: {exc}") from exc


def _is_file(fs: AbstractFileSystem, path: str, source: str) -> bool:
    try:
        return bool(fs.isfile(path))
    except Exception as exc:  # backend-specific types too (botocore, aiohttp), e.g. without network
        raise SourceError("unreadable_source", f"cannot inspect {source}: {type(exc).__name__}: {exc}; "
                                               "check the path or URL and the network") from exc


# --------------------------------------------------------------------------- media of folder articles


@functools.lru_cache(maxsize=16)
def _list_media(directory: str, options_json: str) -> tuple[str, ...]:
    """Media names in one directory, cached per process.

    Articles are processed in discovery order, so the articles of one flat folder arrive
    together in a worker's batch; the cache lists such a folder once per batch, not per article.
    """
    try:
        fs, path = _filesystem(directory, json.loads(options_json) or None)
        infos = fs.ls(path, detail=True)
    except OSError:
        raise
    except Exception as exc:  # backend-specific errors → the MediaStore contract (OSError)
        raise OSError(f"cannot list media in {directory}: {type(exc).__name__}: {exc}") from exc
    names = {_base_name(i["name"]) for i in infos if i.get("type") != "directory"}
    return tuple(sorted(n for n in names if is_media_name(n)))


@dataclass
class FsspecMediaStore:
    """Media of a folder article: the files beside its XML, read on demand through fsspec.

    Holds only the directory uri and storage options (picklable); the sibling listing is made
    once, on the first :meth:`names` call, because consumers that know the file names never
    need it (and a flat folder of thousands of articles would otherwise be listed per article).
    """

    directory: str
    storage_options: dict[str, Any] | None = None
    _names: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def names(self) -> list[str]:
        """Sorted base names of the media files (raises ``OSError`` when the listing fails)."""
        if self._names is None:
            options = json.dumps(self.storage_options or {}, sort_keys=True, default=str)
            self._names = _list_media(self.directory, options)
        return list(self._names)

    def read(self, name: str) -> bytes:
        """Bytes of one media file; ``KeyError`` when it is absent or not a media name."""
        if not is_media_name(name) or "/" in name or "\\" in name:
            raise KeyError(name)
        uri = f"{self.directory.rstrip('/')}/{name}"
        try:
            fs, path = _filesystem(uri, self.storage_options)
            return fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise KeyError(name) from exc
        except OSError:
            raise
        except Exception as exc:  # backend-specific errors → the MediaStore contract (OSError)
            raise OSError(f"cannot read {uri}: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- opening articles


def open_article(
    ref: ArticleRef,
    *,
    storage_options: dict[str, Any] | None = None,
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> ArticleBundle:
    """Read one article: its XML bytes and access to its media.

    Raises :class:`SourceError` (``unreadable_file``, ``truncated_package``,
    ``no_xml_in_package``, ``package_too_large``) when the article as a whole is unusable;
    per-member issues of packages land in ``bundle.problems``.
    """
    if ref.kind == "folder":
        return _open_folder_article(ref, storage_options)
    if ref.kind == "package":
        return _open_package(ref, storage_options, max_package_bytes, max_member_bytes)
    raise ValueError(f"unknown article kind {ref.kind!r} for {ref.uri}")


def _open_folder_article(ref: ArticleRef, storage_options: dict[str, Any] | None) -> ArticleBundle:
    xml = _read_whole(ref.uri, storage_options)
    directory = ref.uri.rstrip("/").rsplit("/", 1)[0] if "/" in ref.uri else "."
    media = FsspecMediaStore(directory=directory, storage_options=storage_options)
    return ArticleBundle(ref=ref, xml_name=ref.name, xml=xml, media=media)


def _unreadable(uri: str, exc: Exception) -> SourceError:
    """The error for a file that discovery listed but that cannot be read now."""
    if isinstance(exc, FileNotFoundError):
        return SourceError("unreadable_file", f"{uri} does not exist (moved or deleted since discovery?)")
    return SourceError("unreadable_file", f"cannot read {uri}: {type(exc).__name__}: {exc}; check access and retry")


def _read_whole(uri: str, storage_options: dict[str, Any] | None) -> bytes:
    try:
        fs, path = _filesystem(uri, storage_options)
        return fs.cat_file(path)
    except Exception as exc:  # fsspec backends raise backend-specific types (aiohttp, botocore, …)
        raise _unreadable(uri, exc) from exc


class _LimitedReader:
    """File wrapper that stops a package stream after ``limit`` compressed bytes."""

    def __init__(self, raw: Any, limit: int, uri: str) -> None:
        self._raw = raw
        self._limit = limit
        self._uri = uri
        self._count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._count += len(data)
        if self._count > self._limit:
            raise _too_large(self._uri, f"its size exceeds {self._limit} bytes")
        return data


def _too_large(uri: str, why: str) -> SourceError:
    return SourceError(
        "package_too_large", f"{uri}: {why}; raise max_package_bytes if this package is genuine"
    )


@dataclass
class _PackageContents:
    xml_members: list[tuple[str, bytes]] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)
    problems: list[ItemError] = field(default_factory=list)
    member_names: list[str] = field(default_factory=list)
    kept_bytes: int = 0


def _open_package(
    ref: ArticleRef, storage_options: dict[str, Any] | None, max_package_bytes: int, max_member_bytes: int
) -> ArticleBundle:
    contents = _read_package(ref.uri, storage_options, max_package_bytes, max_member_bytes)
    if not contents.xml_members:
        listed = ", ".join(contents.member_names[:20]) or "no readable members"
        raise SourceError(
            "no_xml_in_package",
            f"{ref.uri} has no .nxml/.xml member ({listed}); is it a PMC OA article package?",
        )
    xml_member, xml = _choose_xml(contents.xml_members)
    problems = list(contents.problems)
    if len(contents.xml_members) > 1:
        others = ", ".join(name for name, _ in contents.xml_members if name != xml_member)
        problems.append(
            ItemError(
                source=f"{ref.uri}!{xml_member}",
                reason="multiple_xml",
                detail=f"package has several XML members; used {xml_member} (.nxml preferred over .xml, "
                f"then name order), ignored {others}",
            )
        )
    return ArticleBundle(
        ref=ref,
        xml_name=PurePosixPath(xml_member).name,
        xml=xml,
        media=DictMediaStore(files=contents.media),
        problems=problems,
    )


def _choose_xml(members: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    def rank(member: tuple[str, bytes]) -> tuple[int, str]:
        lower = member[0].lower()
        return (next(i for i, s in enumerate(XML_SUFFIXES) if lower.endswith(s)), member[0])

    return min(members, key=rank)


def _read_package(
    uri: str, storage_options: dict[str, Any] | None, max_package_bytes: int, max_member_bytes: int
) -> _PackageContents:
    """Stream a tar.gz into memory; map every failure to one SourceError reason."""
    try:
        fs, path = _filesystem(uri, storage_options)
        size = fs.size(path)
        if size is not None and size > max_package_bytes:
            raise _too_large(uri, f"it is {size} bytes, over the {max_package_bytes}-byte limit")
        with fs.open(path, "rb", **_stream_open_kwargs(fs)) as raw:
            reader = _LimitedReader(raw, max_package_bytes, uri)
            return _collect_members(uri, reader, max_package_bytes, max_member_bytes)
    except SourceError:
        raise
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise SourceError(
            "truncated_package",
            f"{uri} is truncated or corrupt ({type(exc).__name__}: {exc}); download the package again",
        ) from exc
    except Exception as exc:  # fsspec backends raise backend-specific types (aiohttp, botocore, …)
        raise _unreadable(uri, exc) from exc


def _stream_open_kwargs(fs: AbstractFileSystem) -> dict[str, Any]:
    """HTTP: plain streaming GET (``block_size=0``) instead of range requests many servers lack."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return {"block_size": 0} if {"http", "https"} & set(protocols) else {}


def _collect_members(
    uri: str, reader: _LimitedReader, max_package_bytes: int, max_member_bytes: int
) -> _PackageContents:
    """Read members in stream mode ("r|*"): sequential, no seeking, nothing extracted.

    A truncated or corrupt stream keeps the members read intact before the break (the XML and
    any complete images) and reports the broken rest as one ``truncated_package`` problem; only
    when no XML was intact does the whole package fail (the caller raises).
    """
    contents = _PackageContents()
    current = ""  # the member being read when the stream broke ("" = between members)
    try:
        with tarfile.open(fileobj=reader, mode="r|*") as tar:
            for member in tar:
                current = member.name
                contents.member_names.append(member.name)
                unsafe = unsafe_member_reason(member)
                if unsafe:
                    contents.problems.append(
                        ItemError(source=f"{uri}!{member.name}", reason="unsafe_tar_member", detail=unsafe)
                    )
                elif member.isfile():
                    _keep_member(uri, tar, member, contents, max_package_bytes, max_member_bytes)
                current = ""
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        if not contents.xml_members:
            raise
        kept = [name for name, _ in contents.xml_members] + sorted(contents.media)
        lost = f"{current} (incomplete) and any member after it" if current else "any member after the break"
        contents.problems.append(ItemError(
            source=f"{uri}!{current or '<after ' + contents.member_names[-1] + '>'}",
            reason="truncated_package",
            detail=f"the package is truncated or corrupt ({type(exc).__name__}: {exc}); kept {len(kept)} intact "
                   f"members ({', '.join(kept[:10])}), lost {lost}; download the package again for the rest",
        ))
    return contents


def _keep_member(
    uri: str,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    contents: _PackageContents,
    max_package_bytes: int,
    max_member_bytes: int,
) -> None:
    name = PurePosixPath(member.name).name
    is_xml = name.lower().endswith(XML_SUFFIXES)
    if not (is_xml or is_media_name(name)):  # hidden junk (macOS ._ forks), metadata JSON
        return
    if name in contents.media and not is_xml:
        contents.problems.append(
            ItemError(
                source=f"{uri}!{member.name}",
                reason="duplicate_member",
                detail=f"another member already has the base name {name}; kept the first",
            )
        )
        return
    if member.size > max_member_bytes:
        contents.problems.append(
            ItemError(
                source=f"{uri}!{member.name}",
                reason="member_too_large",
                detail=f"{member.size} bytes > max_member_bytes={max_member_bytes}; skipped",
            )
        )
        return
    contents.kept_bytes += member.size
    if contents.kept_bytes > max_package_bytes:
        raise _too_large(uri, f"its members exceed {max_package_bytes} bytes uncompressed")
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    if is_xml:
        contents.xml_members.append((member.name, data))
    else:
        contents.media[name] = data


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_member_reason(member: tarfile.TarInfo) -> str:
    """Why a tar member must not be used ('' when it is a plain file or directory with a safe name).

    Nothing is ever extracted, but such members are the classic path-traversal / link attacks;
    they are refused and reported so a tampered package is visible in the stats.
    """
    name = member.name
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return f"absolute path {name!r}; refused"
    if ".." in parts:
        return f"path {name!r} escapes the package with '..'; refused"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        return f"{kind} to {member.linkname!r}; links are refused"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or fifo member; refused"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}; refused"
    return ""
