"""Tests for article sources: discovery order, opening folders and packages, tar safety, S3, HTTP.

S3 runs against a real S3-compatible server (moto's server mode on 127.0.0.1, dummy
credentials); HTTP against a local ``http.server``. Nothing here touches a non-loopback address.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import pickle
import socket
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from biomedclip.data import sources
from biomedclip.data.records import ArticleRef, DictMediaStore
from biomedclip.data.sources import (
    FsspecMediaStore,
    SourceError,
    discover,
    discover_all,
    open_article,
    options_for,
    parse_storage_options,
)

REALDATA_PACKAGES = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "jats" / "packages"

# --------------------------------------------------------------------------- synthetic inputs


def image_bytes(fmt: str, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A tiny real image in the given Pillow format."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format=fmt)
    return buffer.getvalue()


def jats(pmcid: str, graphic: str = "fig1") -> bytes:
    return (
        f'<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>'
        f'<article-id pub-id-type="pmc">{pmcid}</article-id></article-meta></front><body>'
        f'<fig id="f1"><caption><p>A caption.</p></caption><graphic xlink:href="{graphic}"/></fig>'
        f"</body></article>"
    ).encode()


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    """Add one member with a literal name (tarfile.add would normalise it)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def package_bytes(members: list[tuple[str, bytes]], top: str | None = None) -> bytes:
    """A .tar.gz like a PMC OA package: a top folder holding the nxml and media."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if top:
            add_member(tar, top + "/", type=tarfile.DIRTYPE, mode=0o755)
        for name, data in members:
            add_member(tar, f"{top}/{name}" if top else name, data)
    return buffer.getvalue()


def build_corpus(root: Path) -> list[str]:
    """A mixed local corpus; returns the expected article uris in discovery order."""
    a1 = root / "a" / "PMC001"
    a1.mkdir(parents=True)
    (a1 / "PMC001.nxml").write_bytes(jats("PMC001"))
    (a1 / "fig1.jpg").write_bytes(image_bytes("JPEG"))
    (a1 / "fig1.gif").write_bytes(image_bytes("GIF"))  # PMC ships .gif thumbnails beside the .jpg
    (a1 / "PMC001.json").write_text("{}")
    deep = root / "b" / "deep" / "er"
    deep.mkdir(parents=True)
    (deep / "PMC002.xml").write_bytes(jats("PMC002", "f2.png"))
    (deep / "f2.png").write_bytes(image_bytes("PNG"))
    (root / "PMC003.tar.gz").write_bytes(
        package_bytes(
            [
                ("PMC003.nxml", jats("PMC003")),
                ("fig1.jpg", image_bytes("JPEG")),
                ("fig1.gif", image_bytes("GIF")),
            ],
            top="PMC003",
        )
    )
    (root / "PMC004.tgz").write_bytes(package_bytes([("x.nxml", jats("PMC004"))], top="PMC004"))
    hidden = root / ".hidden"
    hidden.mkdir()
    (hidden / "PMC999.nxml").write_bytes(jats("PMC999"))
    (root / ".PMC998.nxml").write_bytes(jats("PMC998"))
    (root / "notes.txt").write_text("not an article")
    return [
        str(root / "PMC003.tar.gz"),
        str(root / "PMC004.tgz"),
        str(a1 / "PMC001.nxml"),
        str(deep / "PMC002.xml"),
    ]


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "corpus"
    root.mkdir()
    return root, build_corpus(root)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------- discovery


def test_discover_finds_all_kinds_in_uri_order(corpus: tuple[Path, list[str]]) -> None:
    root, expected = corpus
    refs = list(discover(str(root)))
    assert [r.uri for r in refs] == expected
    assert refs == sorted(refs), "discovery order must equal ArticleRef (uri) order"
    kinds = {Path(r.uri).name: r.kind for r in refs}
    assert kinds == {
        "PMC003.tar.gz": "package",
        "PMC004.tgz": "package",
        "PMC001.nxml": "folder",
        "PMC002.xml": "folder",
    }


def test_discover_is_deterministic_and_skips_hidden(corpus: tuple[Path, list[str]]) -> None:
    root, _ = corpus
    first = list(discover(str(root)))
    assert first == list(discover(str(root) + "/"))
    assert not any("PMC99" in r.uri for r in first)


def test_discover_file_url_and_single_files(corpus: tuple[Path, list[str]]) -> None:
    root, expected = corpus
    assert [r.uri for r in discover(root.as_uri())] == ["file://" + u for u in expected]
    assert list(discover(expected[0])) == [ArticleRef(expected[0], "package")]
    assert list(discover(expected[2])) == [ArticleRef(expected[2], "folder")]


def test_discover_missing_and_unsupported_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        list(discover(str(tmp_path / "nowhere")))
    assert info.value.reason == "missing_source"
    assert "nowhere" in info.value.detail
    with pytest.raises(SourceError) as info:
        list(discover(str(tmp_path / "gone.tar.gz")))
    assert info.value.reason == "missing_source"
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError) as info:
        list(discover(str(tmp_path / "readme.txt")))
    assert info.value.reason == "unsupported_source"


def test_discover_unknown_protocol() -> None:
    with pytest.raises(SourceError) as info:
        list(discover("nosuchproto://bucket/x"))
    assert info.value.reason == "unsupported_source"


def test_discover_survives_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "A.nxml").write_bytes(jats("A"))
    os.symlink(tmp_path, tmp_path / "d" / "loop")
    assert [Path(r.uri).name for r in discover(str(tmp_path))] == ["A.nxml"]


def test_discover_deep_nesting(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"l{i}" for i in range(60)])
    deep.mkdir(parents=True)
    (deep / "PMC1.nxml").write_bytes(jats("PMC1"))
    assert [r.uri for r in discover(str(tmp_path))] == [str(deep / "PMC1.nxml")]


def test_discover_all_mixes_sources_in_order_each_once(
    corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, expected = corpus
    single = tmp_path / "single.nxml"
    single.write_bytes(jats("S"))
    refs = list(discover_all([str(single), str(root), str(root / "a"), str(single)]))
    assert [r.uri for r in refs] == [str(single), *expected]


def test_discover_generic_fsspec_memory_filesystem() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe(
        {"/mcorpus/z/P1.nxml": jats("P1"), "/mcorpus/z/p.png": image_bytes("PNG"), "/mcorpus/P0.tgz": b"x"}
    )
    try:
        refs = list(discover("memory://mcorpus"))
        assert [r.uri for r in refs] == ["memory:///mcorpus/P0.tgz", "memory:///mcorpus/z/P1.nxml"]
        bundle = open_article(refs[1])
        assert bundle.media.names() == ["p.png"]
    finally:
        fs.rm("/mcorpus", recursive=True)


# --------------------------------------------------------------------------- opening


def test_open_folder_article_media_lazy_and_filtered(corpus: tuple[Path, list[str]]) -> None:
    _, expected = corpus
    bundle = open_article(ArticleRef(expected[2], "folder"))
    assert bundle.xml_name == "PMC001.nxml"
    assert b"PMC001" in bundle.xml
    assert isinstance(bundle.media, FsspecMediaStore)
    assert bundle.media.names() == ["fig1.gif", "fig1.jpg"]  # no xml, no json
    assert bundle.media.read("fig1.jpg")[:2] == b"\xff\xd8"
    assert bundle.media.read("fig1.gif")[:3] == b"GIF"
    for absent in ("nope.png", "PMC001.json", "PMC001.nxml", "../x.png"):
        with pytest.raises(KeyError):
            bundle.media.read(absent)
    assert bundle.problems == []


def test_open_package_article(corpus: tuple[Path, list[str]]) -> None:
    _, expected = corpus
    bundle = open_article(ArticleRef(expected[0], "package"))
    assert bundle.xml_name == "PMC003.nxml"
    assert isinstance(bundle.media, DictMediaStore)
    assert sorted(bundle.media.names()) == ["fig1.gif", "fig1.jpg"]
    assert Image.open(io.BytesIO(bundle.media.read("fig1.jpg"))).size == (8, 6)
    assert bundle.problems == []


def test_open_missing_file_is_unreadable(tmp_path: Path) -> None:
    for kind, name in (("folder", "gone.nxml"), ("package", "gone.tar.gz")):
        with pytest.raises(SourceError) as info:
            open_article(ArticleRef(str(tmp_path / name), kind))
        assert info.value.reason == "unreadable_file"
        assert name in info.value.detail


def test_refs_bundles_and_errors_pickle(corpus: tuple[Path, list[str]]) -> None:
    _, expected = corpus
    for uri in expected:
        ref = next(iter(discover(uri)))
        clone = pickle.loads(pickle.dumps(ref))
        assert clone == ref
        bundle = pickle.loads(pickle.dumps(open_article(clone)))
        names = list(bundle.media.names())
        for name in names:
            assert bundle.media.read(name)
    error = pickle.loads(pickle.dumps(SourceError("truncated_package", "x.tar.gz: cut")))
    assert (error.reason, error.detail) == ("truncated_package", "x.tar.gz: cut")
    assert error.to_item_error("x.tar.gz").reason == "truncated_package"


def _media_in_worker(ref: ArticleRef) -> dict[str, int]:
    bundle = open_article(ref)
    return {name: len(bundle.media.read(name)) for name in bundle.media.names()}


def test_open_article_in_spawned_worker(corpus: tuple[Path, list[str]]) -> None:
    root, _ = corpus
    refs = list(discover(str(root)))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        results = list(pool.map(_media_in_worker, refs))
    assert [sorted(r) for r in results] == [
        ["fig1.gif", "fig1.jpg"],
        [],
        ["fig1.gif", "fig1.jpg"],
        ["f2.png"],
    ]


# --------------------------------------------------------------------------- package safety and errors


def evil_package() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add_member(tar, "PMC7/", type=tarfile.DIRTYPE)
        add_member(tar, "PMC7/PMC7.nxml", jats("PMC7"))
        add_member(tar, "PMC7/fig1.jpg", image_bytes("JPEG"))
        add_member(tar, "/etc/evil", b"owned")
        add_member(tar, "../../evil", b"owned")
        add_member(tar, "PMC7/evil_symlink", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_member(tar, "PMC7/evil_hardlink", type=tarfile.LNKTYPE, linkname="../../../evil")
        add_member(tar, "PMC7/evil_fifo", type=tarfile.FIFOTYPE)
        add_member(tar, "PMC7/evil_dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    return buffer.getvalue()


def test_unsafe_members_are_reported_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "in" / "PMC7.tar.gz"
    package.parent.mkdir()
    package.write_bytes(evil_package())
    work = tmp_path / "work" / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # a relative "../../evil" extraction would land under tmp_path
    system_tmp = Path(tempfile.gettempdir())
    watched = [
        Path("/etc/evil"),
        Path("/evil"),
        system_tmp / "evil",
        tmp_path / "evil",
        tmp_path / "work" / "evil",
    ]
    existed = {p: p.exists() for p in watched}
    before, tmp_before = tree(tmp_path), set(os.listdir(system_tmp))

    bundle = open_article(ArticleRef(str(package), "package"))

    assert bundle.xml_name == "PMC7.nxml"
    assert list(bundle.media.names()) == ["fig1.jpg"]
    unsafe = {p.source.split("!", 1)[1]: p for p in bundle.problems if p.reason == "unsafe_tar_member"}
    assert set(unsafe) == {
        "/etc/evil",
        "../../evil",
        "PMC7/evil_symlink",
        "PMC7/evil_hardlink",
        "PMC7/evil_fifo",
        "PMC7/evil_dev",
    }
    assert all(p.source.startswith(str(package) + "!") and p.detail for p in unsafe.values())
    assert (
        "symlink" in unsafe["PMC7/evil_symlink"].detail and "hardlink" in unsafe["PMC7/evil_hardlink"].detail
    )
    assert tree(tmp_path) == before
    assert set(os.listdir(system_tmp)) - tmp_before == set()
    assert {p: p.exists() for p in watched} == existed
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))


def test_truncated_and_corrupt_packages(tmp_path: Path) -> None:
    good = package_bytes([("P.nxml", jats("P")), ("f.jpg", image_bytes("JPEG"))], top="P")
    # cut after the XML: the intact XML is kept, the broken rest is one counted problem
    (tmp_path / "half.tar.gz").write_bytes(good[: len(good) // 2])
    half = open_article(ArticleRef(str(tmp_path / "half.tar.gz"), "package"))
    assert half.xml == jats("P") and "f.jpg" not in half.media.names()
    assert [p.reason for p in half.problems] == ["truncated_package"]
    assert "half.tar.gz" in half.problems[0].source and "kept 1 intact" in half.problems[0].detail
    cases = {
        "garbage.tar.gz": b"not a gzip stream at all" * 20,
        "flipped.tar.gz": good[:40] + bytes(b ^ 0xFF for b in good[40:80]) + good[80:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(SourceError) as info:
            open_article(ArticleRef(str(path), "package"))
        assert info.value.reason == "truncated_package", name
        assert name in info.value.detail


def test_package_without_xml(tmp_path: Path) -> None:
    path = tmp_path / "PMC8.tar.gz"
    path.write_bytes(package_bytes([("f.jpg", image_bytes("JPEG")), ("paper.pdf", b"%PDF")], top="PMC8"))
    with pytest.raises(SourceError) as info:
        open_article(ArticleRef(str(path), "package"))
    assert info.value.reason == "no_xml_in_package"
    assert "PMC8.tar.gz" in info.value.detail and "paper.pdf" in info.value.detail


def test_prefers_nxml_and_records_choice(tmp_path: Path) -> None:
    path = tmp_path / "PMC9.tar.gz"
    path.write_bytes(
        package_bytes([("a.xml", b"<a/>"), ("b.nxml", jats("PMC9")), ("f.jpg", b"jpg")], top="PMC9")
    )
    bundle = open_article(ArticleRef(str(path), "package"))
    assert bundle.xml_name == "b.nxml"
    assert list(bundle.media.names()) == ["f.jpg"]
    [problem] = bundle.problems
    assert problem.reason == "multiple_xml" and problem.source.endswith("!PMC9/b.nxml")
    assert "PMC9/a.xml" in problem.detail


def test_duplicate_and_hidden_members(tmp_path: Path) -> None:
    path = tmp_path / "PMC12.tar.gz"
    members = [("P.nxml", jats("P")), ("f.jpg", b"first"), ("sub/f.jpg", b"second"), ("._f.jpg", b"junk")]
    path.write_bytes(package_bytes(members, top="P"))
    bundle = open_article(ArticleRef(str(path), "package"))
    assert list(bundle.media.names()) == ["f.jpg"] and bundle.media.read("f.jpg") == b"first"
    assert [(p.reason, p.source) for p in bundle.problems] == [("duplicate_member", f"{path}!P/sub/f.jpg")]


def test_size_limits(tmp_path: Path) -> None:
    path = tmp_path / "PMC10.tar.gz"
    big = os.urandom(50_000)
    path.write_bytes(
        package_bytes([("PMC10.nxml", jats("PMC10")), ("big.tif", big), ("s.jpg", b"s")], top="P")
    )
    bundle = open_article(ArticleRef(str(path), "package"), max_member_bytes=10_000)
    assert sorted(bundle.media.names()) == ["s.jpg"]
    assert [(p.reason, p.source.rsplit("!", 1)[1]) for p in bundle.problems] == [
        ("member_too_large", "P/big.tif")
    ]
    for limit in (1_000, 30_000):  # compressed size over the limit; uncompressed members over it
        with pytest.raises(SourceError) as info:
            open_article(ArticleRef(str(path), "package"), max_package_bytes=limit)
        assert info.value.reason == "package_too_large"


def test_package_stream_limit_without_known_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.implementations.local import LocalFileSystem

    path = tmp_path / "PMC11.tar.gz"
    path.write_bytes(package_bytes([("PMC11.nxml", jats("PMC11")), ("r.bin", os.urandom(20_000))]))
    monkeypatch.setattr(LocalFileSystem, "size", lambda self, p: None)  # e.g. HTTP without Content-Length
    with pytest.raises(SourceError) as info:
        open_article(ArticleRef(str(path), "package"), max_package_bytes=5_000)
    assert info.value.reason == "package_too_large"


# --------------------------------------------------------------------------- storage options


def test_parse_storage_options() -> None:
    options = parse_storage_options(
        [
            "endpoint_url=http://127.0.0.1:9000",
            "anon=true",
            "max_concurrency=4",
            "client_kwargs.region_name=eu-west-1",
            's3.config_kwargs={"retries": {"max_attempts": 2}}',
        ]
    )
    assert options == {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": True,
        "max_concurrency": 4,
        "client_kwargs": {"region_name": "eu-west-1"},
        "s3": {"config_kwargs": {"retries": {"max_attempts": 2}}},
    }
    with pytest.raises(ValueError):
        parse_storage_options(["no-equals-sign"])


def test_options_for_protocols() -> None:
    assert options_for("s3://pmc-oa-opendata/x", None) == {"anon": True}
    assert options_for("s3://b/x", {"key": "k", "secret": "s"}) == {"key": "k", "secret": "s"}
    assert options_for("s3://b/x", {"anon": False}) == {"anon": False}
    mixed = {"timeout": 5, "s3": {"endpoint_url": "http://127.0.0.1:1"}, "http": {"headers": {"a": "b"}}}
    assert options_for("s3://b/x", mixed) == {
        "timeout": 5,
        "endpoint_url": "http://127.0.0.1:1",
        "anon": True,
    }
    assert options_for("https://h/x", mixed) == {"timeout": 5, "headers": {"a": "b"}}
    assert options_for("/local/path", mixed) == {}


def test_endpoint_moves_to_client_kwargs_for_old_s3fs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_s3fs_takes_endpoint_url", lambda: False)
    assert options_for("s3://b/x", {"endpoint_url": "http://127.0.0.1:9"}) == {
        "anon": True,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
    }


# --------------------------------------------------------------------------- S3 (moto server mode)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


S3_BUCKET = "pmc-test-bucket"
S3_LAYOUT = {
    "oa/PMC10000000.1/PMC10000000.1.xml": jats("PMC10000000", "fig1"),
    "oa/PMC10000000.1/PMC10000000.1.json": json.dumps({"pmcid": "PMC10000000"}).encode(),
    "oa/PMC10000000.1/fig1.jpg": image_bytes("JPEG"),
    "oa/PMC10000000.1/fig1.gif": image_bytes("GIF"),
    "oa/PMC10000001.1/PMC10000001.1.xml": jats("PMC10000001", "g.png"),
    "oa/PMC10000001.1/g.png": image_bytes("PNG"),
    "oa/legacy/PMC555.tar.gz": package_bytes(
        [("PMC555.nxml", jats("PMC555")), ("f.jpg", b"jpeg")], top="PMC555"
    ),
    "oa/legacy/": b"",  # a "directory marker" object, as some tools create
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server on loopback holding a PMC-like layout (public-read)."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=S3_BUCKET)
            for key, body in S3_LAYOUT.items():
                client.put_object(Bucket=S3_BUCKET, Key=key, Body=body, ACL="public-read")
            client.put_object(Bucket=S3_BUCKET, Key="private/P1.nxml", Body=jats("P1"))
            yield endpoint
        finally:
            server.stop()


S3_EXPECTED = [
    f"s3://{S3_BUCKET}/oa/PMC10000000.1/PMC10000000.1.xml",
    f"s3://{S3_BUCKET}/oa/PMC10000001.1/PMC10000001.1.xml",
    f"s3://{S3_BUCKET}/oa/legacy/PMC555.tar.gz",
]


@pytest.mark.parametrize("page_size", [1000, 1])
def test_s3_discover_streams_pages_in_order(
    s3_endpoint: str, page_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_S3_PAGE_SIZE", page_size)
    options = {"endpoint_url": s3_endpoint}  # anonymous by default, like the public PMC bucket
    refs = list(discover(f"s3://{S3_BUCKET}/oa", storage_options=options))
    assert [r.uri for r in refs] == S3_EXPECTED
    assert [r.kind for r in refs] == ["folder", "folder", "package"]


def test_s3_open_folder_and_package(s3_endpoint: str) -> None:
    options = parse_storage_options([f"endpoint_url={s3_endpoint}"])
    folder_ref, second_ref, package_ref = discover(f"s3://{S3_BUCKET}/oa/", storage_options=options)

    bundle = open_article(pickle.loads(pickle.dumps(folder_ref)), storage_options=options)
    assert bundle.xml_name == "PMC10000000.1.xml" and b"PMC10000000" in bundle.xml
    media = pickle.loads(pickle.dumps(bundle.media))
    assert media.names() == ["fig1.gif", "fig1.jpg"]
    assert media.read("fig1.jpg") == S3_LAYOUT["oa/PMC10000000.1/fig1.jpg"]
    with pytest.raises(KeyError):
        media.read("missing.jpg")
    assert open_article(second_ref, storage_options=options).media.names() == ["g.png"]

    package = open_article(package_ref, storage_options=options)
    assert package.xml_name == "PMC555.nxml"
    assert package.media.read("f.jpg") == b"jpeg"


def test_s3_single_file_missing_and_credentials(s3_endpoint: str) -> None:
    options = {"endpoint_url": s3_endpoint}
    assert [r.uri for r in discover(S3_EXPECTED[2], storage_options=options)] == [S3_EXPECTED[2]]
    for missing in (f"s3://{S3_BUCKET}/nope", f"s3://{S3_BUCKET}/oa/nope.xml", "s3://no-such-bucket-x/oa"):
        with pytest.raises(SourceError) as info:
            list(discover(missing, storage_options=options))
        assert info.value.reason == "missing_source"
        assert missing in info.value.detail
    [private] = discover(f"s3://{S3_BUCKET}/private", storage_options=options)
    with pytest.raises(SourceError) as info:  # anonymous read of a private object
        open_article(private, storage_options=options)
    assert info.value.reason == "unreadable_file"
    signed = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    assert b"P1" in open_article(private, storage_options=signed).xml


# --------------------------------------------------------------------------- HTTP (directory listings)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients closing streamed responses early are fine


@pytest.fixture()
def http_corpus(corpus: tuple[Path, list[str]]) -> Iterator[tuple[str, Path]]:
    root, _ = corpus
    server = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_directory_listing_walk_and_open(http_corpus: tuple[str, Path]) -> None:
    base, _ = http_corpus
    refs = list(discover(base + "/"))
    assert [r.uri for r in refs] == [
        f"{base}/PMC003.tar.gz",
        f"{base}/PMC004.tgz",
        f"{base}/a/PMC001/PMC001.nxml",
        f"{base}/b/deep/er/PMC002.xml",
    ]
    folder = open_article(refs[2])
    assert folder.media.names() == ["fig1.gif", "fig1.jpg"]
    assert folder.media.read("fig1.gif")[:3] == b"GIF"
    package = open_article(refs[0])
    assert sorted(package.media.names()) == ["fig1.gif", "fig1.jpg"]


def test_http_single_file_and_missing(http_corpus: tuple[str, Path]) -> None:
    base, _ = http_corpus
    assert list(discover(f"{base}/a/PMC001/PMC001.nxml")) == [
        ArticleRef(f"{base}/a/PMC001/PMC001.nxml", "folder")
    ]
    for missing in (f"{base}/nope", f"{base}/nope.tar.gz"):
        with pytest.raises(SourceError) as info:
            list(discover(missing))
        assert info.value.reason == "missing_source"


def test_mixed_local_s3_http_with_scoped_options(s3_endpoint: str, http_corpus: tuple[str, Path]) -> None:
    base, root = http_corpus
    options = parse_storage_options([f"s3.endpoint_url={s3_endpoint}"])  # must not leak into http
    refs = list(discover_all([f"s3://{S3_BUCKET}/oa", f"{base}/a", str(root / "b")], storage_options=options))
    assert [r.uri for r in refs] == [
        *S3_EXPECTED,
        f"{base}/a/PMC001/PMC001.nxml",
        str(root / "b/deep/er/PMC002.xml"),
    ]
    for ref in refs:
        assert open_article(ref, storage_options=options).xml


# --------------------------------------------------------------------------- real PMC packages


def real_package(name: str) -> Path:
    path = REALDATA_PACKAGES / name
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    return path


def test_real_package_with_figure() -> None:
    path = real_package("PMC12419688.tar.gz")
    bundle = open_article(next(iter(discover(str(path)))))
    assert bundle.xml_name == "koaf197.nxml" and b"<article" in bundle.xml
    names = set(bundle.media.names())
    assert {"koaf197f1.jpg", "koaf197f1.gif", "koaf197.pdf"} <= names
    assert Image.open(io.BytesIO(bundle.media.read("koaf197f1.jpg"))).size == (750, 495)
    assert bundle.problems == []


def test_real_package_without_figures() -> None:
    bundle = open_article(ArticleRef(str(real_package("PMC11518443.tar.gz")), "package"))
    assert bundle.xml_name.endswith(".nxml") and bundle.xml
    assert not [n for n in bundle.media.names() if n.endswith((".jpg", ".gif", ".tif", ".png"))]
