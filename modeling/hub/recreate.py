"""Re-creates the model shipped in ``modeling/default_model/`` from the FER+ download, with one command.

It takes hours: the recorded run (``results/default_model_recipe/recipe_time.json``) took 14.06 CPU hours, 8.19 h
wall, on 2 cores of an AMD EPYC with AVX512-BF16 (bf16 autocast); stop it at any time, the same command goes on.

    python -m modeling.hub.recreate --data_dir /data/FERPlus              # from a checkout of this project
    python -m modeling.hub.recreate --data_dir /data/FERPlus --no_ship    # train and score, leave the package alone

Stages, each a run of the package's own commands with its recipe in ``configs/``:

1. MAE pretraining on every image of ``FER2013Train/`` (labels unused; validation and test faces never seen):
   ``configs/default_ferplus_mae.json``.
2. Fine-tuning from that MAE, the checkpoint selected on the validation split:
   ``configs/default_ferplus_finetune.json``.
3. A convolutional teacher (ResNet-18) trained on the same training faces: ``python -m modeling.training.teacher``.
   A training aid only; nothing of it is shipped.
4. Fine-tuning the stage-2 ViT again with distillation from that teacher, the checkpoint selected on the
   validation split: ``configs/default_ferplus_distil.json``.
5. Fine-tuning the stage-4 ViT at 72 px (12 x 12 tokens instead of 8 x 8, its position table resampled), with the
   same teacher, the checkpoint selected on the validation split, the test split scored once:
   ``configs/default_ferplus_hires.json``.
6. ``python -m modeling.hub.ship``: the selected model (a plain ViTForImageClassification), its card (with the
   peer comparison of ``results/peers.json``) and confusion matrix, into ``modeling/default_model/``.

A finished stage is skipped and an interrupted one resumes from its last checkpoint, so after a stop (a killed
process, the end of a session) the same command simply goes on. Every attempt's wall time and CPU time (user +
system of the stage's whole process tree, read from ``/proc`` every few seconds, so a killed attempt keeps what
it used up to its last reading) are kept in ``WORK_DIR/recipe_time.json``; the totals go into the card.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..cli import HelpFormatter, UserError, plain_text, require_dir, run_main

ROOT = Path(__file__).resolve().parents[2]
MAE_RECIPE = "configs/default_ferplus_mae.json"
FINETUNE_RECIPE = "configs/default_ferplus_finetune.json"
DISTIL_RECIPE = "configs/default_ferplus_distil.json"
HIRES_RECIPE = "configs/default_ferplus_hires.json"
SHIPPED_MODELS = ROOT / "results" / "shipped_models.json"  # the earlier default models, a row each in the card
HEARTBEAT_S = 5.0
TINY_MAE = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=16,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=32"
)


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of ``root_pid`` and its live descendants, and of their waited-for children
    (``cutime``/``cstime``), from ``/proc``; 0.0 where ``/proc`` cannot be read (not Linux)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, cpu seconds)
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        # after the command name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based in proc(5)
        ppid, utime, stime, cutime, cstime = int(fields[1]), *(int(f) for f in fields[11:15])
        stats[int(entry.name)] = (ppid, (utime + stime + cutime + cstime) / _ticks())
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in tree if pid in stats)


class TimeLog:
    """``recipe_time.json``: one record per attempt of a stage (wall and CPU seconds, exit status), rewritten by a
    heartbeat while the attempt runs so that an attempt whose driver is killed still counts."""

    def __init__(self, path: Path):
        self.path = path
        self.attempts: list[dict] = json.loads(path.read_text())["attempts"] if path.exists() else []

    def save(self) -> None:
        totals = {
            "wall_hours": sum(a["wall_s"] for a in self.attempts) / 3600,
            "cpu_hours": sum(a["cpu_s"] for a in self.attempts) / 3600,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**totals, "attempts": self.attempts}, indent=2))
        tmp.replace(self.path)

    def run(self, stage: str, cmd: list[str], log: Path, env: dict[str, str]) -> int:
        record = {"stage": stage, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": 0.0, "cpu_s": 0.0}
        self.attempts.append(record)
        start = time.perf_counter()
        with open(log, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
            done = threading.Event()

            def beat() -> None:
                while not done.wait(HEARTBEAT_S):
                    record["wall_s"] = time.perf_counter() - start
                    record["cpu_s"] = max(record["cpu_s"], tree_cpu_seconds(proc.pid))
                    self.save()

            thread = threading.Thread(target=beat, daemon=True)
            thread.start()
            try:
                code = proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                code = proc.wait()
            finally:
                done.set()
                thread.join()
        record["wall_s"] = time.perf_counter() - start
        record["exit"] = code
        self.save()
        return code


def stage_done(out: Path, key: str) -> bool:
    path = out / "all_results.json"
    return path.is_file() and key in json.loads(path.read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m modeling.hub.recreate",
        description=plain_text(__doc__),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data_dir", required=True, help="The official FER+ layout (FER2013Train/, ...)")
    parser.add_argument(
        "--work_dir",
        default=str(ROOT / "outputs" / "default_model_recipe"),
        help="Where the stages write: their runs with checkpoints (WORK_DIR/mae, WORK_DIR/finetune, "
        "WORK_DIR/teacher, WORK_DIR/distil, WORK_DIR/hires), logs (mae.log, ...), recipe_time.json and the dataset cache; the same "
        "WORK_DIR again skips finished stages and resumes an interrupted one",
    )
    parser.add_argument("--cache_dir", default=None, help="Prepared datasets (default: WORK_DIR/cache)")
    parser.add_argument(
        "--dest",
        default=str(Path(__file__).resolve().parents[1] / "default_model"),
        help="Where the last stage ships the selected model and its card, replacing what is there: the package's own "
        "model, which fer-predict and the demo use without --model; untouched with --no_ship",
    )
    parser.add_argument("--no_ship", action="store_true", help="Train and score only; leave the package alone")
    parser.add_argument("--tiny", action="store_true", help="Smoke run (tests): 2-layer width-32 models, 2 steps each")
    args = parser.parse_args(argv)

    require_dir("--data_dir", args.data_dir)
    data = Path(args.data_dir)
    if not (data / "FER2013Train").is_dir():
        raise UserError(f"--data_dir {data}: no FER2013Train/ folder there (the official FER+ layout)")
    for script in ("run_mae.py", "run_finetune.py", MAE_RECIPE, FINETUNE_RECIPE, DISTIL_RECIPE, HIRES_RECIPE):
        if not (ROOT / script).is_file():
            raise UserError(f"{ROOT / script} not found: run this from a checkout of the project (git clone)")
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = str(Path(args.cache_dir or work / "cache").resolve())
    times = TimeLog(work / "recipe_time.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}

    stages = [
        ("mae", "train_runtime", ["run_mae.py", MAE_RECIPE, "--data_dir", str(data / "FER2013Train")]),
        # stage 2 is selected on validation only: the test split is scored once, by the last stage
        ("finetune", "eval_accuracy", ["run_finetune.py", FINETUNE_RECIPE, "--data_dir", str(data),
                                       "--model_name_or_path", str(work / "mae"), "--do_predict", "false"]),
        ("teacher", "eval_accuracy", ["-m", "modeling.training.teacher", "--data_dir", str(data)]),
        ("distil", "eval_accuracy", ["run_finetune.py", DISTIL_RECIPE, "--data_dir", str(data),
                                     "--model_name_or_path", str(work / "finetune"),
                                     "--teacher_dir", str(work / "teacher")]),
        ("hires", "test_accuracy", ["run_finetune.py", HIRES_RECIPE, "--data_dir", str(data),
                                    "--model_name_or_path", str(work / "distil"),
                                    "--teacher_dir", str(work / "teacher")]),
    ]  # fmt: skip
    if args.tiny:
        steps = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "steps",
                 "--eval_steps", "1", "--dataloader_num_workers", "0"]  # fmt: skip
        stages[0][2].extend(["--config_overrides", TINY_MAE, *steps])
        stages[1][2].extend(steps)
        stages[2][2].extend(["--epochs", "1", "--max_steps_per_epoch", "2", "--batch_size", "8",
                             "--max_eval_samples", "16", "--num_workers", "0"])  # fmt: skip
        stages[3][2].extend(steps)
        stages[4][2].extend(steps)
    for name, key, cmd in stages:
        out = work / name
        if stage_done(out, key):
            continue
        code = times.run(
            name,
            [sys.executable, *cmd, "--output_dir", str(out), "--cache_dir", cache],
            work / f"{name}.log",
            env,
        )
        if code:
            raise UserError(
                f"stage {name} stopped with exit status {code} (see {work / (name + '.log')}); "
                "run the same command again to resume it from its last checkpoint"
            )
    summary = json.loads((work / "recipe_time.json").read_text()) if (work / "recipe_time.json").exists() else {}
    if not args.no_ship:
        compute = (
            f"{summary.get('cpu_hours', 0):.2f} CPU hours ({summary.get('wall_hours', 0):.2f} h wall) on "
            f"{machine()}, {len(summary.get('attempts', []))} attempt(s)"
        )
        ship = [sys.executable, "-m", "modeling.hub.ship", str(work / "hires"), "--dest", args.dest,
                "--recipe", recipe_summary(), "--previous", str(SHIPPED_MODELS),
                "--compute", compute]  # fmt: skip
        subprocess.run(ship, cwd=ROOT, env=env, check=True)
    return summary


def recipe_summary() -> str:
    """One line for the card: the stages as their configs in ``configs/`` set them, and the command."""
    mae = json.loads((ROOT / MAE_RECIPE).read_text(encoding="utf-8"))
    ft = json.loads((ROOT / FINETUNE_RECIPE).read_text(encoding="utf-8"))
    kd = json.loads((ROOT / DISTIL_RECIPE).read_text(encoding="utf-8"))
    hires = json.loads((ROOT / HIRES_RECIPE).read_text(encoding="utf-8"))
    kind = "hard" if kd.get("hard_distillation") else "soft"
    kind += f" (alpha {kd['distillation_alpha']}, T {kd['distillation_temperature']})"
    return (
        f"MAE pretraining on the FER+ training faces, labels unused ({mae['num_train_epochs']} epochs, "
        f"`{MAE_RECIPE}`), then fine-tuning on their FER+ labels ('{ft['dataset_config_name']}' protocol), "
        f"'{ft['weighted_sampler']}' sampler ({ft['num_train_epochs']} epochs, `{FINETUNE_RECIPE}`), then "
        f"{kd['num_train_epochs']} more epochs with {kind} distillation from a ResNet-18 teacher trained on the same "
        f"faces (`python -m modeling.training.teacher`, `{DISTIL_RECIPE}`; the teacher is not shipped), then "
        f"{hires['num_train_epochs']} epochs more at {hires['image_size']} px with the same teacher "
        f"(`{HIRES_RECIPE}`, the position table resampled to the finer token grid); "
        "`python -m modeling.hub.recreate --data_dir DATA` re-creates it"
    )


def machine() -> str:
    from ..precision import cpu_bf16_units, cpu_model

    units = ", ".join(cpu_bf16_units()) or "no bf16 units"
    return f"{os.cpu_count()} cores of an {cpu_model()} ({units})"


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.hub.recreate"))
