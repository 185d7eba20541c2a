"""scripts/compare_commits.py: the comparison of two dumps, the supervised dump, and a commit
compared with itself (a git worktree, a dump of two timm models, the dump reused)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare_commits.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_commits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cc = load_script()


def record(key: str = "vit_tiny") -> dict:
    ids = {"pos_embed": 0, "blocks.0.attn.weight": 1, "blocks.0.attn.bias": 1, "head.weight": 2}
    groups = [
        ["layer_0_decay", 0, 0.05, 1e-3 * 0.75**2, ["pos_embed"]],
        ["layer_1_decay", 1, 0.05, 1e-3 * 0.75, ["blocks.0.attn.weight"]],
        ["layer_1_no_decay", 1, 0.0, 1e-3 * 0.75, ["blocks.0.attn.bias"]],
        ["layer_2_decay", 2, 0.05, 1e-3, ["head.weight"]],
    ]
    return {
        "key": key, "created": True, "seconds": 0.1,
        "default": {"ids": dict(ids), "num_layers": 3, "notes": []},
        "groups": groups,
        "stage": {"ids": dict(ids)},
        "structural": {"ids": dict(ids)},
    }


def dumps(tmp_path: Path, a: list[dict], b: list[dict]) -> tuple[Path, Path]:
    paths = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, records in zip(paths, (a, b)):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


def compare(tmp_path: Path, a: list[dict], b: list[dict], capsys) -> tuple[int, str]:
    status = cc.main(["compare", *map(str, dumps(tmp_path, a, b))])
    return status, capsys.readouterr().out


def test_identical_dumps(tmp_path, capsys):
    status, out = compare(tmp_path, [record("m1"), record("m2")], [record("m1"), record("m2")], capsys)
    assert status == 0
    assert "compared 2; identical in every field: 2; differing: 0" in out


def test_changed_id(tmp_path, capsys):
    changed = record()
    changed["default"]["ids"]["blocks.0.attn.bias"] = 2
    status, out = compare(tmp_path, [record()], [changed], capsys)
    assert status == 1
    assert "default.ids [ids]: 1 ids differ (name, A, B), e.g. [('blocks.0.attn.bias', 1, 2)]" in out
    assert "differing: 1" in out


def test_key_order_only(tmp_path, capsys):
    reordered = record()
    reordered["structural"]["ids"] = dict(reversed(reordered["structural"]["ids"].items()))
    comparison = cc.compare_records({"vit_tiny": record()}, {"vit_tiny": reordered})
    assert [d.kind for d in comparison.differences["vit_tiny"]] == ["order"]
    assert not comparison.same
    status, out = compare(tmp_path, [record()], [reordered], capsys)
    assert status == 1
    assert "structural.ids [order]: same name->id pairs, different key order: first at position 0" in out
    assert "only difference is key order: 1" in out


def test_floats_one_ulp_apart(tmp_path, capsys):
    nudged = record()
    lr = nudged["groups"][1][3]
    nudged["groups"][1][3] = math.nextafter(lr, 1.0)
    status, out = compare(tmp_path, [record()], [nudged], capsys)
    assert status == 1
    assert "groups [ulp-only]: 1 float(s) differ by <= 1 ulp" in out
    assert "only difference is floats within 1 ulp: 1" in out
    nudged["groups"][1][3] = lr * 1.01  # more than an ulp: a plain difference
    assert [d.kind for d in cc.compare_records({"m": record()}, {"m": nudged}).differences["m"]] == ["value"]


def test_group_contents(tmp_path, capsys):
    moved = record()
    moved["groups"][1][4].append("blocks.0.attn.bias")
    del moved["groups"][2]
    status, out = compare(tmp_path, [record()], [moved], capsys)
    assert status == 1
    assert "groups [count]: A=4 B=3 groups" in out
    assert "groups[1].param_names [value]: group 'layer_1_decay'/'layer_1_decay': only A [] (0), only B ['blocks.0.attn.bias'] (1)" in out


def test_errors(tmp_path, capsys):
    a, b = record(), record()
    a["groups"] = {"error": ["ValueError", "bad module at 0x7f00aa"]}
    b["groups"] = {"error": ["ValueError", "bad module at 0x7f11bb"]}
    assert cc.compare_records({"m": a}, {"m": b}).same  # addresses differ from run to run
    status, out = compare(tmp_path, [record()], [b], capsys)  # a result against an error
    assert status == 1
    assert "groups [error]: A=ok B=['ValueError', 'bad module at 0x7f11bb']" in out


def test_models_on_one_side_only(tmp_path, capsys):
    status, out = compare(tmp_path, [record("m1"), record("m2")], [record("m1")], capsys)
    assert status == 1
    assert "only in A: 1 ['m2']; only in B: 0 []" in out


def test_build_fields(tmp_path, capsys):
    fatal = {"key": "vit_tiny", "created": None, "fatal": "timeout after 300s"}
    status, out = compare(tmp_path, [record()], [fatal], capsys)
    assert status == 1
    assert "fatal [value]: A=None B=timeout after 300s" in out
    assert "default [missing]: A=True B=False" in out
    assert "status (B): {'fatal (timeout or crash)': 1}" in out


# A worker in the protocol of the dump: it names each model in the .current file, appends its
# record, and hangs on model "b" unless "b" is already in the output (the supervisor wrote it).
FAKE_WORKER = """
import json, sys, time
from pathlib import Path
out = Path(sys.argv[1]); current = out.with_name(out.name + ".current")
done = {json.loads(line)["key"] for line in out.read_text().splitlines()} if out.exists() else set()
with out.open("a") as sink:
    for key in "abc":
        if key in done:
            continue
        current.write_text(key)
        if key == "b":
            sink.write('{"key": "b", "creat')  # killed mid-line
            sink.flush()
            time.sleep(60)
        sink.write(json.dumps({"key": key, "created": True}) + "\\n")
        sink.flush()
current.write_text("")
"""


def test_supervisor_records_a_stuck_model_and_goes_on(tmp_path):
    out = tmp_path / "dump.jsonl"
    command = [sys.executable, "-c", FAKE_WORKER, str(out)]
    cc.supervise(command, out, timeout=0.5, cwd=tmp_path, env={}, poll=0.1)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [
        {"key": "a", "created": True},
        {"key": "b", "created": None, "fatal": "timeout after 0.5s"},
        {"key": "c", "created": True},
    ]
    assert not cc.current_path(out).exists()


def test_supervisor_stops_when_the_worker_cannot_start(tmp_path):
    with pytest.raises(cc.DumpError, match="before starting a model"):
        cc.supervise([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "d.jsonl", 5, tmp_path, {}, poll=0.1)


def test_transformers_construction_comes_from_the_sweep_script():
    saved = list(sys.path)
    sweep = cc.load_transformers_sweep()
    assert sys.path == saved  # the sweep script's own sys.path entry is undone
    record = cc.dump_one("transformers", "bert/BertModel", sweep)
    assert record["created"] and record["shrunk"]
    assert record["default"]["num_layers"] == 6  # 4 layers (shrunk), embeddings, pooler
    names = [name for group in record["groups"] for name in group[4]]
    assert sorted(names) == sorted(record["default"]["ids"])


def git_head() -> str | None:
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.skipif(git_head() is None, reason="needs a git checkout")
def test_a_commit_against_itself(tmp_path):
    """Worktree, supervised dump, reuse of the complete dump, report, clean-up; then a dump
    of the checkout resumes that file."""
    command = [sys.executable, str(SCRIPT), "HEAD", "HEAD", "--zoo", "timm", "--limit", "2",
               "--workdir", str(tmp_path), "--nice", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    head = git_head()
    assert f"{head[:12]} timm: 2 records" in result.stdout
    assert f"{head[:12]} timm: reusing" in result.stdout
    assert "compared 2; identical in every field: 2" in result.stdout and "IDENTICAL" in result.stdout
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in worktrees and not list((tmp_path / "worktrees").iterdir())

    (dump,) = (tmp_path / "dumps").glob("*.jsonl")
    assert json.loads(cc.marker_path(dump).read_text())["records"] == 2
    first_two = dump.read_text()
    records = [json.loads(line) for line in first_two.splitlines()]
    assert all(r["created"] and r["groups"] and "error" not in r["default"] for r in records)

    resumed = subprocess.run(
        [sys.executable, str(SCRIPT), "dump", "--checkout", str(ROOT), "--zoo", "timm", "--limit", "3",
         "--out", str(dump), "--nice", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    text = dump.read_text()
    assert text.startswith(first_two) and len(text.splitlines()) == 3
    assert f"hf_timm_layerdecay from {ROOT.resolve()}" in resumed.stderr
