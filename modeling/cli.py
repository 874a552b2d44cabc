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

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
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


# A help text that already speaks of its default: "(default: ...)", "; default 0.8 with 'mae'", "Skipped by default".
_SAYS_DEFAULT = re.compile(r"\bdefaults?\b", re.IGNORECASE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` of the commands: the description as written (its example commands keep their lines), each option's
    help followed by ``(default: X)``, unless the help already says its default or there is none to show (None,
    False). argparse's ``ArgumentDefaultsHelpFormatter`` adds ``(default: None)`` even after a help that explains
    the default, which printed ``(default: ...) (default: None)`` (issue 28)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or _SAYS_DEFAULT.search(text) or default is None or default is False:
            return text
        if default is argparse.SUPPRESS or (not action.option_strings and action.nargs not in ("?", "*")):
            return text
        return f"{text} (default: %(default)s)"


def plain_text(doc: str) -> str:
    """A reST docstring as ``--help`` shows it: double backticks dropped, ``:mod:`~a.b``` written ``a.b``."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc).replace("``", "")


def require_dir(flag: str, path: str) -> None:
    """``UsageError`` ``--data_dir /x: not a directory`` unless ``path`` is an existing folder."""
    if not Path(path).expanduser().is_dir():
        raise UsageError(f"{flag} {path}: not a directory")


# The first folder of a relative path that can only be local: where this project's recipes write (configs/*.json
# output_dir) and the Trainer's usual run folders. A Hub owner of that name would have to be typed as ./outputs/x.
LOCAL_ROOTS = ("outputs", "output", "out", "runs", "checkpoints")
# Files a model option may name directly (an MAE .pth, exported ONNX); a Hub id names a repository, not a file.
MODEL_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".onnx")
HUB_ID_HINT = "a Hub id looks like user/name"


def local_reason(name: str) -> str | None:
    """Why ``name`` can only be a local path, not a Hub id; None where it may be one (``user/name``).

    A Hub id is ``owner/name``: one slash, no leading ``.``, ``/`` or ``~``. So ``name`` is local when it exists
    (file or folder); starts with ``.``, ``/``, ``~`` or a drive letter, or holds a backslash; has no slash or more
    than one; ends in a weights or ONNX file suffix (:data:`MODEL_FILE_SUFFIXES`); or its first folder exists here
    or is one of :data:`LOCAL_ROOTS` (``outputs/ferplus_tiny`` before the run that writes it). Anything else
    (``user/name``) is left to transformers, which looks it up on the Hub.
    """
    path = Path(name).expanduser()
    first = name.split("/", 1)[0]
    if path.exists():
        return "it exists here"
    if name.startswith("~"):
        return "a path in your home folder"
    if name.startswith("/") or re.match(r"[A-Za-z]:[\\/]", name):
        return "an absolute path"
    if name.startswith(".") or "\\" in name:
        return "a local path"
    if name.lower().endswith(MODEL_FILE_SUFFIXES):
        return "a local file"
    slashes = name.rstrip("/").count("/")
    if slashes != 1:
        return f"a local path: {'no' if slashes == 0 else 'more than one'} / in it"
    if Path(first).is_dir():
        return f"a local path: ./{first} is a folder here"
    if first in LOCAL_ROOTS:
        return f"a local path: {first}/ is where runs write"
    return None


def looks_local(name: str) -> bool:
    """True when ``name`` can only be a local path, never a Hub id (the rule: :func:`local_reason`)."""
    return local_reason(name) is not None


def require_model(flag: str, name: str | None) -> None:
    """Stops at once when the model ``name`` given by ``flag`` is a local path that is not there.

    Without this, transformers takes ``outputs/ferplus_tiny`` for a Hub id and spends half a minute on retries
    before a connection error (issue 28). Raises :class:`MissingFileError`, e.g. ``--model outputs/x: no such folder
    (a local path: outputs/ is where runs write; a Hub id looks like user/name)``; ``flag`` is '' for a positional
    argument. None (no model: the default or from scratch) and ``user/name`` pass untouched.
    """
    if name is None or Path(name).expanduser().exists():
        return
    reason = local_reason(name)
    if reason is None:
        return
    what = "file" if name.lower().endswith(MODEL_FILE_SUFFIXES) else "folder"
    where = f"{flag} {name}" if flag else name
    raise MissingFileError(f"{where}: no such {what} ({reason}; {HUB_ID_HINT})")


def model_argument(argv: Sequence[str], key: str) -> str | None:
    """The model a script's ``argv`` names: the last ``--key VALUE`` (``--key=VALUE``, dashes too), else the
    ``key`` of the JSON recipe given first; None when absent or when the recipe cannot be read (the script's
    own parsing reports that)."""
    flags = (f"--{key}", f"--{key.replace('_', '-')}")
    value = None
    for i, arg in enumerate(argv):
        if arg in flags and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(tuple(f"{flag}=" for flag in flags)):
            value = arg.split("=", 1)[1]
    if value is None and argv and argv[0].endswith(".json"):
        try:
            recipe = json.loads(Path(argv[0]).read_text())
        except (OSError, ValueError):
            return None
        value = recipe.get(key) if isinstance(recipe, dict) else None
    return value if isinstance(value, str) else None


def check_model_argument(argv: Sequence[str], key: str, prog: str) -> None:
    """A training script's first step, before it imports torch and transformers (8 s on an idle 2-core machine,
    up to 30 s on a busy one): a model ``--key`` that names a missing local path (:func:`require_model`) ends
    the process at once, status 2 after one line. Anything else is left to the script's full parsing, which
    checks the same again (``main(argv)`` called from Python)."""
    if "-h" in argv or "--help" in argv:
        return
    status = run_main(lambda: require_model(f"--{key}", model_argument(argv, key)), prog)
    if status:
        sys.exit(status)


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
