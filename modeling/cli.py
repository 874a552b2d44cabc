"""User errors of the command-line tools: one line ``prog: error: message`` and exit status 2, no traceback.

A mistake in what the user typed or pointed at (a misspelled flag, an unknown dataset name, a data folder that is
not there) is a :class:`UserError`; :func:`run_main` shows it as one line, the way argparse reports its own errors.
Anything else is a bug and keeps its traceback. Called from Python (tests, notebooks), ``main(argv)`` still raises:
only the ``if __name__ == "__main__":`` entry points go through :func:`run_main`. A command does not print its own
error line or return 2 itself: it raises a :class:`UserError`, or turns a library's error that, in that command, can
only come from what the user named into one with :func:`user_errors`.

    if __name__ == "__main__":
        sys.exit(run_main(main, "run_finetune.py"))
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class UserError(Exception):
    """Marks an error caused by the user's input; subclasses also derive from the builtin type they refine
    (``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working."""


class UsageError(UserError, ValueError):
    """A wrong flag, argument value or name on the command line or in a recipe."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named is not there, or lacks a file it should hold."""


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean 'ferplus'?"`` for the closest of ``choices`` (``prefix="--"``: ``--learning_rate``), or ''."""
    matches = difflib.get_close_matches(word, list(choices), n=1)
    if not matches:
        return ""
    return f"; did you mean {prefix}{matches[0]}?" if prefix else f"; did you mean {matches[0]!r}?"


def require_dir(flag: str, path: str) -> None:
    """``UsageError`` ``--data_dir /x: not a directory`` unless ``path`` is an existing folder."""
    if not Path(path).expanduser().is_dir():
        raise UsageError(f"{flag} {path}: not a directory")


@contextmanager
def user_errors(*types: type[Exception]) -> Iterator[None]:
    """Re-raises an exception of ``types`` raised inside as a :class:`UserError` with the same message.

    For a library's errors that, around this call, can only come from what the user named (a model folder that
    holds no classifier, a destination the user cannot write to); a :class:`UserError` passes through as it is.
    """
    try:
        yield
    except UserError:
        raise
    except types as err:
        raise UserError(str(err)) from err


def run_main(main: Callable[[], Any], prog: str) -> int:
    """The exit status of ``main()``: 2 after printing ``prog: error: message`` for a :class:`UserError`.

    ``main`` returning an int gives that status; any other return value (a results dict, a path) gives 0.
    """
    try:
        result = main()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def end_distributed() -> None:
    """Destroys the default process group if this process (a torchrun worker) has one, as the training scripts'
    last step. Left to interpreter exit, gloo's threads can outlive it: once in ``.ci/run`` (2-core AVX2 EPYC) a rank
    of ``run_mae.py`` aborted after its work was done (``terminate called without an active exception``, SIGABRT),
    and the launch failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
