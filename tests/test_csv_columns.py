"""CSV column mapping (--path-col, --label-col, --caption-col, --split-col) for eval datasets and embed lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.evaluate.datasets import DatasetError, load_classification, load_retrieval
from biomedclip.evaluate.suite import load_suite_config
from biomedclip.io.columns import ColumnError, CsvColumns, find_column
from biomedclip.search.items import InputError, discover_images, discover_texts

runner = CliRunner()


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


@pytest.fixture()
def hospital_csv(tmp_path: Path) -> Path:
    """A CSV as a hospital exports it: none of the usual column names."""
    for i in range(6):
        _png(tmp_path / "img" / f"{i}.png", 20 * i)
    rows = [f"img/{i}.png,{'effusion' if i % 2 else 'normal'},{'train' if i < 4 else 'test'},report {i}"
            for i in range(6)]
    path = tmp_path / "export.csv"
    path.write_text("filename_x,finding,fold,impression\n" + "\n".join(rows) + "\n")
    return path


def test_find_column_defaults_choice_and_errors() -> None:
    header = ["Path", "Label", "fold"]
    assert find_column(header, "path", None, "a.csv") == "Path"  # the usual names, any case
    assert find_column(header, "split", None, "a.csv", required=False) is None
    assert find_column(header, "split", CsvColumns(split="FOLD"), "a.csv") == "fold"
    with pytest.raises(ColumnError) as err:
        find_column(header, "label", CsvColumns(label="dx"), "a.csv")
    assert str(err.value) == "a.csv: no column 'dx' (--label-col); the CSV has columns 'Path', 'Label', 'fold'"
    with pytest.raises(ColumnError, match=r"no caption column \(looked for caption, text, report\).*--caption-col"):
        find_column(header, "caption", None, "a.csv")
    assert CsvColumns().is_default() and CsvColumns(label="dx").to_dict() == {"label_col": "dx"}


def test_classification_csv_with_mapped_columns(hospital_csv: Path) -> None:
    columns = CsvColumns(path="filename_x", label="finding", split="fold")
    data = load_classification(hospital_csv, columns=columns)
    assert data.label_names == ["effusion", "normal"] and sorted(data.splits) == ["test", "train"]
    assert data.split("train").labels.tolist() == [1, 0, 1, 0]
    assert [Path(p).name for p in data.split("test").images.paths] == ["4.png", "5.png"]
    # without --split-col the fold column is not a split: every row is test
    assert sorted(load_classification(hospital_csv, columns=CsvColumns(path="filename_x", label="finding")).splits) \
        == ["test"]
    with pytest.raises(DatasetError) as err:
        load_classification(hospital_csv, columns=CsvColumns(path="filename_x"))
    message = str(err.value)
    assert message.startswith(f"{hospital_csv}: no label column") and "'finding'" in message
    assert "--label-col" in message
    with pytest.raises(DatasetError, match=r"no column 'dx' \(--label-col\); the CSV has columns 'filename_x', "
                                           r"'finding', 'fold', 'impression'"):
        load_classification(hospital_csv, columns=CsvColumns(path="filename_x", label="dx"))


def test_column_flags_only_apply_to_csv(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", test_images=np.zeros((2, 4, 4), np.uint8), test_labels=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"--label-col name CSV columns, but this dataset is not a \.csv"):
        load_classification(tmp_path / "d.npz", columns=CsvColumns(label="dx"))
    assert load_classification(tmp_path / "d.npz", columns=CsvColumns()).kind == "npz"


def test_retrieval_csv_with_mapped_columns(hospital_csv: Path) -> None:
    data = load_retrieval(hospital_csv, "train", columns=CsvColumns(path="filename_x", caption="impression",
                                                                     split="fold"))
    assert data.captions == ["report 0", "report 1", "report 2", "report 3"] and len(data.images) == 4
    with pytest.raises(DatasetError, match="no caption column.*'impression'.*--caption-col"):
        load_retrieval(hospital_csv, columns=CsvColumns(path="filename_x"))


def test_suite_file_keys(hospital_csv: Path, tmp_path: Path) -> None:
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({"model": "biomedclip-tiny", "tasks": [
        {"kind": "zeroshot", "data": hospital_csv.name, "path_col": "filename_x", "label_col": "finding",
         "split_col": "fold"}]}))
    task = load_suite_config(config).tasks[0]
    assert task.columns() == CsvColumns(path="filename_x", label="finding", split="fold")


def test_embed_lists_with_mapped_columns(hospital_csv: Path, tmp_path: Path) -> None:
    items = discover_images([hospital_csv], columns=CsvColumns(path="filename_x", caption="impression"))
    assert [i.key for i in items] == [f"img/{i}.png" for i in range(6)]
    assert items[1].caption == "report 1" and json.loads(items[1].meta) == {"finding": "effusion", "fold": "train"}
    assert Path(items[0].source) == (hospital_csv.parent / "img" / "0.png").resolve()
    with pytest.raises(InputError, match=r"export\.csv: no image path column \(looked for path\); the CSV has "
                                         r"columns 'filename_x'.*--path-col"):
        discover_images([hospital_csv])
    texts = discover_texts([hospital_csv], columns=CsvColumns(caption="impression"))
    assert [t.caption for t in texts] == [f"report {i}" for i in range(6)]
    (tmp_path / "t.jsonl").write_text('{"body": "a"}\n{"body": "b"}\n')
    assert [t.caption for t in discover_texts([tmp_path / "t.jsonl"], columns=CsvColumns(caption="body"))] == ["a", "b"]
    with pytest.raises(InputError, match=r"no column 'body' \(--caption-col\); the table has columns"):
        discover_texts([hospital_csv], columns=CsvColumns(caption="body"))


def test_cli_checks_columns_before_loading_the_model(hospital_csv: Path, tmp_path: Path) -> None:
    # the column error comes before the model loads, and nothing is written
    missing = _invoke("eval", "zeroshot", "-m", "biomedclip-tiny", "-d", hospital_csv, "-o", tmp_path / "r",
                      "--path-col", "filename_x", "--label-col", "dx")
    assert missing.exit_code == 2, missing.output
    assert "no column 'dx' (--label-col)" in missing.output and "'finding'" in missing.output
    assert not (tmp_path / "r").exists()
    wrong_kind = _invoke("eval", "retrieval", "-m", "biomedclip-tiny", "-d", tmp_path, "-o", tmp_path / "r",
                         "--caption-col", "impression")
    assert wrong_kind.exit_code == 2 and "--data is not a .csv" in wrong_kind.output
    embed = _invoke("embed", tmp_path / "img", "-m", "biomedclip-tiny", "-o", tmp_path / "e", "--path-col", "x")
    assert embed.exit_code == 2 and "no INPUT is one" in embed.output
    embed = _invoke("embed", hospital_csv, "-m", "biomedclip-tiny", "-o", tmp_path / "e", "--path-col", "x")
    assert embed.exit_code == 2 and "no column 'x' (--path-col)" in embed.output
    embed = _invoke("embed", hospital_csv, "--text", "-m", "biomedclip-tiny", "-o", tmp_path / "e",
                    "--path-col", "filename_x")
    assert embed.exit_code == 2 and "with --text use --caption-col" in embed.output


def test_cli_embed_and_eval_with_mapped_columns(hospital_csv: Path, tmp_path: Path) -> None:
    result = _invoke("embed", hospital_csv, "-m", "biomedclip-tiny", "-o", tmp_path / "emb", "--workers", 0,
                     "--path-col", "filename_x", "--caption-col", "impression", "--device", "cpu")
    assert result.exit_code == 0, result.output
    from biomedclip.search.store import open_embeddings

    emb = open_embeddings(tmp_path / "emb")
    assert emb.count == 6 and emb.metadata().column("caption").to_pylist()[:2] == ["report 0", "report 1"]
    assert emb.info["options"]["columns"] == {"path_col": "filename_x", "caption_col": "impression"}
    result = _invoke("eval", "zeroshot", "-m", "biomedclip-tiny", "-d", hospital_csv, "-o", tmp_path / "zs",
                     "--path-col", "filename_x", "--label-col", "finding", "--split-col", "fold", "--split", "train",
                     "--bootstrap", 20, "--no-cache", "--device", "cpu")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "zs" / "results.json").read_text())
    assert doc["tasks"][0]["data"]["evaluated"] == 4
    assert doc["settings"]["tasks"][0]["label_col"] == "finding"
