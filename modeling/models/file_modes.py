"""Saved weights get the file mode of every other output.

safetensors (0.8, measured here) creates its files with mode 0600 whatever the umask, so ``save_pretrained`` and the
Trainer left ``model.safetensors`` readable by its owner alone beside a 0644 ``config.json``: another user of a shared
machine, a web server or a container running as another user could read the config but not the weights. Each of our
save paths (``run_mae.py``, ``run_finetune.py``, ``modeling.models.import_checkpoint``, ``modeling.hub.ship``) calls
:func:`share_like_other_outputs` on its folder after writing it, which gives such files the mode ``open()`` gives a new
file under the process's umask (0644 under the usual 022).
"""

from __future__ import annotations

import os
from pathlib import Path

# The files whose writers ignore the umask; everything else we write goes through open(), which applies it.
PRIVATE_WRITERS = ("*.safetensors",)


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``, 4.7+)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back (a file created in between gets 0644 at most)
    os.umask(mask)
    return mask


def output_file_mode() -> int:
    """The mode ``open()`` gives a new file now: 0666 less the umask (0644 under umask 022)."""
    return 0o666 & ~umask()


def share_like_other_outputs(folder: str | Path) -> list[Path]:
    """Gives the files of ``folder`` (recursively) that safetensors wrote :func:`output_file_mode`; returns the files
    whose mode changed. Files of other owners are left as they are; a missing folder changes nothing."""
    mode, changed = output_file_mode(), []
    owner = os.getuid() if hasattr(os, "getuid") else None  # Windows has no owner ids (nor these modes)
    folder = Path(folder)
    if not folder.is_dir():
        return changed
    for pattern in PRIVATE_WRITERS:
        for path in sorted(folder.rglob(pattern)):
            stat = path.lstat()
            if (
                path.is_symlink()
                or not path.is_file()
                or (owner is not None and stat.st_uid != owner)
                or stat.st_mode & 0o777 == mode
            ):
                continue
            path.chmod(mode)
            changed.append(path)
    return changed
