"""`biomedclip demo`: the whole system on the embedded synthetic corpus, one step after another.

Synthesise PMC-style articles → build shards → train the domain tokenizer → pretrain
biomedclip-tiny with the paper's recipe scaled down → evaluate on the held-out test split next to
the same architecture untrained → embed, index and search the test images → ``report.md``.

Each step is the library call behind a CLI command and the demo prints that command before it
runs, so the output doubles as a worked example of repeating every step on real PMC data.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from biomedclip.errors import OutputExistsError

# Queries a reader of the demo can judge by eye: each names one modality of the corpus.
TEXT_QUERIES = ("chest X-ray showing an opacity", "H&E-stained section of a tumour", "western blot")
IMAGE_QUERY_MODALITY = "brain MRI"
DEMO_MARKER = ".biomedclip-demo"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of a demo run. ``small()`` is the reduced run of the end-to-end test."""

    articles: int = 2000
    steps: int = 800
    batch_size: int = 64
    vocab_size: int = 8000
    shard_size: int = 500
    workers: int = 0
    bootstrap: int = 1000
    seed: int = 0
    device: str = "auto"  # the runtime's rules: CUDA if present (training, evaluation, embedding)
    precision: str = "auto"

    @classmethod
    def small(cls, workers: int = 0) -> DemoConfig:
        return cls(articles=400, steps=240, vocab_size=3000, shard_size=200, workers=workers, bootstrap=200)


class _Steps:
    """Prints a numbered rule and the equivalent command per step; records wall time per step."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.times: dict[str, float] = {}
        self.commands: dict[str, str] = {}
        self._n = 0

    def run(self, key: str, title: str, command: str, fn: Callable[[], Any]) -> Any:
        self._n += 1
        self.console.print(Rule(f"{self._n}. {title}"))
        self.console.print(f"[dim]$ {command}[/dim]")
        self.commands[key] = command
        started = time.monotonic()
        result = fn()
        self.times[key] = round(time.monotonic() - started, 1)
        self.console.print(f"[dim]{key}: {self.times[key]:.1f} s[/dim]")
        return result


def run_demo(out: Path, config: DemoConfig | None = None, *, console: Console | None = None) -> dict[str, Any]:
    """Run every step into ``out`` and return the demo summary.

    A folder from an earlier demo run is replaced; any other non-empty folder is refused.

    The summary (also ``out/summary.json``) holds per-step wall times, the training summary and the
    trained/untrained evaluation numbers; ``out/report.md`` is the readable version.
    """
    from biomedclip.data.executors import default_workers
    from biomedclip.models.runtime import Runtime

    config = config or DemoConfig()
    Runtime.resolve(config.device, config.precision)  # a missing GPU fails before anything is written
    console = console or Console()
    workers = config.workers or default_workers()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file():  # never delete a folder the demo did not write
            raise OutputExistsError(f"{out} exists and is not a demo output folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("written by `biomedclip demo`; the demo replaces this folder when rerun\n")
    paths = {name: out / name for name in ("corpus", "shards", "tokenizer", "run", "bundle", "testsets", "eval",
                                           "embeddings", "index")}
    steps = _Steps(console)
    started = time.monotonic()

    corpus = steps.run("synth", f"synthesise {config.articles:,} PMC-style articles",
                       f"biomedclip data synth {paths['corpus']} --articles {config.articles} --workers {workers}",
                       lambda: _synthesise(paths["corpus"], config, workers, console))
    stats = steps.run("build", "build WebDataset shards (both cores)",
                      f"biomedclip data build {paths['corpus']}/folders {paths['corpus']}/packages "
                      f"--out {paths['shards']} --splits train=0.8,val=0.1,test=0.1 --workers {workers}",
                      lambda: _build(paths, config, workers, console))
    coverage = steps.run("tokenizer", "train the domain tokenizer",
                         f"biomedclip tokenizer train {paths['shards']} --vocab-size {config.vocab_size} "
                         f"--out {paths['tokenizer']}  &&  biomedclip tokenizer stats {paths['shards']} "
                         f"--tokenizer {paths['tokenizer']}",
                         lambda: _tokenizer(paths, config, console))
    training = steps.run("train", f"pretrain biomedclip-tiny ({config.steps} steps, batch {config.batch_size})",
                         f"biomedclip train --data {paths['shards']} --model biomedclip-tiny --tokenizer "
                         f"{paths['tokenizer']} --steps {config.steps} --batch-size {config.batch_size} "
                         f"--out {paths['run']}",
                         lambda: _train(paths, config, console))
    evaluation = steps.run("evaluate", "evaluate on the held-out test split (trained vs untrained)",
                           f"biomedclip eval retrieval --model {paths['bundle']} --data {paths['shards']} "
                           f"--split test --out {paths['eval']}/retrieval  &&  biomedclip eval zeroshot --model "
                           f"{paths['bundle']} --data {paths['testsets']}/synthetic-modality --task "
                           f"{paths['testsets']}/synthetic-modality.json --out {paths['eval']}/modality",
                           lambda: _evaluate(paths, corpus, config, console))
    search = steps.run("search", "embed the test images, build the index, search",
                       f"biomedclip embed {paths['shards']} --split test --model {paths['bundle']} --out "
                       f"{paths['embeddings']}  &&  biomedclip index {paths['embeddings']} --out {paths['index']}"
                       f"  &&  biomedclip search {paths['index']} \"{TEXT_QUERIES[0]}\"",
                       lambda: _search(paths, corpus, config, console))
    total = round(time.monotonic() - started, 1)
    summary = {"config": asdict(config), "workers": workers, "seconds": {**steps.times, "total": total},
               "commands": steps.commands, "data": _data_numbers(stats), "tokenizer": coverage,
               "training": training, "evaluation": evaluation, "search": search}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_report(out, summary, paths)
    _print_times(console, summary["seconds"])
    console.print(f"report: {out / 'report.md'}\nserve it: biomedclip serve --model {paths['bundle']} "
                  f"--index {paths['index']}")
    return summary


# -- steps --------------------------------------------------------------------------------------------


def _synthesise(corpus: Path, config: DemoConfig, workers: int, console: Console) -> Path:
    from biomedclip.synth import synthesize
    from biomedclip.ui import count_progress

    with count_progress("synthesising", config.articles, console) as progress:
        summary = synthesize(corpus, config.articles, seed=config.seed, workers=workers, progress=progress)
    console.print(f"{summary.articles:,} articles ({summary.packages:,} .tar.gz packages), "
                  f"{summary.figures:,} figures")
    return corpus


def _build(paths: dict[str, Path], config: DemoConfig, workers: int, console: Console) -> dict[str, Any]:
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.data.summary import caption_lengths, plot_caption_histogram, print_summary
    from biomedclip.ui import build_progress

    sources = [str(paths["corpus"] / "folders"), str(paths["corpus"] / "packages")]
    with build_progress(console) as show:
        stats = build(BuildConfig(sources=sources, out=paths["shards"], splits={"train": 0.8, "val": 0.1, "test": 0.1},
                                  workers=workers, shard_size=config.shard_size), progress=show)
    lengths = caption_lengths(paths["shards"])
    print_summary(stats, console, lengths)
    plot_caption_histogram(lengths, paths["shards"] / "caption_lengths.png")
    return stats


def _tokenizer(paths: dict[str, Path], config: DemoConfig, console: Console) -> dict[str, Any]:
    from biomedclip.models.tokenizer import iter_captions, measure_tokens, plot_token_lengths, train_tokenizer

    captions = list(iter_captions(paths["shards"], split="train"))  # read the shards once for both uses
    train_tokenizer(captions, config.vocab_size, paths["tokenizer"])
    measured = measure_tokens(captions, paths["tokenizer"])
    stats = measured.stats()
    plot_token_lengths(measured.lengths, paths["tokenizer"] / "token_lengths.png")
    vocab = len((paths["tokenizer"] / "vocab.txt").read_text(encoding="utf-8").splitlines())
    table = Table(title=f"Caption length in tokens (vocab {vocab:,})", title_justify="left")
    table.add_column("context")
    table.add_column("captions that fit", justify="right")
    for context, share in stats["fits"].items():
        table.add_row(str(context), f"{share:.1%}")
    console.print(table)
    console.print(f"median {stats['p50']:.0f} tokens, 90th percentile {stats['p90']:.0f}, max {stats['max']}")
    return {"vocab": vocab, "coverage": stats["fits"], "p50": stats["p50"], "p90": stats["p90"]}


def _train(paths: dict[str, Path], config: DemoConfig, console: Console) -> dict[str, Any]:
    from biomedclip.train.display import print_train_summary, run_training_with_progress
    from biomedclip.train.launch import TrainConfig
    from biomedclip.train.recipe import Recipe

    recipe = Recipe(steps=config.steps, batch_size=config.batch_size, seed=config.seed, log_every_n_steps=10,
                    precision=config.precision)
    summary = run_training_with_progress(TrainConfig(data=paths["shards"], out=paths["run"], recipe=recipe,
                                                     tokenizer=paths["tokenizer"], device=config.device))
    print_train_summary(summary)
    shutil.copytree(paths["run"] / "bundle", paths["bundle"])
    return {k: summary[k] for k in ("total_steps", "samples_per_s", "first_loss", "final_loss", "wall_seconds", "val")}


def _evaluate(paths: dict[str, Path], corpus: Path, config: DemoConfig, console: Console) -> dict[str, Any]:
    from biomedclip.evaluate.cache import FeatureCache
    from biomedclip.evaluate.datasets import load_classification, load_retrieval
    from biomedclip.evaluate.report import write_report
    from biomedclip.evaluate.retrieval import evaluate_retrieval
    from biomedclip.evaluate.suite import model_info
    from biomedclip.evaluate.synthetic import export_task_folder, synthetic_task
    from biomedclip.evaluate.taskfile import load_task
    from biomedclip.evaluate.zeroshot import evaluate_zeroshot
    from biomedclip.models.runtime import load_runner

    retrieval = load_retrieval(paths["shards"], "test")
    # The labelled test figures as an image folder + task file: the layout of any user's dataset,
    # so the printed `biomedclip eval zeroshot` commands repeat exactly this evaluation.
    tasks = []
    for attribute in ("modality", "finding"):
        folder, task_file = export_task_folder(*synthetic_task(corpus, paths["shards"], split="test",
                                                               attribute=attribute), paths["testsets"])
        tasks.append((load_classification(folder), load_task(task_file)))
    numbers: dict[str, Any] = {}
    for label, bundle in (("trained", paths["bundle"]), ("untrained", paths["run"] / "init_bundle")):
        loaded = load_runner(bundle, device=config.device, precision=config.precision)
        cache = FeatureCache(paths["eval"] / "cache")
        results = [evaluate_retrieval(loaded, retrieval, cache=cache, n_bootstrap=config.bootstrap, seed=config.seed,
                                      name="retrieval-test")]
        for data, task in tasks:
            results.append(evaluate_zeroshot(loaded, data, task, cache=cache, n_bootstrap=config.bootstrap,
                                             seed=config.seed, name=task.name))
        write_report(paths["eval"] / label, results, model=model_info(loaded, str(bundle)), seed=config.seed,
                     title=f"Demo evaluation: {label} biomedclip-tiny on the synthetic test split")
        numbers[label] = {r.name: {"metrics": r.metrics, "ci": r.ci, "files": r.files, "n": r.data.get("evaluated")}
                          for r in results}
    _print_comparison(console, numbers)
    return numbers


def _search(paths: dict[str, Path], corpus: Path, config: DemoConfig, console: Console) -> dict[str, Any]:
    from biomedclip.models.runtime import load_runner
    from biomedclip.search.embed import embed_images
    from biomedclip.search.index import build_index
    from biomedclip.search.query import Searcher

    loaded = load_runner(paths["bundle"], device=config.device, precision=config.precision)
    embed_info = embed_images([paths["shards"]], loaded, paths["embeddings"], split=["test"])
    info = build_index(paths["embeddings"], paths["index"])
    searcher = Searcher(paths["index"], model=loaded)
    labels = {row["key"]: row for row in map(json.loads, (corpus / "labels.jsonl").read_text().splitlines())}
    found: dict[str, Any] = {"images": embed_info["count"], "index": info.kind, "queries": []}
    for query in TEXT_QUERIES:
        hits = searcher.search_text(query, k=5)
        _print_hits(console, f"text: “{query}”", hits, labels)
        found["queries"].append({"query": query, "hits": [_hit_row(h, labels) for h in hits]})
    # the query image: the first test figure of that modality in the exported evaluation folder
    query_file = min((paths["testsets"] / "synthetic-modality" / IMAGE_QUERY_MODALITY.replace(" ", "_")).glob("*.jpg"))
    query_key = query_file.stem
    hits = searcher.search_image(query_file, k=6)
    _print_hits(console, f"image: {query_key} ({IMAGE_QUERY_MODALITY})", hits, labels)
    found["queries"].append({"image": query_key, "modality": IMAGE_QUERY_MODALITY,
                             "hits": [_hit_row(h, labels) for h in hits]})
    return found


# -- output -------------------------------------------------------------------------------------------


def _data_numbers(stats: dict[str, Any]) -> dict[str, Any]:
    return {"articles": stats["articles"], "figures": stats["figures"], "dropped": stats["dropped"],
            "errors": stats["errors"], "splits": {k: v["samples"] for k, v in stats["splits"].items()}}


def _hit_row(hit: Any, labels: dict[str, dict]) -> dict[str, Any]:
    return {"key": hit.key, "score": hit.score, "modality": labels.get(hit.key, {}).get("modality"),
            "caption": (hit.caption or "")[:160]}


def _print_hits(console: Console, title: str, hits: list, labels: dict[str, dict]) -> None:
    table = Table(title=title, title_justify="left")
    for col, justify in (("#", "right"), ("score", "right"), ("true modality", "left"), ("caption", "left")):
        table.add_column(col, justify=justify, overflow="ellipsis", no_wrap=col == "caption", max_width=70)
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", str(labels.get(hit.key, {}).get("modality", "?")),
                      (hit.caption or "")[:120])
    console.print(table)


def _headline(numbers: dict[str, Any]) -> list[tuple[str, str]]:
    """(task, metric) pairs shown side by side for the trained and the untrained model."""
    return [("retrieval-test", "image_to_text_R@1"), ("retrieval-test", "image_to_text_R@5"),
            ("retrieval-test", "image_to_text_R@10"), ("retrieval-test", "text_to_image_R@5"),
            ("synthetic-modality", "accuracy"), ("synthetic-modality", "macro_auroc"),
            ("synthetic-finding", "accuracy"), ("synthetic-finding", "macro_auroc")]


def _cell(numbers: dict[str, Any], model: str, task: str, metric: str) -> str:
    entry = numbers[model].get(task, {})
    value = entry.get("metrics", {}).get(metric)
    ci = entry.get("ci", {}).get(metric)
    if value is None:
        return "–"
    return f"{value:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{value:.3f}"


def _print_comparison(console: Console, numbers: dict[str, Any]) -> None:
    table = Table(title="Held-out test split: trained vs untrained (95% bootstrap CI)", title_justify="left")
    for col in ("task", "metric", "trained", "untrained"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, metric in _headline(numbers):
        table.add_row(task, metric, _cell(numbers, "trained", task, metric), _cell(numbers, "untrained", task, metric))
    console.print(table)


def _print_times(console: Console, seconds: dict[str, float]) -> None:
    table = Table(title="Wall time per step", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, value in seconds.items():
        table.add_row(step, f"{value:.1f}")
    console.print(table)


def _rel(path: Path, out: Path) -> str:
    return str(Path(path).relative_to(out))


def _write_report(out: Path, summary: dict[str, Any], paths: dict[str, Path]) -> Path:
    """``report.md``: what ran, the numbers, the plots and how to repeat each step for real."""
    from biomedclip.train.display import number

    ev, tr, tok = summary["evaluation"], summary["training"], summary["tokenizer"]
    lines = ["# biomedclip demo report", "",
             f"Synthetic PMC-style corpus of {summary['config']['articles']:,} articles → shards → domain tokenizer →"
             f" biomedclip-tiny pretrained for {tr['total_steps']} steps → evaluation on the held-out test split"
             " (articles never seen in training) → index and search. The untrained model is the same architecture"
             " with its initial weights: the baseline every number should beat.", "",
             "## Data", ""]
    data = summary["data"]
    lines += [f"- articles seen: {data['articles']['seen']:,}; figures found: {data['figures']['found']:,};"
              f" pairs kept: {data['figures']['kept']:,} ({_counts(data['splits'])})",
              f"- dropped by reason: {_counts(data['dropped'])}; errors by reason: {_counts(data['errors'])}",
              f"- caption lengths: ![caption lengths]({_rel(paths['shards'] / 'caption_lengths.png', out)})", "",
              "## Tokenizer", "",
              f"WordPiece vocabulary of {tok['vocab']:,} tokens; captions that fit a context of "
              + ", ".join(f"{k}: {v:.1%}" for k, v in tok["coverage"].items())
              + f". ![token lengths]({_rel(paths['tokenizer'] / 'token_lengths.png', out)})", "",
              "## Pretraining", "",
              f"{tr['total_steps']:,} steps at {number(tr['samples_per_s'], ',.1f')} samples/s; loss "
              f"{number(tr['first_loss'], '.3f')} → {number(tr['final_loss'], '.3f')} (chance level ln(batch) = "
              f"{_ln(summary['config']['batch_size']):.2f}). The plot shows every logged step and one moving "
              "average across the whole run.", "",
              f"![loss]({_rel(paths['run'] / 'loss.png', out)})", "",
              "## Evaluation on the test split", "",
              "| task | metric | trained (95% CI) | untrained (95% CI) |", "|---|---|---:|---:|"]
    for task, metric in _headline(ev):
        lines.append(f"| {task} | {metric} | {_cell(ev, 'trained', task, metric)} | "
                     f"{_cell(ev, 'untrained', task, metric)} |")
    lines += ["", "Plots (trained model):", ""]
    for task, entry in ev["trained"].items():
        for name in entry.get("files", []):
            if name.endswith(".png"):
                lines.append(f"- {task}: ![{name}](eval/trained/{name})")
    lines += ["", "Full reports: `eval/trained/report.md`, `eval/untrained/report.md` (every number in "
              "`results.json`).", "", "## Search", ""]
    for q in summary["search"]["queries"]:
        head = f"text “{q['query']}”" if "query" in q else f"image {q['image']} ({q['modality']})"
        lines.append(f"**{head}** — top hits: " + "; ".join(
            f"{h['modality']} ({h['score']:.2f})" for h in q["hits"]))
        lines.append("")
    lines += ["## Wall time", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in summary["seconds"].items()]
    lines += ["", "## Repeat each step", "", "On this demo's data (exactly what ran):", "", "```bash"]
    lines += [summary["commands"][k] for k in summary["commands"]]
    lines += [f"biomedclip serve --model {paths['bundle']} --index {paths['index']}", "```", "",
              "On real PMC data and with the official weights:", "", "```bash",
              "# articles: the PMC Cloud bucket (anonymous; through its inventory, CC licences, no retracted"
              " or OCR-only papers; docs/data-pmc-cloud.md), PMC OA packages or folders of .nxml + media",
              "biomedclip data build s3://pmc-oa-opendata/ --out pmc_shards --executor ray --ray-address auto",
              "biomedclip tokenizer train pmc_shards --vocab-size 30522 --out pmc_tokenizer",
              "biomedclip train --data pmc_shards --model biomedclip-vit-b16-bert256 --tokenizer pmc_tokenizer "
              "--epochs 40 --nproc 8 --out pmc_run",
              "# the released BiomedCLIP weights, downloaded where there is network, as a local bundle:",
              "biomedclip eval zeroshot --model local-dir:BiomedCLIP --data pcam/ --task pcam --out reports/pcam",
              "biomedclip embed pmc_shards --split test --model local-dir:BiomedCLIP --out pmc_emb",
              "biomedclip index pmc_emb --out pmc_index",
              "biomedclip serve --model local-dir:BiomedCLIP --index pmc_index", "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _counts(counts: dict[str, int]) -> str:
    """``{"train": 7, "val": 0}`` → 'train 7, val 0' ('none' when empty): counts as a reader reads them."""
    return ", ".join(f"{name} {value:,}" for name, value in counts.items()) or "none"


def _ln(x: float) -> float:
    import math

    return math.log(x)
