"""Evaluation datasets and task files: every layout, label mapping, fingerprints, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biomedclip.evaluate.datasets import (
    DatasetError,
    load_classification,
    load_retrieval,
)
from biomedclip.evaluate.taskfile import TaskError, align_labels, builtin_tasks, default_task, load_task
from biomedclip.io.medical import ReadOptions


def _png(path: Path, value: int, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, 0)).save(path)
    return path


def test_image_folder_with_and_without_splits(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for i in range(3):
        _png(flat / "lung_aca" / f"a{i}.png", 10 * i)
    _png(flat / "lung_n" / "n0.png", 200)
    (flat / "lung_n" / "notes.txt").write_text("not an image")
    data = load_classification(flat)
    assert data.kind == "folder" and list(data.splits) == ["test"]
    assert data.label_names == ["lung_aca", "lung_n"]
    assert data.split("test").labels.tolist() == [0, 0, 0, 1]
    split_root = tmp_path / "split"
    for split in ("train", "validation", "test"):
        _png(split_root / split / "a" / "x.png", 1)
        _png(split_root / split / "b" / "y.png", 2)
    data = load_classification(split_root)
    assert sorted(data.splits) == ["test", "train", "val"]
    assert data.split("valid").labels.tolist() == [0, 1]  # aliases resolve
    with pytest.raises(DatasetError, match="has no 'extra' split"):
        data.split("extra")


def test_folder_reads_dicom_and_nifti(realdata: Path, tmp_path: Path) -> None:
    root = tmp_path / "scans"
    (root / "ct").mkdir(parents=True)
    (root / "mr").mkdir()
    shutil.copy(realdata / "images" / "CT_small.dcm", root / "ct" / "a.dcm")
    shutil.copy(realdata / "images" / "anatomical.nii", root / "mr" / "b.nii")
    data = load_classification(root, options=ReadOptions(window=(40, 400)))
    images = data.split("test").images
    assert [images.load(i).mode for i in range(len(images))] == ["RGB", "RGB"]
    plain = load_classification(root)
    # the window is part of what the images are, so it is part of the cache key
    assert plain.split("test").images.fingerprint() != images.fingerprint()


def test_csv_single_and_multi_label(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _png(tmp_path / "img" / f"{name}.png", ord(name))
    (tmp_path / "single.csv").write_text(
        "Path,Label,Split\nimg/a.png,cat,train\nimg/b.png,dog,test\n,dog,test\nimg/c.png,dog,holdout\n")
    data = load_classification(tmp_path / "single.csv")
    assert data.label_names == ["cat", "dog"] and not data.multilabel
    assert sorted(data.splits) == ["test", "train"]
    assert len(data.notes) == 2 and "single.csv:4" in data.notes[0] and "unknown split" in data.notes[1]
    (tmp_path / "multi.csv").write_text("path,label\nimg/a.png,effusion|nodule\nimg/b.png,nodule\n")
    multi = load_classification(tmp_path / "multi.csv")
    assert multi.multilabel and multi.label_names == ["effusion", "nodule"]
    assert multi.split("test").labels.tolist() == [[1, 1], [0, 1]]
    (tmp_path / "bad.csv").write_text("file_name,diagnosis\nx.png,a\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: no image path column"):
        load_classification(tmp_path / "bad.csv")


def test_npz_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = tmp_path / "grey.npz"
    np.savez(grey, train_images=rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), train_labels=np.array([[0], [1]] * 3),
             test_images=rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), test_labels=np.array([[1], [0], [2], [1]]))
    data = load_classification(grey)
    assert data.label_names == ["0", "1", "2"] and data.split("test").labels.tolist() == [1, 0, 2, 1]
    assert data.split("test").images.load(0).size == (8, 8)
    rgb_multi = tmp_path / "multi.npz"
    np.savez(rgb_multi, test_images=rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
             test_labels=np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]]))
    multi = load_classification(rgb_multi)
    assert multi.multilabel and multi.label_names == ["0", "1", "2"]
    volume = tmp_path / "vol.npz"
    vols = np.zeros((2, 5, 8, 8), np.float32)
    vols[:, 2] = 1.0  # only the middle slice is bright
    vols[:, 2, 0, 0] = 0.0
    np.savez(volume, test_images=vols, test_labels=np.array([0, 1]))
    middle = np.asarray(load_classification(volume).split("test").images.load(0))
    assert middle[1, 1, 0] == 255 and middle[0, 0, 0] == 0
    broken = tmp_path / "broken.npz"
    np.savez(broken, test_images=np.zeros((2, 4, 4)), test_labels=np.zeros(3))
    with pytest.raises(DatasetError, match=r"broken\.npz: test_images must be"):
        load_classification(broken)
    with pytest.raises(DatasetError, match="not found"):
        load_classification(tmp_path / "missing.npz")


def test_fingerprint_changes_with_data(tmp_path: Path) -> None:
    path = _png(tmp_path / "x" / "a" / "1.png", 5)
    _png(tmp_path / "x" / "b" / "2.png", 6)
    before = load_classification(tmp_path / "x").split("test").images.fingerprint()
    assert load_classification(tmp_path / "x").split("test").images.fingerprint() == before
    _png(path, 99, size=20)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert load_classification(tmp_path / "x").split("test").images.fingerprint() != before
    npz = tmp_path / "d.npz"
    np.savez(npz, test_images=np.zeros((2, 4, 4), np.uint8), test_labels=np.array([0, 1]))
    first = load_classification(npz).split("test").images.fingerprint()
    np.savez(npz, test_images=np.ones((2, 4, 4), np.uint8), test_labels=np.array([0, 1]))
    assert load_classification(npz).split("test").images.fingerprint() != first


def test_limited_is_a_seeded_subset(tmp_path: Path) -> None:
    npz = tmp_path / "d.npz"
    np.savez(npz, test_images=np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2), test_labels=np.arange(50) % 2)
    data = load_classification(npz)
    a, b = data.limited(10, seed=1), data.limited(10, seed=1)
    assert len(a.split("test")) == 10
    assert np.array_equal(a.split("test").images.array, b.split("test").images.array)
    assert not np.array_equal(a.split("test").images.array, data.limited(10, seed=2).split("test").images.array)


def test_builtin_tasks_carry_the_papers_numbers() -> None:
    names = builtin_tasks()
    assert {"pcam", "lc25000_lung", "lc25000_colon", "tcga_til", "rsna_pneumonia"} <= set(names)
    # the paper's Supplementary Table 10 (prompts used for zero-shot image classification)
    image, photo = ["this is an image of {}", "{} presented in image"], ["a photo of {}", "{} presented in image"]
    table10 = {
        "pcam": (["normal lymph node", "lymph node metastasis"], image),
        "lc25000_lung": (["lung adenocarcinomas", "normal lung tissue", "lung squamous cell carcinomas"], image),
        "lc25000_colon": (["colon adenocarcinomas", "normal colonic tissue"], photo),
        "tcga_til": (["none", "tumor infiltrating lymphocytes"], photo),
        "rsna_pneumonia": (["normal lung", "pneumonia"], photo),
    }
    assert {n: (load_task(n).classes, load_task(n).templates) for n in table10} == table10
    values = {n: load_task(n).paper["value"] for n in ("pcam", "lc25000_lung", "lc25000_colon", "tcga_til",
                                                       "rsna_pneumonia")}
    assert values == {"pcam": 73.41, "lc25000_lung": 65.23, "lc25000_colon": 92.98, "tcga_til": 67.04,
                      "rsna_pneumonia": 78.95}
    assert load_task("tcga_til").metric == "macro_auroc"


def test_task_files_map_dataset_labels(tmp_path: Path) -> None:
    for name in ("lung_scc", "lung_aca", "lung_n"):
        _png(tmp_path / "lc" / name / "x.png", 3)
    data = load_classification(tmp_path / "lc")  # label names sorted: lung_aca, lung_n, lung_scc
    aligned = align_labels(data, load_task("lc25000_lung"))
    assert aligned.label_names[0] == "lung adenocarcinomas"
    assert aligned.split("test").labels.tolist() == [0, 1, 2]
    txt = tmp_path / "task.txt"
    txt.write_text("# LC25000 lung\nlung_scc = squamous cell carcinoma\nlung_aca = adenocarcinoma\n"
                   "lung_n = benign lung tissue\na histopathology image of {}\n")
    task = load_task(txt)
    assert task.templates == ["a histopathology image of {}"]
    assert align_labels(data, task).split("test").labels.tolist() == [1, 2, 0]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"classes": ["benign", "malignant"]}))
    with pytest.raises(DatasetError, match=r"do not match any class of task 'wrong'.*\"labels\""):
        align_labels(data, load_task(wrong))
    default = default_task(data)
    assert default.classes == ["lung aca", "lung n", "lung scc"]


def test_bad_task_files(tmp_path: Path) -> None:
    cases = {
        "nocls.json": (json.dumps({"templates": ["{}"]}), "non-empty \"classes\""),
        "tmpl.json": (json.dumps({"classes": ["a"], "templates": ["no placeholder"]}), "exactly one"),
        "keys.json": (json.dumps({"classes": ["a"], "clases": []}), "unknown keys"),
        "bad.json": ("{not json", "not a readable JSON"),
        "empty.txt": ("# nothing\n", "no class names"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TaskError, match=message):
            load_task(tmp_path / name)
    with pytest.raises(TaskError, match="not a built-in task"):
        load_task("no_such_task")


def test_retrieval_csv_groups_captions_by_image(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    (tmp_path / "pairs.csv").write_text("path,caption\na.png,first caption of a\nb.png,only caption of b\n"
                                        "a.png,second caption of a\n")
    data = load_retrieval(tmp_path / "pairs.csv")
    assert len(data.images) == 2 and data.captions[2] == "second caption of a"
    assert data.caption_image.tolist() == [0, 1, 0]
    with pytest.raises(DatasetError, match="shard build folder"):
        load_retrieval(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="no shards for split"):
        load_retrieval(tmp_path)
