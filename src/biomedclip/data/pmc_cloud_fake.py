"""A bucket laid out like PMC Cloud (``s3://pmc-oa-opendata``), for tests, benchmarks and offline tries.

The real bucket is public but large and not reachable from every machine. This module writes the
same layout into any S3 endpoint (moto's server, MinIO) or returns it as ``{key: bytes}``:

* ``PMC<digits>.<version>/``: ``PMCxxx.N.xml`` (JATS), ``.txt``, ``.json`` (metadata), ``.pdf`` and
  the media under publisher names (``<stem>-g001.jpg`` figures, ``<stem>-s001.xlsx`` supplements);
* ``metadata/PMCxxx.N.json``: the same metadata JSON (``license_code``, ``is_retracted``,
  ``xml_url`` … each URL an ``s3://pmc-oa-opendata/…?md5=…``);
* ``inventory-reports/pmc-oa-opendata/metadata/<YYYY-MM-DDTHH-MMZ>/manifest.json`` plus gzipped
  CSV data files (``Bucket, Key, LastModifiedDate, ETag``) under ``…/metadata/data/`` and a
  ``hive/`` partition, as S3 Inventory writes them.

Figures are deterministic noise images (one seed per article and figure), so no two figures are
perceptual duplicates of each other and the build keeps all of them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

PMC_BUCKET = "pmc-oa-opendata"
INVENTORY_PREFIX = f"inventory-reports/{PMC_BUCKET}/metadata/"
_LICENSE_URLS = {
    "CC BY": "https://creativecommons.org/licenses/by/4.0/",
    "CC BY-NC": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC BY-NC-ND": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "CC BY-SA": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
}


@dataclass
class FakeArticle:
    """One article version in the fake bucket and what is special about it.

    ``bad_md5`` lists figure numbers (1-based) whose ``?md5=`` in the metadata is wrong;
    ``extra_media`` adds non-figure media (``"pdf"``, ``"xlsx"``) to ``media_urls``;
    ``in_inventory=False`` writes the objects but leaves the key out of the inventory.
    """

    pmc: int
    version: int = 1
    license_code: str = "CC BY"
    figures: int = 2
    is_manuscript: bool = False
    is_retracted: bool = False
    is_historical_ocr: bool = False
    bad_md5: tuple[int, ...] = ()
    extra_media: tuple[str, ...] = ()
    in_inventory: bool = True
    graphic_ext_in_href: bool = False
    last_modified: str = "2026-04-20T03:12:45.000Z"
    image_size: tuple[int, int] = (96, 80)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pmcid(self) -> str:
        return f"PMC{self.pmc}"

    @property
    def name(self) -> str:
        """The version's folder and file stem, ``PMC123.2``."""
        return f"PMC{self.pmc}.{self.version}"

    @property
    def stem(self) -> str:
        """Publisher-style media stem (``NPR2-43-85`` in the real bucket)."""
        return f"J{self.pmc % 97}-{self.pmc}-v{self.version}"

    @property
    def metadata_key(self) -> str:
        return f"metadata/{self.name}.json"

    def figure_name(self, number: int) -> str:
        return f"{self.stem}-g{number:03d}.jpg"


def figure_image(pmc: int, number: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A JPEG of blocky seeded noise: distinct per (article, figure), decodable, small by default."""
    rng = np.random.default_rng([pmc, number])
    width, height = size
    noise = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB").resize((width, height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def jats_xml(article: FakeArticle) -> bytes:
    """A small JATS document with ``article.figures`` captioned figures cited from the body."""
    license_url = _LICENSE_URLS.get(article.license_code, "")
    license_el = (f'<license xlink:href="{license_url}"><license-p>{article.license_code}</license-p></license>'
                  if license_url else f"<license><license-p>{article.license_code}</license-p></license>")
    figs = []
    for n in range(1, article.figures + 1):
        href = article.figure_name(n) if article.graphic_ext_in_href else article.figure_name(n)[: -len(".jpg")]
        figs.append(
            f'<p>As <xref ref-type="fig" rid="f{n}">Figure {n}</xref> shows, finding {n} of {article.pmcid} '
            f'is clear.</p><fig id="f{n}"><label>Figure {n}</label><caption><title>Panel set {n}.</title>'
            f"<p>Synthetic figure {n} of article {article.pmcid} version {article.version}, "
            f"a noise pattern standing for a micrograph.</p></caption>"
            f'<graphic xlink:href="{href}"/></fig>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front>'
        "<journal-meta><journal-title-group><journal-title>Journal of Fake Results</journal-title>"
        "</journal-title-group></journal-meta><article-meta>"
        f'<article-id pub-id-type="pmcid">{article.pmcid}</article-id>'
        f'<article-id pub-id-type="pmid">{30000000 + article.pmc % 1000000}</article-id>'
        f'<article-id pub-id-type="doi">10.5555/fake.{article.pmc}</article-id>'
        f"<title-group><article-title>Article {article.pmcid}</article-title></title-group>"
        "<pub-date><year>2024</year></pub-date>"
        f"<permissions>{license_el}</permissions></article-meta></front>"
        f"<body><sec><title>Results</title>{''.join(figs)}</sec></body></article>"
    ).encode()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag/?md5= scheme, not security


def article_objects(article: FakeArticle) -> dict[str, bytes]:
    """Every object of one article version: its folder and its ``metadata/`` JSON."""
    folder = f"{article.name}/"
    xml = jats_xml(article)
    files: dict[str, bytes] = {
        f"{folder}{article.name}.xml": xml,
        f"{folder}{article.name}.txt": f"Article {article.pmcid} plain text.".encode(),
        f"{folder}{article.name}.pdf": b"%PDF-1.4 fake " + article.name.encode(),
    }
    media: list[tuple[str, bytes, bool]] = []
    for n in range(1, article.figures + 1):
        image = figure_image(article.pmc * 10 + article.version, n, article.image_size)
        media.append((article.figure_name(n), image, n in article.bad_md5))
    for kind in article.extra_media:
        if kind == "pdf":
            media.append((f"{article.stem}-s002.pdf", b"%PDF-1.4 supplement", False))
        elif kind == "xlsx":
            media.append((f"{article.stem}-s001.xlsx", b"PK\x03\x04 fake workbook", False))
        else:
            raise ValueError(f"unknown extra media kind {kind!r}")
    for name, data, _ in media:
        files[folder + name] = data

    def url(key: str, data: bytes, wrong: bool = False) -> str:
        digest = _md5(data)
        if wrong:
            digest = "0" * 32 if digest != "0" * 32 else "1" * 32
        return f"s3://{PMC_BUCKET}/{key}?md5={digest}"

    metadata = {
        "pmcid": article.pmcid,
        "version": article.version,
        "mid": f"NIHMS{article.pmc}" if article.is_manuscript else None,
        "pmid": 30000000 + article.pmc % 1000000,
        "doi": f"10.5555/fake.{article.pmc}",
        "title": f"Article {article.pmcid}",
        "citation": f"J Fake Res. 2024;{article.pmc % 50}:{article.version}",
        "license_code": article.license_code,
        "is_pmc_openaccess": not article.is_manuscript,
        "is_manuscript": article.is_manuscript,
        "is_historical_ocr": article.is_historical_ocr,
        "is_retracted": article.is_retracted,
        "xml_url": url(f"{folder}{article.name}.xml", xml),
        "text_url": url(f"{folder}{article.name}.txt", files[f"{folder}{article.name}.txt"]),
        "pdf_url": url(f"{folder}{article.name}.pdf", files[f"{folder}{article.name}.pdf"]),
        "media_urls": [url(folder + name, data, wrong) for name, data, wrong in media],
        **article.extra,
    }
    body = json.dumps(metadata, indent=1).encode()
    files[f"{folder}{article.name}.json"] = body
    files[article.metadata_key] = body
    return files


def inventory_rows(articles: Iterable[FakeArticle]) -> Iterator[tuple[str, str, str]]:
    """(Key, LastModifiedDate, ETag) of the articles' metadata JSON, as the inventory lists them."""
    for article in articles:
        if article.in_inventory:
            body = article_objects(article)[article.metadata_key]
            yield article.metadata_key, article.last_modified, _md5(body)


def inventory_objects(
    snapshot: str,
    rows: Iterable[tuple[str, str, str]],
    *,
    files: int = 2,
    manifest: bool = True,
    source_bucket: str = PMC_BUCKET,
) -> dict[str, bytes]:
    """One dated S3 Inventory snapshot: gzipped CSV data files and its ``manifest.json`` and
    ``manifest.checksum`` — or, with ``manifest=False`` (a snapshot still being written), a dated
    folder without ``manifest.json``.

    Rows are dealt round-robin into ``files`` data files, so a PMCID's versions can land in
    different files, as in a real inventory. ``rows`` is consumed as a stream (one row at a time).
    """
    prefix = f"inventory-reports/{source_bucket}/metadata/"
    buffers = [io.BytesIO() for _ in range(files)]
    zipped = [gzip.GzipFile(fileobj=b, mode="wb", mtime=0) for b in buffers]
    texts = [io.TextIOWrapper(z, encoding="utf-8", newline="") for z in zipped]
    writers = [csv.writer(t, quoting=csv.QUOTE_ALL, lineterminator="\n") for t in texts]
    for index, (key, modified, etag) in enumerate(rows):
        writers[index % files].writerow([source_bucket, key, modified, etag])
    objects: dict[str, bytes] = {}
    entries = []
    for number, (text, buffer) in enumerate(zip(texts, buffers, strict=True)):
        text.close()
        data = buffer.getvalue()
        key = f"{prefix}data/{snapshot}-{number:04d}.csv.gz"
        objects[key] = data
        entries.append({"key": key, "size": len(data), "MD5checksum": _md5(data)})
    if manifest:
        body = json.dumps({
            "sourceBucket": source_bucket,
            "destinationBucket": f"arn:aws:s3:::{source_bucket}",
            "version": "2016-11-30",
            "creationTimestamp": "1776000000000",
            "fileFormat": "CSV",
            "fileSchema": "Bucket, Key, LastModifiedDate, ETag",
            "files": entries,
        }, indent=1).encode()
        objects[f"{prefix}{snapshot}/manifest.json"] = body
        objects[f"{prefix}{snapshot}/manifest.checksum"] = (_md5(body) + "\n").encode()
    else:  # the dated folder exists, its manifest.json does not (yet)
        objects[f"{prefix}{snapshot}/manifest.checksum"] = b"\n"
    objects[f"{prefix}hive/dt={snapshot[:10]}-01-00/symlink.txt"] = "\n".join(
        f"s3://{source_bucket}/{e['key']}" for e in entries).encode()
    return objects


def bucket_objects(articles: Iterable[FakeArticle]) -> dict[str, bytes]:
    """All article objects (folders and ``metadata/``) plus a ``deprecated/`` tree and README."""
    objects: dict[str, bytes] = {"README.txt": b"PMC Article Datasets (fake copy for tests)\n"}
    for article in articles:
        objects.update(article_objects(article))
    objects["deprecated/oa_comm/xml/all/oa_comm_xml.PMC001xxxxxx.baseline.2025-06-01.tar.gz"] = b"\x1f\x8b old"
    objects["deprecated/oa_noncomm/xml/all/PMC000001.xml"] = b"<article/>"
    objects["deprecated/oa_file_list.csv"] = b"File,Article Citation,Accession ID\n"
    return objects


def put_objects(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    """Upload ``objects`` with a boto3/botocore S3 client (public-read, like the real bucket)."""
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read")
