"""The ``fewshot`` command line: parses options and calls the library, nothing more.

The group and ``main`` live here, the options several commands share in ``options``, and each
command (or group of commands) in a module of its own. Every problem with the user's input ends
in one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from fewshot_cli import __version__
from fewshot_cli.allocator import reuse_freed_memory
from fewshot_cli.errors import FewshotError, TrainingInterrupted

# Reloading this package declares every command anew, so that the choice lists follow the
# library's constants as they are then (an option reads them when it is declared).
_RELOADING = f"{__name__}.options" in sys.modules

from fewshot_cli.cli import (  # noqa: E402
    aggregate,
    data,
    evaluate,
    models,
    options,
    plot,
    predict,
    reproduce,
    train,
)

if _RELOADING:  # the shared options first: the commands take theirs
    for _module in (options, data, train, evaluate, predict, aggregate, reproduce, plot, models):
        importlib.reload(_module)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fewshot")
@options.with_algorithms
def cli():
    """Few-shot image classification: train and test {algorithms} on Omniglot (the
    default), mini-ImageNet, CIFAR-FS or your own folder of class folders (--dataset).

    \b
    Typical session:
      fewshot data --data-root ~/omniglot
      fewshot train protonet --out runs/proto --iterations 1000
      fewshot eval runs/proto --csv results.csv --episodes 600
      fewshot aggregate results.csv
      fewshot plot curves runs/proto --out curves.png
      fewshot predict pretrained:protonet-omniglot-5w1s --support examples/ --query photos/
    """


COMMANDS = (
    data.data,
    train.train,
    evaluate.eval_,
    predict.predict,
    aggregate.aggregate,
    reproduce.reproduce,
    plot.plot,
    models.models,
    models.export,
)
for _command in COMMANDS:
    cli.add_command(_command)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show the library's own warnings (skipped files, left-out classes) as ``warning:`` lines;
    any other warning as Python shows it."""
    if category is UserWarning and "fewshot_cli" in str(filename):
        click.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn every expected failure into one line and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    reuse_freed_memory()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            # obj: the arguments as given, for `train --nproc` to relaunch itself under torchrun.
            code = cli.main(
                args=argv, prog_name="fewshot", standalone_mode=False, obj={"argv": argv}
            )
    except FewshotError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "fewshot"
        message = " ".join(exc.format_message().split())  # Click wraps choices over lines
        click.echo(f"error: {message} (see '{command} --help')", err=True)
        return 2
    except TrainingInterrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        return 128 + exc.signum  # the shell's code for the signal: 130 Ctrl-C, 143 SIGTERM
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0
