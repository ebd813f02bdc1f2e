"""Zero-shot classification of files: learned modality far above chance, the model's temperature, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from search_assets import bundle, image_files, loaded_model, modality_classes
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.models.factory import load_model
from biomedclip.models.prompts import DEFAULT_TEMPLATES
from biomedclip.search.classify import LabelError, check_labels, classify_files, classify_images

# The first test to ask for the session's trained model builds it (corpus, shards, training), which takes
# longer than pytest's default per-test timeout on a 2-core machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def files(learn_data, tmp_path_factory):
    return image_files(learn_data, tmp_path_factory.mktemp("classify"))


def _accuracy(model, files: dict, classes: list[str], templates: list[str] | None) -> float:
    pairs = [(m, f) for m, fs in files.items() for f in fs]
    results = classify_files(model, [f for _, f in pairs], classes, templates)
    assert all(r.error is None for r in results)
    return float(np.mean([r.prediction == m for (m, _), r in zip(pairs, results, strict=True)]))


def test_modality_far_above_chance(files, learn_data, trained_run):
    classes, templates = modality_classes(learn_data)
    assert sum(len(v) for v in files.values()) >= 30 and len(files) == 6
    trained = _accuracy(loaded_model(trained_run), files, classes, templates)
    assert trained >= 0.6  # chance: 1/8
    assert _accuracy(loaded_model(trained_run), files, classes, None) >= 0.5  # the generic default prompts
    untrained = _accuracy(load_model(f"local-dir:{trained_run[0] / 'init_bundle'}"), files, classes, templates)
    assert untrained < trained - 0.3


def test_probabilities_use_the_models_temperature(files, trained_run):
    model = loaded_model(trained_run)
    scale = model.temperature
    assert scale == pytest.approx(min(100.0, float(model.model.logit_scale.detach().exp())))
    assert 1 < scale < 100
    from PIL import Image

    image = Image.open(files["chest X-ray"][0]).convert("RGB")
    labels = ["chest X-ray", "fundus photograph", "western blot"]
    probs = classify_images(model, [image], labels, ["a {} image"])[0]
    # by hand: softmax(scale · cos(image, prompt))
    logits = scale * model.encode_images([image])[0] @ model.encode_texts([f"a {x} image" for x in labels]).T
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)


def test_label_checks():
    with pytest.raises(LabelError, match="at least two"):
        check_labels(["only one"], None)
    with pytest.raises(LabelError, match="distinct"):
        check_labels(["a", "a"], None)
    with pytest.raises(LabelError, match="exactly one"):
        check_labels(["a", "b"], ["no placeholder"])
    assert check_labels([" a ", "", "b"], None)[0] == ["a", "b"]


def test_dicom_nifti_and_real_photographs(realdata, trained_run, learn_data):
    classes, templates = modality_classes(learn_data)
    images = realdata / "images"
    names = ["MR_small.dcm", "retina.jpg", "ihc.png", "CT_small.dcm", "anatomical.nii"]
    results = classify_files(loaded_model(trained_run), [images / n for n in names], classes, templates)
    assert all(r.error is None and sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-4) for r in results)
    # the same numbers as decoding with io.medical and classifying the images
    from biomedclip.io.medical import load_image

    direct = classify_images(loaded_model(trained_run), [load_image(images / n) for n in names], classes, templates)
    np.testing.assert_allclose([list(r.probabilities.values()) for r in results], direct, atol=1e-5)
    # a model trained only on synthetic figures still recognises a real fundus photograph
    predictions = [(n, r.prediction) for n, r in zip(names, results, strict=True)]
    assert results[1].prediction == "fundus photograph", predictions


def test_cli_table_json_task_and_bad_files(files, trained_run, tmp_path):
    runner = CliRunner()
    xray, fundus = files["chest X-ray"][0], files["fundus photograph"][0]
    result = runner.invoke(app, ["classify", str(xray), str(fundus), "--labels", "chest X-ray", "fundus photograph",
                                 "western blot", "--model", bundle(trained_run), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["labels"] == ["chest X-ray", "fundus photograph", "western blot"]
    # the CLI gives the library's answer (whether the model is right is test_modality_far_above_chance's
    # question: one image under the generic prompts is too small a sample to assert on)
    library = classify_files(loaded_model(trained_run), [xray, fundus], payload["labels"], None)
    assert [r["prediction"] for r in payload["results"]] == [r.prediction for r in library]
    # probabilities: [{label, p}, …] in label order, the shape POST /classify answers with
    assert all([e["label"] for e in r["probabilities"]] == payload["labels"] for r in payload["results"])
    np.testing.assert_allclose([[e["p"] for e in r["probabilities"]] for r in payload["results"]],
                               [list(r.probabilities.values()) for r in library], atol=1e-4)
    assert payload["templates"] == list(DEFAULT_TEMPLATES)  # the ones used, not null
    assert payload["temperature"] == pytest.approx(loaded_model(trained_run).temperature, rel=1e-5)
    table = runner.invoke(app, ["classify", str(xray), "-l", "chest X-ray", "fundus photograph", "-t", "a {} image",
                                "--model", bundle(trained_run)])
    assert table.exit_code == 0 and "Zero-shot probabilities" in table.output
    task = runner.invoke(app, ["classify", str(xray), "--task", "pcam", "--model", bundle(trained_run), "--json"])
    assert task.exit_code == 0, task.output
    pcam = json.loads(task.output)
    assert len(pcam["labels"]) == 2 and "lymph node" in " ".join(pcam["labels"]).lower()
    assert all("{}" in t for t in pcam["templates"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))  # a PNG signature and nothing after it
    bad = runner.invoke(app, ["classify", str(broken), str(xray), "--labels", "a", "b", "--model",
                              bundle(trained_run), "--json"])
    assert bad.exit_code == 1
    rows = json.loads(bad.output)["results"]
    assert set(rows[0]) == {"file", "error"} and rows[0]["error"] and rows[1]["prediction"] in ("a", "b")
    none = runner.invoke(app, ["classify", str(xray), "--model", bundle(trained_run)])
    assert none.exit_code == 2 and "--labels" in none.output
