"""The FER model shipped inside the package, so that ``fer-predict photo.jpg`` works right after ``pip install``.

The model lives in ``modeling/default_model/`` as ``save_pretrained`` writes it (``config.json``,
``model.safetensors``, ``preprocessor_config.json``, its ``README.md`` card, the confusion matrix PNG), installed as
package data (pyproject.toml ``[tool.setuptools.package-data]``). A version or checkout without that folder ships
no model: :func:`default_model_dir` then says to pass one.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from ..cli import UserError

ENV_VAR = "FER_MAE_DEFAULT_MODEL"
CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or the index of a sharded save


class NoDefaultModelError(UserError, FileNotFoundError):
    """No model ships with this install (or ``$FER_MAE_DEFAULT_MODEL`` points to a folder without one)."""


def holds_model(path: Path) -> bool:
    """Whether ``path`` holds a ``save_pretrained`` model: ``config.json`` and safetensors weights."""
    return (path / CONFIG).is_file() and any((path / name).is_file() for name in WEIGHTS)


def default_model_dir() -> Path:
    """The folder of the model shipped with the package, ``modeling/default_model/``, as a resolved real path.

    Loadable with ``from_pretrained`` and ``pipeline("image-classification", model=str(default_model_dir()))``.
    The environment variable ``FER_MAE_DEFAULT_MODEL`` (a model folder) replaces it, for tests and for users who
    want another default for ``fer-predict``.

    Raises :class:`NoDefaultModelError` (a ``FileNotFoundError``) if that folder lacks ``config.json`` or the weights.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser().resolve()
        if not holds_model(path):
            raise NoDefaultModelError(
                f"{ENV_VAR}={override}: no model there ({CONFIG} and {WEIGHTS[0]}); "
                f"point it to a save_pretrained folder, or pass --model DIR_OR_HUB_ID"
            )
        return path
    path = Path(str(files("modeling") / "default_model")).resolve()
    if not holds_model(path):
        raise NoDefaultModelError(
            f"this version or checkout of fer-mae ships no default model (nothing in {path}); "
            "pass --model DIR_OR_HUB_ID (a model folder or a Hub id), or train one (README.md: Quick start)"
        )
    return path
