"""Training in the terminal: a live bar while open_clip_train runs, and the summary table after.

Shared by ``biomedclip train`` and the demo, so it is not part of either's CLI module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from biomedclip.ui import console, progress_bar

if TYPE_CHECKING:  # launch imports the trainer's modules; only the command that trains pays for them
    from biomedclip.train.launch import TrainConfig
    from biomedclip.train.monitor import StepRecord


def run_training_with_progress(config: TrainConfig) -> dict[str, Any]:
    """Train with a live bar (steps done, loss, samples/s); returns :func:`~biomedclip.train.launch.train`'s summary."""
    from biomedclip.train.launch import train

    with progress_bar() as bar:
        task = bar.add_task("training", total=None, info="preparing model and data …")
        steps_per_epoch = [1]

        def started(plan: dict[str, Any]) -> None:
            for note in plan.get("warnings", []):  # said before the run, not lost in its log
                bar.console.print(f"[yellow]warning:[/yellow] {escape(note)}", soft_wrap=True, highlight=False)
            steps_per_epoch[0] = plan["schedule"]["steps_per_epoch"]
            bar.update(task, total=plan["schedule"]["total_steps"],
                       info=f"{plan['train_samples']:,} pairs · {plan['precision']} · {plan['nproc']} proc")

        def step(record: StepRecord) -> None:
            spe = steps_per_epoch[0]
            done = record.epoch * spe + round(record.samples_in_epoch / max(1, record.samples_per_epoch) * spe)
            bar.update(task, completed=done,
                       info=f"loss {record.loss:.3f} · {record.samples_per_s:,.0f} samples/s")

        return train(config, on_step=step, on_start=started)


def print_train_summary(summary: dict[str, Any]) -> None:
    """The numbers a researcher checks first after a run."""
    from rich.table import Table

    table = Table(title="Training run", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("steps", f"{summary['total_steps']:,}")
    table.add_row("samples/s", number(summary.get("samples_per_s"), ",.1f"))
    table.add_row("loss first → final", f"{number(summary.get('first_loss'), '.3f')} → "
                                         f"{number(summary.get('final_loss'), '.3f')}")
    for key in ("image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10",
                "text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10"):
        if key in summary["val"]:
            table.add_row(f"val {key}", number(summary["val"][key], ".3f"))
    table.add_row("wall time", f"{number(summary.get('wall_seconds'), ',.1f')} s")
    console.print(table)
    plot = f"\nloss plot: {summary['loss_plot']}" if summary.get("loss_plot") else ""
    console.print(f"bundle: {summary['bundle']}\nmetrics: {summary['metrics_csv']}{plot}\n"
                  f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")


def number(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec`` for a person to read; '–' when there is none (no step logged)."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)

