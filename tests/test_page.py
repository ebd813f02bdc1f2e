"""The web page in Debian's headless Chromium (driven by playwright-python, no browser download):
upload an image, see the probability bars, search, see the result grid; a screenshot is saved."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from search_assets import Server, bundle, image_files, indexed, loaded_model, modality_classes, modality_labels

from biomedclip.search.classify import classify_images

CHROMIUM = os.environ.get("BIOMEDCLIP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


# The first test to ask for the session's trained model builds it (corpus, shards, training), which takes
# longer than pytest's default per-test timeout on a 2-core machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def server(learn_data, trained_run, tmp_path_factory):
    assets = indexed(learn_data, trained_run, tmp_path_factory.mktemp("search"))
    running = Server(bundle(trained_run), assets["index"], tmp_path_factory.mktemp("page") / "server.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(server):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        messages: list[str] = []
        tab.on("pageerror", lambda exc: messages.append(str(exc)))
        tab.goto(server.url + "/")
        tab.wait_for_function("document.getElementById('status').textContent.includes('indexed items')")
        yield tab
        browser.close()
        assert not messages, f"JavaScript errors on the page: {messages}"


def _bars(tab) -> list[tuple[str, float, float]]:
    """(label, probability, drawn bar width in px) per bar row, in page order."""
    return tab.eval_on_selector_all(
        "#bars .bar-row",
        "rows => rows.map(r => [r.dataset.label, Number(r.dataset.probability),"
        " r.querySelector('.bar-fill').getBoundingClientRect().width])")


def test_classify_search_and_screenshot(page, learn_data, trained_run, tmp_path, tmp_path_factory):
    classes, templates = modality_classes(learn_data)
    files = image_files(learn_data, tmp_path_factory.mktemp("page_images"))
    # the chest X-ray the model is surest about: this tests the page, not the model
    candidates = files["chest X-ray"]
    probs = classify_images(loaded_model(trained_run), [Image.open(p).convert("RGB") for p in candidates],
                            classes, templates)
    chosen = int(probs[:, classes.index("chest X-ray")].argmax())
    expected = sorted(zip(classes, probs[chosen], strict=True), key=lambda x: -x[1])
    assert expected[0][0] == "chest X-ray"
    page.fill("#labels", "\n".join(classes))
    page.click("details summary")
    page.fill("#templates", "\n".join(templates))
    page.set_input_files("#file-input", str(candidates[chosen]))
    assert page.is_enabled("#classify-btn")
    page.click("#classify-btn")
    page.wait_for_selector("#bars .bar-row")
    bars = _bars(page)
    assert bars[0][0] == "chest X-ray" and sorted(b[0] for b in bars) == sorted(classes)
    shown = {label: p for label, p, _ in bars}
    assert all(abs(shown[label] - float(p)) < 1e-3 for label, p in expected)  # the page shows the model's numbers
    widths = [b[2] for b in bars]
    assert widths == sorted(widths, reverse=True) and widths[0] > 2 * widths[1]
    assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0

    page.fill("#query", "fundus photograph")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .result")
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)")
    keys = page.eval_on_selector_all("#results .result", "cards => cards.map(c => c.dataset.key)")
    labels = modality_labels(learn_data)
    assert len(keys) == 12 and sum(labels[k]["modality"] == "fundus photograph" for k in keys[:5]) >= 4
    assert "fundus photograph" in page.inner_text("#search-info")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


def test_dicom_preview_image_search_and_bad_upload(page, learn_data, realdata, tmp_path, tmp_path_factory):
    page.fill("#labels", "brain MRI\nchest X-ray\nfundus photograph")
    page.set_input_files("#file-input", str(realdata / "images" / "MR_small.dcm"))
    page.click("#classify-btn")
    page.wait_for_function("document.querySelectorAll('#bars .bar-row').length === 3")
    # the browser cannot show DICOM; the server's preview appears instead
    page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/jpeg')")
    files = image_files(learn_data, tmp_path_factory.mktemp("page_images2"))
    query = files["histopathology"][0]
    page.set_input_files("#file-input", str(query))
    page.click("#image-search-btn")
    page.wait_for_function(f"document.querySelector('#results .result')?.dataset.key === '{query.stem}'")
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file-input", str(bad))
    page.click("#classify-btn")
    page.wait_for_selector("#error:not([hidden])")
    assert "415" in page.inner_text("#error")
    page.screenshot(path=str(tmp_path / "page_error.png"))
