"""``scripts/timm_zoo_sweep.py``: a sample of the zoo on the meta device, every model mapped and
checked against its forward pass, and its command line."""

import json
import subprocess
import sys
from pathlib import Path

import timm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import timm_zoo_sweep  # noqa: E402


# --- the zoo sweep ---------------------------------------------------------------------------


def test_zoo_sweep_sample_on_the_meta_device(tmp_path):
    out = tmp_path / "sweep.jsonl"
    assert timm_zoo_sweep.main(["--every", "50", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(timm.list_models()[::50]) >= 25
    for r in records:
        assert r["created"] and r["mapped"], r
        assert r["n_ids"] >= 2 and r["unmapped"] == [], r["model"]
        assert r["head_ids"] in ([], [r["num_layers"] - 1]), r["model"]
        assert r["forward"] == "ok" and r["stem_id"] == 0, r["model"]
        if not r["model"].startswith("efficientvim"):  # see docs/timm_coverage.md
            assert r["n_violations"] == 0, (r["model"], r["violations"])
        if r["has_group_matcher"]:
            assert r["at_least_as_fine"], r["model"]
    summary = timm_zoo_sweep.summarize(records)
    assert f"| mapped with >= 2 ids and every trainable parameter placed | {len(records)} |" in summary


def test_zoo_sweep_command_line_help():
    script = Path(timm_zoo_sweep.__file__)
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--out" in done.stdout and "--summary" in done.stdout
