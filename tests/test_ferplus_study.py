"""The FER+ study driver keeps working: a seconds-long run on mini/ with two arms."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_study_driver_runs_pretraining_then_arms_and_writes_the_table(ferplus_mini_dir, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import ferplus_study
    finally:
        sys.path.remove(str(ROOT / "bench"))
    report = ferplus_study.main(["--tiny", "--work_dir", str(tmp_path), "--seeds", "0", "--arms", "A_scratch,B_mae"])
    saved = json.loads((tmp_path / "ferplus_study.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert [r["arm"] for r in saved["runs"]] == ["A_scratch", "B_mae"]
    for row in saved["runs"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["train_minutes"] > 0
    table = (tmp_path / "ferplus_study.md").read_text()
    assert "majority-class baseline | - | 34.52" in table
    # A second call finds every run finished and only collects.
    again = ferplus_study.main(["--tiny", "--work_dir", str(tmp_path), "--seeds", "0", "--arms", "A_scratch,B_mae"])
    assert again["runs"] == report["runs"]
