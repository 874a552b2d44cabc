"""Recipes are data: JSON files in ``configs/`` parsed by ``HfArgumentParser``.

A recipe may carry documentation in keys that start with ``_`` (``"_comment"``); they are
dropped before parsing. Any other unknown key is an error, so a typo cannot pass silently.

Mistakes in a script's arguments (an unknown flag or key, a value ``__post_init__`` refuses) are raised as
:class:`~modeling.cli.UsageError` with a did-you-mean where one fits, before any dataclass is built where
possible; the scripts' entry points print them as one line (:func:`modeling.cli.run_main`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, get_type_hints

from transformers import HfArgumentParser

from ..cli import HelpFormatter, UsageError, did_you_mean

TRAINER_GROUP = "Trainer options (transformers.TrainingArguments)"


class ScriptArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` for the scripts: flags are never abbreviated (``--learning_rat`` is a typo, as it is
    after a recipe), and argparse's errors are raised as :class:`UsageError` instead of printing the usage of
    every ``TrainingArguments`` field.

    ``--help`` shows one group per dataclass, titled by its ``_argument_group_name`` (a class attribute, as
    ``HfArgumentParser`` reads it), in the order given; a ``TrainingArguments`` subclass gives two, the fields it
    declares (this project's options and the Trainer defaults it changes) and then :data:`TRAINER_GROUP`.
    """

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        self.narrowed: dict[str, tuple[str, ...]] = {}
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def _add_dataclass_arguments(self, dtype) -> None:
        # Loaded already where a dataclass derives from it; importing it here would cost the demo seconds (peft).
        trainer_args = getattr(sys.modules.get("transformers.training_args"), "TrainingArguments", None)
        if trainer_args is None or not issubclass(dtype, trainer_args) or dtype is trainer_args:
            return super()._add_dataclass_arguments(dtype)
        own = set(inspect.get_annotations(dtype))
        hints = get_type_hints(dtype)
        mine = self.add_argument_group(getattr(dtype, "_argument_group_name", "Training"))
        trainer = self.add_argument_group(TRAINER_GROUP)
        for field in dataclasses.fields(dtype):
            if field.init:
                field.type = hints[field.name]
                self._parse_dataclass_field(mine if field.name in own else trainer, field)

    def narrow(self, name: str, choices: Sequence[str], help: str) -> None:
        """Restricts the option ``--name`` to ``choices``, with ``help`` saying why (``--optim``: the trainers build
        AdamW only). A recipe's value is checked against them too (:func:`parse_script_args`)."""
        (action,) = [a for a in self._actions if a.dest == name]
        action.choices, action.help = list(choices), help
        self.narrowed[name] = tuple(choices)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's arguments, without its ``_``-prefixed documentation keys."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such recipe file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a JSON object of argument names to values")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def parse_script_args(
    parser: HfArgumentParser, argv: Sequence[str], choices: Mapping[str, Sequence[str]] | None = None
) -> tuple[Any, ...]:
    """A JSON recipe as the sole argument (optionally followed by ``--key value`` overrides), or flags.

    ``choices``: the allowed values of some string arguments (each item of a comma-separated value), with those of
    :meth:`ScriptArgumentParser.narrow`, checked before the dataclasses are built. Unknown flags and keys, refused
    choices and the values the dataclasses' ``__post_init__`` refuses are raised as :class:`UsageError`.
    """
    argv = list(argv)
    names = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype) if f.init}
    if argv and argv[0].endswith(".json"):
        if "-h" in argv or "--help" in argv:
            parser.parse_args(["--help"])  # prints the help and exits
        recipe = load_recipe(argv[0])
        flags = _flags_to_dict(argv[1:])
        _refuse_unknown([f"--{k}" for k in flags if k not in names], names)
        unknown = [k for k in recipe if k not in names]
        if unknown:
            raise UsageError(f"{argv[0]}: unknown key(s) {unknown}{did_you_mean(unknown[0], names)}")
        values = {**recipe, **flags}  # later flags override the recipe's values
    else:
        namespace, remaining = parser.parse_known_args(args=argv)
        _refuse_unknown(remaining, names)
        values = vars(namespace)
    for name, allowed in {**getattr(parser, "narrowed", {}), **(choices or {})}.items():
        items = [item.strip() for item in str(values.get(name) or "").split(",") if item.strip()]
        for item in (i for i in items if i not in allowed):
            raise UsageError(f"--{name} {item!r}: choose one of {list(allowed)}{did_you_mean(item, allowed)}")
    try:
        return parser.parse_dict(values)
    except ValueError as err:  # the dataclasses' __post_init__ checks of the values
        raise UsageError(str(err)) from err


def _refuse_unknown(args: Sequence[str], names: set[str]) -> None:
    """One :class:`UsageError` for the arguments no dataclass field takes, with the closest flag for the first."""
    if not args:
        return
    flag = next((a for a in args if a.startswith("-")), None)
    if flag is None:
        first = " (a JSON recipe goes first)" if any(a.endswith(".json") for a in args) else ""
        raise UsageError(f"unrecognized argument(s) {list(args)}{first}")
    name = flag.lstrip("-").split("=", 1)[0].replace("-", "_")
    others = [a for a in args if a.startswith("-") and a != flag]
    also = f" (also unknown: {' '.join(others)})" if others else ""
    raise UsageError(f"unknown flag {flag.split('=', 1)[0]}{did_you_mean(name, names, prefix='--')}{also}")


def _flags_to_dict(flags: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(flags):
        key, value = flags[i], None
        if not key.startswith("--"):
            raise UsageError(f"expected --name after the recipe, got {key!r}")
        if "=" in key:  # --name=value
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            value = flags[i + 1]
            i += 2
        else:
            value, i = "true", i + 1
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            pass
        out[key[2:].replace("-", "_")] = value  # --num-train-epochs works after a recipe too
    return out


def parse_overrides(text: str | None) -> dict:
    """``'a=1,b=0.5,c=true'`` -> ``{'a': 1, 'b': 0.5, 'c': True}``."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if not _:
            raise ValueError(f"config_overrides item {item!r} is not key=value")
        out[key.strip()] = json.loads(value.strip().lower() if value.strip().lower() in ("true", "false") else value)
    return out
