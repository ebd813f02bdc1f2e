"""The ``biomedclip`` command: assembles the stages' own CLIs, one sub-command (group) per stage.

Each stage owns its commands in its own ``cli.py`` (data, models, train, evaluate, search, serve,
demo); this module only registers them. Commands stay thin — parse options, call the library,
print a summary — so every stage is also usable from Python and the CLI never holds logic the
tests cannot reach.

Every command runs under one error handler (:class:`biomedclip.ui.GuardedGroup`): expected
failures print one ``error:`` line and exit 2, Ctrl-C exits 130, a traceback only with ``--debug``
(conventions in docs/cli.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

from biomedclip import __version__
from biomedclip.data.cli import data_app
from biomedclip.demo.cli import demo_command
from biomedclip.evaluate.cli import eval_app, overlap_command
from biomedclip.models.cli import export_command, tokenizer_app
from biomedclip.search.cli import register as register_search_commands
from biomedclip.serve.cli import serve_command
from biomedclip.train.cli import train_command
from biomedclip.ui import DEBUG_ENV, GuardedGroup, configure

app = typer.Typer(
    cls=GuardedGroup,
    help="BiomedCLIP, end to end: PMC articles → figure–caption shards → model → evaluation → search.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"biomedclip {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar=DEBUG_ENV,
                                        help="On any error, show the full traceback.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, tables or summaries; errors "
                                                              "still go to stderr, --json output is unchanged.")]
    = False,
) -> None:
    configure(debug=debug, quiet=quiet)


app.add_typer(data_app, name="data")
data_app.command("overlap")(overlap_command)
app.add_typer(tokenizer_app, name="tokenizer")
app.command("train")(train_command)
app.command("export")(export_command)
app.add_typer(eval_app, name="eval")
register_search_commands(app)
app.command("serve")(serve_command)
app.command("demo")(demo_command)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
