"""What every command shares: the two consoles, the error-to-exit-status rule and the progress bar."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


class UsageError(ValueError):
    """Bad input from the command line."""


@functools.cache
def input_errors() -> tuple[type[Exception], ...]:
    """The project's error types that mean bad input. Imported on the first command run, not at start-up,
    because their modules load torch and pandas and `distill --help` should not wait for them."""
    from analysis.load import AnalysisError
    from study.network.envs import EnvError
    from study.network.rl.common import DeviceError
    from study.network.teacher import TeacherError
    from study.spec import StudyError
    from study.store.format import OutputError
    from study.tabular.mdp import MDPError
    from variants import VariantError

    return (VariantError, MDPError, UsageError, OutputError, StudyError, AnalysisError, EnvError, TeacherError,
            DeviceError)


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input exits with status 2 and a message that names the problem; Ctrl-C exits with 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        handled = input_errors()
        try:
            return fn(*args, **kwargs)
        except handled as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # an output path that cannot be written
            err.print(f"[bold red]error:[/] {exc.filename or ''}: {exc.strerror or exc}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing was written")
            raise typer.Exit(130) from None

    return wrapper


def progress(*, transient: bool = True) -> Progress:
    """A progress bar on stderr (so that stdout stays the command's result), gone when done unless not
    ``transient``."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=transient)
