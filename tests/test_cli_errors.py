"""The CLI's one error convention, through the installed ``biomedclip`` command.

Expected failures are one ``error:`` line on stderr and exit status 2; Ctrl-C is one
``interrupted:`` line and 130; a traceback only with ``--debug``. Each defect of issue 20 that
used to end in a traceback or in silence has a case here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from biomedclip.errors import BiomedclipError

BIN = shutil.which("biomedclip", path=str(Path(sys.executable).parent)) or "biomedclip"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "100", **(env or {})})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command (and nothing that looks like a traceback)."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-errors") / "corpus"
    result = run("--quiet", "data", "synth", str(out), "--articles", "8", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet: no bars, no summary
    return out


# -- issue 20, defect 3: tracebacks where one line is due ---------------------------------------------

def test_model_name_typo_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    line = one_error_line(run("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                              "--model", "biomedclip-tinny"))
    assert "unknown model 'biomedclip-tinny'" in line and "did you mean 'biomedclip-tiny'?" in line
    assert not (tmp_path / "run").exists()


def test_s3_source_without_network_names_the_url(tmp_path: Path) -> None:
    url = "s3://pmc-oa-opendata/oa_comm/xml/all/"
    # An endpoint nothing listens on stands for "no network"; botocore tries once instead of retrying.
    line = one_error_line(run("data", "build", url, "--out", str(tmp_path / "shards"), "--workers", "1",
                              "--storage-option", "endpoint_url=http://127.0.0.1:9",
                              env={"AWS_MAX_ATTEMPTS": "1"}, timeout=120))
    assert url in line and "EndpointConnectionError" in line and "network" in line


def test_index_of_an_embeddings_folder_without_vectors(tmp_path: Path) -> None:
    from biomedclip.search.items import Item
    from biomedclip.search.store import EmbeddingWriter, RunSpec

    items = [Item(key=f"k{i}", source=str(tmp_path / f"{i}.png")) for i in range(3)]
    writer = EmbeddingWriter(tmp_path / "emb", RunSpec(kind="image", model="biomedclip-tiny"), lambda: items)
    writer.write_chunk(0, np.zeros((0, 8), np.float32), [], {i: "cannot identify image file" for i in range(3)})
    assert writer.finish()["count"] == 0
    line = one_error_line(run("index", str(tmp_path / "emb"), "--out", str(tmp_path / "index")))
    assert "no vectors to index" in line and "all 3 items" in line and "failed" in line


# -- issue 20, defect 4: a bad --precision used to exit 2 printing nothing ----------------------------

def test_bad_precision_is_refused_before_anything_is_prepared(tmp_path: Path) -> None:
    line = one_error_line(run("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                              "--precision", "bf17"))
    assert "'bf17'" in line and "amp_bf16" in line and "pure_fp16" in line
    assert not (tmp_path / "run").exists()


def test_trainer_argument_errors_reach_the_user(tmp_path: Path) -> None:
    """What open_clip_train's argparse says (in the run's trainer.log) is part of the TrainError."""
    from biomedclip.train.launch import TrainError, _run_in_process

    log = tmp_path / "trainer.log"
    with pytest.raises(TrainError) as caught:
        _run_in_process(["--precision", "bf17"], log)
    message = str(caught.value)
    assert "argument --precision: invalid choice: 'bf17'" in message and str(log) in message
    assert isinstance(caught.value, BiomedclipError)


# -- issue 20, defect 7: a failed build blocked the corrected command ---------------------------------

def test_overwrite_replaces_a_failed_build_and_is_offered(corpus: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    typo = one_error_line(run("data", "build", str(corpus / "folderz"), "--out", str(shards), "--workers", "1"))
    assert "folderz" in typo and "does not exist" in typo
    again = one_error_line(run("data", "build", str(corpus / "folders"), "--out", str(shards), "--workers", "1"))
    assert "already holds a build" in again and "--overwrite" in again
    resumed = one_error_line(run("data", "build", str(corpus / "folders"), "--out", str(shards), "--workers", "1",
                                 "--resume"))
    assert "other sources" in resumed and "--overwrite" in resumed
    fixed = run("data", "build", str(corpus / "folders"), "--out", str(shards), "--workers", "1", "--overwrite")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (shards / "stats.json").is_file() and (shards / ".biomedclip-build").is_file()


def test_overwrite_never_deletes_a_folder_the_build_did_not_write(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    line = one_error_line(run("data", "build", str(corpus / "folders"), "--out", str(tmp_path), "--overwrite"))
    assert "not written by `biomedclip data build`" in line
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# -- issue 20, defect 10: Ctrl-C ----------------------------------------------------------------------

def test_ctrl_c_says_how_to_continue_and_exits_130(tmp_path: Path) -> None:
    corpus, shards = tmp_path / "corpus", tmp_path / "shards"
    assert run("-q", "data", "synth", str(corpus), "--articles", "150", "--workers", "2").returncode == 0
    command = [BIN, "data", "build", str(corpus / "folders"), str(corpus / "packages"), "--out", str(shards),
               "--workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's Ctrl-C reaches
    deadline = time.monotonic() + 60
    while not (shards / "_build" / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted: re-run the same command with --resume to continue"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (shards / "stats.json").is_file()


# -- issue 11: fail fast on a hub model while offline -------------------------------------------------

@pytest.mark.parametrize("args", [
    ["embed", ".", "--model", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "--out", "e"],
    ["eval", "zeroshot", "--model", "hf-hub:org/name", "--data", ".", "--out", "r"],
    ["train", "--data", ".", "--out", "run", "--model", "hf-hub:org/name"],
])
def test_hub_model_offline_fails_before_torch_is_imported(args: list[str], tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run([BIN, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "BIOMEDCLIP_ALLOW_DOWNLOAD": "0"})
    seconds = time.monotonic() - started
    line = one_error_line(result)
    assert "downloads are disabled" in line and "local-dir:" in line
    assert seconds < 3.0, f"{seconds:.1f} s (was ~6 s when torch and open_clip were imported first)"
    assert list(tmp_path.iterdir()) == []


# -- the handler itself -------------------------------------------------------------------------------

def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    plain = run("data", "stats", str(tmp_path))
    assert "not a finished build folder" in one_error_line(plain)
    debug = run("--debug", "data", "stats", str(tmp_path))
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "NotABuildError" in debug.stderr


def test_unexpected_exceptions_are_one_line_naming_the_bug(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from biomedclip import ui

    def broken() -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    ui.configure(debug=False)
    with pytest.raises(typer.Exit) as exited:
        ui.run_guarded(broken)
    assert exited.value.exit_code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unexpected TypeError: unsupported operand")
    assert "re-run with --debug for the traceback" in err
    ui.configure(debug=True)
    try:
        with pytest.raises(TypeError):
            ui.run_guarded(broken)
    finally:
        ui.configure(debug=False)


def test_messages_are_never_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from biomedclip import ui

    def refuse() -> None:
        raise BiomedclipError("--labels [bold]a[/bold] b: no such [file]")

    ui.configure()
    with pytest.raises(typer.Exit) as exited:
        ui.run_guarded(refuse)
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err.strip() == "error: --labels [bold]a[/bold] b: no such [file]"


def test_version() -> None:
    from biomedclip import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"biomedclip {__version__}"
