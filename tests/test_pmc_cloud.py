"""The PMC Cloud source against a real S3 server on loopback (moto's server mode).

Every request the build makes goes through a small recording proxy in front of moto, so the tests
assert on the requests themselves (what was listed, what was fetched) and can inject what a busy
S3 does: 503 SlowDown, connection resets, bodies cut short, responses slower than the timeout.
Nothing here mocks our own code; nothing touches a non-loopback address.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow.parquet as pq
import pytest

from biomedclip.data import pmc_cloud
from biomedclip.data.pipeline import BuildConfig, build
from biomedclip.data.pmc_cloud import (
    CC_LICENSES,
    PmcCloudError,
    PmcOptions,
    canonical_license,
    is_pmc_cloud_source,
    location_for,
    parse_licenses,
    project_license,
)
from biomedclip.data.pmc_cloud_fake import (
    FakeArticle,
    article_objects,
    bucket_objects,
    inventory_objects,
    inventory_rows,
    put_objects,
)
from biomedclip.data.records import ArticleRef
from biomedclip.data.sources import SourceError, open_article

BUCKET = "pmc-mirror"
GOOD = "2026-05-01T01-00Z"
WRITING = "2026-05-02T01-00Z"  # newest folder: data files there, manifest not yet
FAST = {"retry_base_s": 0.01, "retry_max_s": 0.05, "timeout_s": 0.5}


# --------------------------------------------------------------------------- the fake bucket


def corpus() -> list[FakeArticle]:
    """57 PMCIDs in the inventory (59 versions) plus one article the inventory does not list."""
    articles = [FakeArticle(11000000 + i, figures=1 + i % 3, license_code="CC0" if i % 7 == 0 else "CC BY")
                for i in range(48)]
    articles += [
        FakeArticle(11370360, 1, license_code="TDM", is_manuscript=True, figures=1),  # two versions:
        FakeArticle(11370360, 2, figures=2),                                           # newest published
        FakeArticle(11370370, 1, license_code="CC BY-NC", figures=1),                  # newest is a
        FakeArticle(11370370, 2, license_code="TDM", is_manuscript=True, figures=1),   # manuscript
        FakeArticle(11400001, license_code="TDM", is_manuscript=True, figures=1),      # author manuscript
        FakeArticle(11400002, is_retracted=True, figures=1),
        FakeArticle(10000000, license_code="CC0", is_historical_ocr=True, figures=0),  # 1867 OCR scan
        FakeArticle(11400003, license_code="CC BY-NC-ND", figures=1),
        FakeArticle(11400004, extra_media=("pdf", "xlsx"), figures=1),
        FakeArticle(11400005, figures=2, bad_md5=(2,)),
        FakeArticle(11400006, in_inventory=False),
        FakeArticle(11400007, graphic_ext_in_href=True, figures=1),
    ]
    return articles


def keys_of(article: FakeArticle) -> list[str]:
    return [f"{article.pmcid}_f{n}" for n in range(1, article.figures + 1)]


def newest(articles: list[FakeArticle]) -> dict[int, FakeArticle]:
    """The newest listed version per PMCID."""
    chosen: dict[int, FakeArticle] = {}
    for a in articles:
        if a.in_inventory and (a.pmc not in chosen or a.version > chosen[a.pmc].version):
            chosen[a.pmc] = a
    return chosen


@dataclass
class Proxy:
    """HTTP proxy in front of moto: logs each request, injects faults chosen by ``fault``."""

    upstream: int
    log: list[dict] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    fault: Callable[[str, str, int], str | None] | None = None
    delay: float = 0.0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                entry = {"method": self.command, "path": unquote(parts.path),
                         "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                         "range": self.headers.get("Range")}
                proxy.log.append(entry)
                proxy.attempts[(self.command, self.path)] += 1
                fault = proxy.fault(self.command, entry["path"], proxy.attempts[(self.command, self.path)]) \
                    if proxy.fault else None
                if proxy.delay:
                    time.sleep(proxy.delay)
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "timeout":
                    time.sleep(1.0)  # longer than the client's 0.5 s read timeout
                if fault == "slowdown":
                    xml = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncate" and len(payload) > 64:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - stdlib naming

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> list[dict]:
        return self.log[mark:]


def gets(entries: list[dict], bucket: str = BUCKET) -> list[str]:
    """Keys fetched (GET of an object, not a listing) in ``entries``."""
    prefix = f"/{bucket}/"
    return [e["path"][len(prefix):] for e in entries
            if e["method"] == "GET" and e["path"].startswith(prefix) and "list-type" not in e["query"]]


def lists(entries: list[dict]) -> list[str]:
    return [e["query"].get("prefix", "") for e in entries if e["method"] == "GET" and "list-type" in e["query"]]


@dataclass
class Server:
    endpoint: str  # the proxy, which the build uses
    moto: str
    proxy: Proxy
    client: object

    def options(self) -> dict:
        return {"endpoint_url": self.endpoint}


def seed(bucket: str, objects: dict[str, bytes]) -> None:
    """Put test objects straight into moto's store (public-read), which is much faster than a PUT
    each; every request of the code under test still goes over HTTP."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import get_canned_acl, s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, body in objects.items():
        backend.put_object(bucket, key, body).set_acl(get_canned_acl("public-read"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "NO_PROXY": "127.0.0.1,localhost"}.items():
            patch.setenv(name, value)
        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        try:
            import boto3

            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            articles = corpus()
            seed(BUCKET, bucket_objects(articles))
            seed(BUCKET, inventory_objects(GOOD, inventory_rows(articles)))
            seed(BUCKET, inventory_objects(WRITING, inventory_rows(articles), manifest=False))
            proxy = Proxy(upstream=port)
            proxy.start()
            yield Server(proxy.url, f"http://127.0.0.1:{port}", proxy, client)
        finally:
            moto.stop()


def config(server: Server, out: Path, **pmc: object) -> BuildConfig:
    return BuildConfig(sources=[f"s3://{BUCKET}/"], out=out, workers=1, shard_size=20,
                       splits={"train": 0.8, "val": 0.1, "test": 0.1}, storage_options=server.options(),
                       checkpoint_seconds=0.0, pmc=PmcOptions(**{**FAST, **pmc}))


def digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*/*.tar"))}


def samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Every shard sample's members by key: {key: {"jpg": …, "txt": …, "json": …}}."""
    found: dict[str, dict[str, bytes]] = {}
    for shard in sorted(out.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                found.setdefault(key, {})[ext] = data.read() if data else b""
    return found


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


@pytest.fixture(scope="module")
def reference(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The default build, once: (folder, the requests it made)."""
    out = tmp_path_factory.mktemp("pmc") / "reference"
    mark = server.proxy.mark()
    build(config(server, out))
    return out, server.proxy.since(mark)


# --------------------------------------------------------------------------- names, licences, locations


def test_licence_spellings_and_locations() -> None:
    assert canonical_license("cc-by-nc") == canonical_license("CC_BY_NC") == "CC BY-NC"
    assert canonical_license("cc0") == canonical_license("CC 0") == "CC0"
    assert parse_licenses(["cc"]) == CC_LICENSES
    assert parse_licenses(["cc-by,TDM", "tdm"]) == ("CC BY", "TDM")
    assert parse_licenses(["any"]) == ("*",)
    with pytest.raises(PmcCloudError):
        parse_licenses([" , "])
    assert [project_license(c) for c in ("CC BY", "CC BY-NC-ND", "CC0", "TDM", "")] == [
        "cc-by", "cc-by-nc-nd", "cc0", "tdm", "unknown"]

    aws = location_for("https://pmc-oa-opendata.s3.amazonaws.com/")
    assert (aws.bucket, aws.prefix, aws.endpoint_url, aws.addressing) == ("pmc-oa-opendata", "", None, "virtual")
    minio = location_for("http://127.0.0.1:9000/mirror/pmc/")
    assert (minio.bucket, minio.prefix, minio.endpoint_url) == ("mirror", "pmc/", "http://127.0.0.1:9000")
    s3 = location_for("s3://mirror/pmc", {"s3": {"endpoint_url": "http://h:1"}})
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("mirror", "pmc/", "http://h:1")
    # the real bucket's root needs no request to be recognised; one article folder stays a folder walk
    assert is_pmc_cloud_source("s3://pmc-oa-opendata/", PmcOptions())
    assert is_pmc_cloud_source("https://pmc-oa-opendata.s3.amazonaws.com/", PmcOptions())
    assert not is_pmc_cloud_source("s3://pmc-oa-opendata/PMC10000000.1/PMC10000000.1.xml", PmcOptions())
    assert not is_pmc_cloud_source("s3://pmc-oa-opendata/", PmcOptions(mode="off"))
    with pytest.raises(PmcCloudError, match="s3:// or http"):
        is_pmc_cloud_source("/data/pmc", PmcOptions(mode="on"))


# --------------------------------------------------------------------------- the default build


def test_build_keeps_exactly_the_right_articles_and_requests(server: Server, reference: tuple[Path, list]) -> None:
    out, requests = reference
    articles = corpus()
    chosen = newest(articles)
    kept = [a for a in chosen.values() if a.license_code in CC_LICENSES and not a.is_retracted
            and not a.is_historical_ocr]
    expected = {k: a for a in kept for k in keys_of(a) if not (a.pmc == 11400005 and k.endswith("_f2"))}
    rows = manifest(out)
    assert {r["key"] for r in rows} == set(expected)
    assert len(rows) == len(expected) == 102
    for row in rows:
        article = expected[row["key"]]
        assert row["license_code"] == article.license_code
        assert row["license"] == project_license(article.license_code)
        assert row["pmc_version"] == article.name
        assert row["source"] == f"s3://{BUCKET}/{article.name}/{article.name}.xml"
    assert {r["license"] for r in rows} == {"cc-by", "cc0", "cc-by-nc-nd"}
    assert [r["pmc_version"] for r in rows if r["pmcid"] == "PMC11370360"] == ["PMC11370360.2"] * 2

    stats = json.loads((out / "stats.json").read_text())
    info = stats["pmc_cloud"]
    manifest_body = server.client.get_object(  # type: ignore[attr-defined]
        Bucket=BUCKET, Key=f"inventory-reports/pmc-oa-opendata/metadata/{GOOD}/manifest.json")["Body"].read()
    assert info["snapshot"] == GOOD and info["incomplete_snapshots_skipped"] == [WRITING]
    assert info["manifest_sha256"] == hashlib.sha256(manifest_body).hexdigest()
    assert info["inventory"] == {"rows": 59, "metadata_rows": 59, "other_rows": 0, "duplicate_rows": 0, "files": 2}
    assert info["plan"]["tasks"] == info["plan"]["pmcids"] == 57 and info["plan"]["versions_not_selected"] == 2
    assert info["skipped"] == {"historical_ocr": 1, "license_excluded": 2, "retracted": 1}
    assert info["licenses"] == dict(Counter(a.license_code for a in kept)) == {"CC BY": 45, "CC BY-NC-ND": 1,
                                                                                "CC0": 7}
    assert stats["articles"]["seen"] == 53 and stats["errors"] == {"md5_mismatch": 1}
    [error] = stats["error_items"]
    bad = next(a for a in articles if a.pmc == 11400005)
    assert error["source"] == f"s3://{BUCKET}/{bad.name}/{bad.name}.xml#f2:{bad.figure_name(2)}"
    assert bad.figure_name(2) in error["detail"] and "md5" in error["detail"]

    # requests: the inventory listing and files, then per article its metadata, XML and figures
    inventory = "inventory-reports/pmc-oa-opendata/metadata/"
    assert lists(requests) == ["inventory-reports/", inventory]  # one probe, one listing: nothing else walked
    expected_gets = [f"{inventory}{WRITING}/manifest.json", f"{inventory}{GOOD}/manifest.json",
                     f"{inventory}data/{GOOD}-0000.csv.gz", f"{inventory}data/{GOOD}-0001.csv.gz"]
    for article in sorted(chosen.values(), key=lambda a: -a.pmc):
        expected_gets.append(article.metadata_key)
        if article in kept:
            expected_gets.append(f"{article.name}/{article.name}.xml")
            expected_gets += [f"{article.name}/{article.figure_name(n)}" for n in range(1, article.figures + 1)]
    assert gets(requests) == expected_gets
    assert len(requests) == len(expected_gets) + 2
    assert info["requests"] == len(requests) - 6  # per-article requests; the plan's are not counted there
    assert not [e for e in requests if any(s in e["path"] for s in ("deprecated", "hive", ".pdf", ".xlsx", ".txt"))]
    assert info["requests_per_article"] == round((len(expected_gets) - 4) / 53, 3)

    # state for the next update, and an (empty) tombstone file
    state = pq.read_table(out / "pmc_articles.parquet").to_pylist()
    assert [r["pmc"] for r in state] == sorted(chosen, reverse=True)
    by_pmc = {r["pmc"]: r for r in state}
    assert by_pmc[11370360]["version"] == 2 and by_pmc[11370360]["sample_keys"] == keys_of(chosen[11370360])
    assert by_pmc[11400002]["outcome"] == "skipped:retracted" and by_pmc[11400002]["sample_keys"] == []
    assert {r["build"] for r in state} == {"reference"}
    assert pq.read_table(out / "removed.parquet").num_rows == 0


def test_options_select_licences_versions_and_subsets(server: Server, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# from an ESearch query\nPMC11370370\n11400001\npmc11400002\nPMC11400006\nPMC99\n\n"
                   "PMC10000000\nPMC11000001\n")
    out = tmp_path / "subset"
    mark = server.proxy.mark()
    stats = build(config(server, out, licenses=parse_licenses(["cc", "TDM"]), keep_retracted=True,
                         keep_historical_ocr=True, versions="newest-published", pmcids_file=str(ids)))
    keys = {r["key"]: r for r in manifest(out)}
    # newest-published takes the CC BY-NC v1 over the TDM manuscript v2; TDM manuscripts come when asked
    assert set(keys) == {"PMC11370370_f1", "PMC11400001_f1", "PMC11400002_f1", "PMC11000001_f1", "PMC11000001_f2"}
    assert keys["PMC11370370_f1"]["pmc_version"] == "PMC11370370.1"
    assert keys["PMC11400001_f1"]["license"] == "tdm"
    info = stats["pmc_cloud"]
    assert info["pmcids"] == {"requested": 7, "not_found": 2, "not_found_examples": ["PMC99", "PMC11400006"]}
    assert info["plan"]["tasks"] == 5 and stats["articles"]["without_figures"] == 1  # the OCR scan, kept
    requested = gets(server.proxy.since(mark))
    assert "metadata/PMC11370370.2.json" in requested and "metadata/PMC11370370.1.json" in requested

    out = tmp_path / "limited"
    stats = build(config(server, out, limit=3))
    assert {r["pmcid"] for r in manifest(out)} == {"PMC11400007", "PMC11400005", "PMC11400004"}
    assert stats["pmc_cloud"]["plan"]["tasks"] == 3

    out = tmp_path / "http"  # the bucket's HTTPS-style endpoint (path-style here), explicitly a PMC Cloud root
    stats = build(BuildConfig(sources=[f"{server.endpoint}/{BUCKET}/"], out=out, workers=1, splits={"train": 1.0},
                              pmc=PmcOptions(mode="on", limit=2, **FAST)))
    assert {r["pmcid"] for r in manifest(out)} == {"PMC11400007", "PMC11400005"}


def test_whole_source_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(PmcCloudError, match="2026-04-01T01-00Z not found"):
        build(config(server, tmp_path / "a", snapshot="2026-04-01T01-00Z"))
    server.client.create_bucket(Bucket="empty-mirror")  # type: ignore[attr-defined]
    server.client.put_object(Bucket="empty-mirror", Key="PMC1.1/PMC1.1.xml", Body=b"<article/>")  # type: ignore
    with pytest.raises(PmcCloudError, match="no complete inventory"):
        build(BuildConfig(sources=["s3://empty-mirror/"], out=tmp_path / "b", storage_options=server.options(),
                          pmc=PmcOptions(mode="on", **FAST)))
    bad = tmp_path / "bad.txt"
    bad.write_text("PMC1\nnot-an-id\n")
    with pytest.raises(PmcCloudError, match="line 2"):
        build(config(server, tmp_path / "c", pmcids_file=str(bad)))
    with pytest.raises(PmcCloudError, match="not a finished PMC Cloud build"):
        build(config(server, tmp_path / "d", since=str(tmp_path)))


# --------------------------------------------------------------------------- throttling, kill and resume


def test_throttling_and_resets_lose_nothing(server: Server, reference: tuple[Path, list], tmp_path: Path) -> None:
    def fault(method: str, path: str, attempt: int) -> str | None:
        if attempt > 2:
            return None
        digest = int(hashlib.md5(path.encode()).hexdigest(), 16) % 10  # noqa: S324 - test spread
        if path.endswith(".csv.gz"):
            return "truncate" if attempt == 1 else None  # resumed with a Range request
        if digest in (0, 1, 2):
            return "slowdown"
        if digest == 3:
            return "reset"
        if digest == 4 and attempt == 1:
            return "truncate"
        if digest == 5 and attempt == 1 and "/metadata/" in path:
            return "timeout"
        return None

    server.proxy.fault = fault
    mark = server.proxy.mark()
    try:
        stats = build(config(server, tmp_path / "throttled", limit=20))
    finally:
        server.proxy.fault = None
    out, _ = reference
    got, want = samples(tmp_path / "throttled"), samples(out)
    newest20 = sorted(newest(corpus()).values(), key=lambda a: -a.pmc)[:20]
    assert set(got) == {k for k in want if k.split("_")[0] in {a.pmcid for a in newest20}}
    assert got == {k: want[k] for k in got}, "every sample byte-identical to the unthrottled build's"
    assert stats["errors"] == {"md5_mismatch": 1}
    requests = server.proxy.since(mark)
    faults = Counter(fault(e["method"], e["path"], 1) for e in requests)
    assert faults["slowdown"] and faults["reset"] and faults["truncate"] and faults["timeout"]
    assert stats["pmc_cloud"]["retries"] >= 20


def test_inventory_stream_resumes_with_a_range_request(server: Server) -> None:
    body = os.urandom(600_000)
    seed(BUCKET, {"inventory-reports/big.bin": body})
    server.proxy.fault = lambda method, path, attempt: "truncate" if path.endswith("big.bin") and attempt == 1 \
        else None
    mark = server.proxy.mark()
    try:
        store = pmc_cloud.S3Store(location_for(f"s3://{BUCKET}/", server.options()), server.options(),
                                  PmcOptions(**FAST))
        with io.BufferedReader(store.open_stream("inventory-reports/big.bin"), 65_536) as stream:
            data = stream.read()
    finally:
        server.proxy.fault = None
    assert data == body
    ranges = [e["range"] for e in server.proxy.since(mark)]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert store.counts["retries"] == 1


def _kill_script(server: Server, out: Path) -> str:
    return textwrap.dedent(f"""
        from biomedclip.data.pipeline import BuildConfig, build
        from biomedclip.data.pmc_cloud import PmcOptions
        build(BuildConfig(sources=["s3://{BUCKET}/"], out={str(out)!r}, workers=1, shard_size=20,
                          splits={{"train": 0.8, "val": 0.1, "test": 0.1}},
                          storage_options={{"endpoint_url": {server.endpoint!r}}}, checkpoint_seconds=0.0,
                          pmc=PmcOptions(**{FAST!r})), resume=True)
    """)


def test_kill_and_resume_continues_where_it_stopped(server: Server, reference: tuple[Path, list],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = dict(os.environ)
    env.pop("AWS_ENDPOINT_URL", None)
    server.proxy.delay = 0.02
    try:
        proc = subprocess.Popen([sys.executable, "-c", _kill_script(server, out)], env=env,
                                stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and proc.poll() is None and done < 20:
            with contextlib.suppress(OSError, ValueError, KeyError):
                done = json.loads((out / "_build" / "state.json").read_text())["articles_done"]
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        server.proxy.delay = 0.0
    assert not (out / "stats.json").exists()
    checkpoint = json.loads((out / "_build" / "state.json").read_text())["articles_done"]
    assert 20 <= checkpoint < 57
    mark = server.proxy.mark()
    build(config(server, out), resume=True)
    ref, _ = reference
    assert digests(out) == digests(ref)
    assert manifest(out) == manifest(ref)
    # the resumed run read no inventory and fetched only the articles after the checkpoint
    order = sorted(newest(corpus()).values(), key=lambda a: -a.pmc)
    resumed = server.proxy.since(mark)
    assert not lists(resumed) and not [k for k in gets(resumed) if k.startswith("inventory-reports/")]
    assert [k for k in gets(resumed) if k.startswith("metadata/")] == [a.metadata_key for a in order[checkpoint:]]


@pytest.mark.slow  # Ray's own start-up: ~10 s on an idle machine, 40 s+ on a busy core
@pytest.mark.timeout(300)
def test_ray_executor_is_byte_identical(server: Server, reference: tuple[Path, list], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    cfg = config(server, out)
    cfg.executor, cfg.workers, cfg.batch_size = "ray", 2, 16
    build(cfg)
    ref, _ = reference
    assert digests(out) == digests(ref)
    assert manifest(out) == manifest(ref)


# --------------------------------------------------------------------------- incremental update


def test_update_after_the_inventory_changes(server: Server, tmp_path: Path) -> None:
    bucket = "pmc-update"
    client = server.client
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    base_articles = [FakeArticle(12000000 + i, figures=1 + i % 2) for i in range(8)]
    seed(bucket, bucket_objects(base_articles))
    seed(bucket, inventory_objects(GOOD, inventory_rows(base_articles), files=1))

    def cfg(out: Path, **pmc: object) -> BuildConfig:
        c = config(server, out, **pmc)
        c.sources = [f"s3://{bucket}/"]
        return c

    base = tmp_path / "base"
    build(cfg(base))
    before = {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in base.rglob("*")
              if p.is_file()}
    base_keys = {r["key"] for r in manifest(base)}
    assert len(base_keys) == 12

    # the next day: a new version of one article, a new article, a retraction, a withdrawal
    new_version = FakeArticle(12000001, 2, figures=1)
    new_article = FakeArticle(12000100, figures=2)
    retracted = FakeArticle(12000003, is_retracted=True, figures=1 + 3 % 2)
    withdrawn = base_articles[5]
    put_objects(client, bucket, article_objects(new_version) | article_objects(new_article)  # over HTTP
                | article_objects(retracted))
    day2 = [a for a in base_articles if a.pmc not in (retracted.pmc, withdrawn.pmc)]
    day2 += [new_version, new_article, retracted]
    seed(bucket, inventory_objects("2026-05-02T02-00Z", inventory_rows(day2), files=2))

    mark = server.proxy.mark()
    update = tmp_path / "update1"
    stats = build(cfg(update, since=str(base)))
    requests = server.proxy.since(mark)
    assert {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in base.rglob("*")
            if p.is_file()} == before, "an update never rewrites the previous build"
    assert {r["key"] for r in manifest(update)} == {"PMC12000100_f1", "PMC12000100_f2", "PMC12000001_f1"}
    assert [r["pmc_version"] for r in manifest(update) if r["pmcid"] == "PMC12000001"] == ["PMC12000001.2"]
    removed = pq.read_table(update / "removed.parquet").to_pylist()
    assert sorted((r["key"], r["reason"], r["build"], r["version"]) for r in removed) == sorted([
        ("PMC12000001_f1", "superseded", "base", 1), ("PMC12000001_f2", "superseded", "base", 1),
        ("PMC12000003_f1", "retracted", "base", 1), ("PMC12000003_f2", "retracted", "base", 1),
        ("PMC12000005_f1", "withdrawn", "base", 1), ("PMC12000005_f2", "withdrawn", "base", 1),
    ])
    info = stats["pmc_cloud"]
    assert info["plan"]["update"] == {"new": 1, "changed": 2, "retry": 0, "withdrawn": 1, "unchanged": 5}
    assert info["tombstones"] == 6 and info["skipped"] == {"retracted": 1, "withdrawn": 1}
    fetched = [k for k in gets(requests, bucket) if k.startswith("metadata/")]
    assert fetched == ["metadata/PMC12000100.1.json", "metadata/PMC12000003.1.json", "metadata/PMC12000001.2.json"]
    state = {r["pmc"]: r for r in pq.read_table(update / "pmc_articles.parquet").to_pylist()}
    assert withdrawn.pmc not in state and len(state) == 8
    assert state[12000000]["build"] == "base" and state[12000001]["build"] == "update1"
    assert state[12000001]["version"] == 2 and state[12000003]["outcome"] == "skipped:retracted"

    # no change since: nothing to fetch, nothing written, nothing removed
    mark = server.proxy.mark()
    again = build(cfg(tmp_path / "update2", since=str(update)))
    assert again["pmc_cloud"]["plan"]["tasks"] == 0 and again["figures"]["kept"] == 0
    assert [k for k in gets(server.proxy.since(mark), bucket) if not k.startswith("inventory-reports/")] == []
    assert pq.read_table(tmp_path / "update2" / "pmc_articles.parquet").num_rows == 8


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run([sys.executable, "-m", "biomedclip.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_build_and_update(server: Server, tmp_path: Path) -> None:
    endpoint = f"endpoint_url={server.endpoint}"
    base = tmp_path / "base"
    result = _cli("data", "build", f"s3://{BUCKET}/", "--out", str(base), "--storage-option", endpoint,
                  "--workers", "1", "--limit", "6", "--license", "cc-by-nc-nd,CC0", "--splits", "train=1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = manifest(base)
    assert {(r["pmcid"], r["license"]) for r in rows} == {("PMC11400003", "cc-by-nc-nd")}  # 6 newest; 1 licence fits
    stats = json.loads((base / "stats.json").read_text())
    assert stats["settings"]["pmc_cloud"]["licenses"] == ["CC BY-NC-ND", "CC0"]
    assert stats["pmc_cloud"]["skipped"] == {"license_excluded": 4, "retracted": 1}

    result = _cli("data", "update", str(base), "--out", str(tmp_path / "next"), "--storage-option", endpoint,
                  "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    update = json.loads((tmp_path / "next" / "stats.json").read_text())["pmc_cloud"]
    # the same snapshot, the same settings: only the 51 PMCIDs beyond the limit are new — and limited again
    assert update["plan"]["update"] == {"new": 6, "changed": 0, "retry": 0, "withdrawn": 0, "unchanged": 6}
    assert update["options"]["licenses"] == ["CC BY-NC-ND", "CC0"] and update["since"] == str(base)

    missing = _cli("data", "build", f"s3://{BUCKET}/", "--out", str(tmp_path / "x"), "--storage-option", endpoint,
                   "--inventory-snapshot", "2020-01-01T00-00Z")
    assert missing.returncode == 2 and "error:" in missing.stderr and "2020-01-01T00-00Z not found" in missing.stderr


# --------------------------------------------------------------------------- legacy packages


def _package(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_truncated_legacy_package_keeps_intact_members(tmp_path: Path) -> None:
    article = FakeArticle(13000000, figures=3)
    xml = article_objects(article)[f"{article.name}/{article.name}.xml"]
    images = [article_objects(article)[f"{article.name}/{article.figure_name(n)}"] for n in (1, 2, 3)]
    members = [("PMC13000000/PMC13000000.nxml", xml)] + [
        (f"PMC13000000/{article.figure_name(n)}", images[n - 1]) for n in (1, 2, 3)]
    whole = _package(members)
    raw = gzip.decompress(whole)
    # cut the tar stream in the middle of the third image's data, then gzip what is left
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        third = tar.getmembers()[3]
    cut = third.offset_data + third.size // 2
    path = tmp_path / "PMC13000000.tar.gz"
    path.write_bytes(gzip.compress(raw[:cut]))
    bundle = open_article(ArticleRef(str(path), "package"))
    assert bundle.xml == xml
    assert sorted(bundle.media.names()) == sorted(article.figure_name(n) for n in (1, 2))
    [problem] = bundle.problems
    assert problem.reason == "truncated_package" and article.figure_name(3) in problem.source
    assert "kept 3 intact members" in problem.detail

    out = tmp_path / "out"
    stats = build(BuildConfig(sources=[str(path)], out=out, workers=1, splits={"train": 1.0}))
    assert {r["key"] for r in manifest(out)} == {"PMC13000000_f1", "PMC13000000_f2"}
    assert stats["errors"] == {"missing_image": 1, "truncated_package": 1}

    path.write_bytes(whole[: len(whole) // 8])  # cut inside the XML: nothing usable
    with pytest.raises(SourceError) as info:
        open_article(ArticleRef(str(path), "package"))
    assert info.value.reason == "truncated_package"


def test_module_names_its_files() -> None:
    assert (pmc_cloud.ARTICLES_FILE, pmc_cloud.REMOVED_FILE) == ("pmc_articles.parquet", "removed.parquet")
