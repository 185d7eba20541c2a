"""Does commit NEW compute exactly what commit BASE computes, for every timm and transformers model?

Meant for performance refactors: both commits build every timm architecture
(``timm.list_models()``, ``pretrained=False``) and every model class of transformers' auto
mappings (default config, layer counts shrunk to 4, built by ``scripts/transformers_zoo_sweep.py``),
all on the meta device, and record per model, one JSON line each:

    default     resolve_layer_map(model): ids (name -> id, in order), num_layers, notes
    groups      auto_layer_decay(model, lr=1e-3): [name, layer_id, weight_decay, lr, param_names] per group
    stage       resolve_layer_map(model, AutoStrategy(granularity="stage")).ids
    structural  resolve_layer_map(model, "structural").ids

and an exception raised by a call (or by building the model) as ``[type, message]``. The report
lists every model where some field differs. Dict key order counts: a difference in order alone is
marked ``[order]``; lr / weight_decay that differ by at most 1 ulp are marked ``[ulp-only]``; both
still count as differences. Exit status: 0 when everything is identical, 1 when anything differs,
2 when a dump could not be made.

Usage (from a checkout of the repository; BASE and NEW are anything ``git rev-parse`` takes):

    python scripts/compare_commits.py BASE NEW                        # both zoos: ~20 min a side on 2 cores
    python scripts/compare_commits.py HEAD~1 HEAD --zoo timm --limit 50  # a quick look: the first 50 models
    python scripts/compare_commits.py dump --checkout . --zoo timm --out /tmp/wip_timm.jsonl  # uncommitted work
    python scripts/compare_commits.py compare /tmp/base_timm.jsonl /tmp/wip_timm.jsonl

How it runs: each commit is checked out as a detached git worktree under ``--workdir`` (default
``$TMPDIR/hf_timm_layerdecay-compare``) and dumped there with the worktree first on PYTHONPATH; the
dump aborts unless ``hf_timm_layerdecay`` was imported from that worktree. The two sides run one
after the other, never in parallel, at ``nice 19``, offline (``HF_HUB_OFFLINE=1``). A dump is kept
under the workdir, named by commit, zoo, ``--limit`` and an environment fingerprint (Python, torch,
timm and transformers versions, this script's record format, the construction code), and reused
when complete: comparing several NEW commits against one BASE dumps BASE once. An interrupted dump
resumes where it stopped. The worktrees are removed when the dumps are made.

Each dump is supervised: a worker subprocess walks the models and appends one flushed line per
model; when it spends more than ``--timeout`` seconds on one model, or dies, the supervisor kills it,
records ``{"fatal": reason}`` for that model and starts a new worker for the rest.

Only the invoking checkout's copy of this script and of ``transformers_zoo_sweep.py`` is used,
so both sides build their models with the same code, whatever the commits contain.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

SCRIPTS = Path(__file__).resolve().parent
TRANSFORMERS_SWEEP = SCRIPTS / "transformers_zoo_sweep.py"
ZOOS = ("timm", "transformers")
#: Bumped when the fields of a record change, so that older dumps are not reused.
RECORD_FORMAT = 1
#: Layer counts of transformers configs are shrunk to this (as in the zoo sweep).
TRANSFORMERS_LAYERS = 4
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
#: A worker that keeps dying is a broken dump, not a few bad models.
MAX_RESTARTS = 200
CALLS = ("default", "groups", "stage", "structural")
#: Fields that describe how the model was built (or why not); compared before the calls.
BUILD_FIELDS = ("created", "create_error", "fatal", "shrunk")
#: Memory addresses in error messages differ from run to run.
HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


class DumpError(RuntimeError):
    """A dump could not be made (the worker cannot start, or restarted too often)."""


# ------------------------------------------------------------------------------------ records
def one_line(text: object, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


def error_record(exc: BaseException) -> dict:
    return {"error": [type(exc).__name__, str(exc)[:2000]]}


def record_calls(model: Any) -> dict:
    """The four calls compared, each its result or ``{"error": [type, message]}``."""
    import hf_timm_layerdecay as library

    resolve_layer_map = getattr(library, "resolve_layer_map", None)
    if resolve_layer_map is None:  # not exported at the package's top level in every commit
        from hf_timm_layerdecay.api import resolve_layer_map
    out: dict = {}
    try:
        layer_map = resolve_layer_map(model)
        out["default"] = {"ids": dict(layer_map.ids), "num_layers": layer_map.num_layers, "notes": list(layer_map.notes)}
    except Exception as exc:  # noqa: BLE001 - recorded, and compared like a result
        out["default"] = error_record(exc)
    try:
        groups = library.auto_layer_decay(model, lr=1e-3)
        out["groups"] = [
            [g.get("name"), g.get("layer_id"), g.get("weight_decay"), g.get("lr"), list(g.get("param_names", []))]
            for g in groups
        ]
    except Exception as exc:  # noqa: BLE001
        out["groups"] = error_record(exc)
    try:
        out["stage"] = {"ids": dict(resolve_layer_map(model, library.AutoStrategy(granularity="stage")).ids)}
    except Exception as exc:  # noqa: BLE001
        out["stage"] = error_record(exc)
    try:
        out["structural"] = {"ids": dict(resolve_layer_map(model, "structural").ids)}
    except Exception as exc:  # noqa: BLE001
        out["structural"] = error_record(exc)
    return out


# ------------------------------------------------------------------------------------ the zoos
def load_transformers_sweep() -> ModuleType:
    """``scripts/transformers_zoo_sweep.py`` (its model construction), loaded from its file.

    That module puts its own repository first on sys.path when it loads; undone here, so that
    ``hf_timm_layerdecay`` keeps coming from the worktree under test."""
    spec = importlib.util.spec_from_file_location("transformers_zoo_sweep", TRANSFORMERS_SWEEP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved_path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
    return module


def list_keys(zoo: str, sweep: ModuleType | None) -> list[str]:
    """Every model of a zoo: timm names, or ``"<model_type>/<ClassName>"``."""
    if zoo == "timm":
        import timm

        return list(timm.list_models())
    assert sweep is not None
    return [f"{model_type}/{name}" for model_type, by_class in sweep.mapping_classes().items() for name in by_class]


def build_model(zoo: str, key: str, sweep: ModuleType | None) -> tuple[Any, dict]:
    """The model on the meta device, and the record fields that say how it was built."""
    import torch

    if zoo == "timm":
        import timm

        with torch.device("meta"):
            return timm.create_model(key, pretrained=False), {}
    assert sweep is not None
    model_type, class_name = key.split("/", 1)
    model, shrunk = sweep.build(model_type, class_name, TRANSFORMERS_LAYERS)
    return model, {"shrunk": shrunk}


def dump_one(zoo: str, key: str, sweep: ModuleType | None) -> dict:
    """The record of one model. The models and the library print and warn; none of it is kept."""
    record: dict = {"key": key}
    start = time.time()
    model = None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            model, how = build_model(zoo, key, sweep)
            record.update(created=True, **how)
        except Exception as exc:  # noqa: BLE001 - a model that does not build is a record, not a failure
            record.update(created=False, create_error=[type(exc).__name__, one_line(exc, 300)])
        if model is not None:
            record.update(record_calls(model))
    record["seconds"] = round(time.time() - start, 2)
    return record


# ------------------------------------------------------------------------------------ dump files
def current_path(out: Path) -> Path:
    """The file where the worker names the model it is on (empty when it finished)."""
    return out.with_name(out.name + ".current")


def done_keys(out: Path) -> set[str]:
    keys: set[str] = set()
    if out.exists():
        for line in out.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a line cut by a killed worker
                keys.add(json.loads(line)["key"])
    return keys


def drop_partial_line(out: Path) -> None:
    """Cut a last line that a killed worker left unfinished, so that appending starts clean."""
    if out.exists():
        data = out.read_bytes()
        if data and not data.endswith(b"\n"):
            out.write_bytes(data[: data.rfind(b"\n") + 1])


def load_records(path: Path) -> dict[str, dict]:
    records = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["key"]] = record
    return records


# ------------------------------------------------------------------------------------ worker
def quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    with contextlib.suppress(Exception):
        import transformers

        transformers.logging.set_verbosity_error()


def check_imported_from(checkout: Path) -> None:
    """Abort unless ``hf_timm_layerdecay`` comes from ``checkout`` (an editable install of
    another checkout would otherwise be compared with itself)."""
    import hf_timm_layerdecay

    source = os.path.realpath(hf_timm_layerdecay.__file__)
    print(f"hf_timm_layerdecay from {source}", file=sys.stderr, flush=True)
    if not source.startswith(os.path.realpath(checkout) + os.sep):
        sys.exit(f"hf_timm_layerdecay imported from {source}, not from {checkout}")


def run_worker(checkout: Path, zoo: str, out: Path, limit: int | None, nice: int) -> None:
    """Append the record of every model not yet in ``out``, naming each in the ``.current`` file first."""
    os.nice(nice)
    quiet()
    import torch

    torch.set_num_threads(1)
    check_imported_from(checkout)
    sweep = load_transformers_sweep() if zoo == "transformers" else None
    keys = list_keys(zoo, sweep)[:limit]
    done = done_keys(out)
    todo = [k for k in keys if k not in done]
    current = current_path(out)
    with out.open("a") as sink:
        for n, key in enumerate(todo, 1):
            current.write_text(key)
            sink.write(json.dumps(dump_one(zoo, key, sweep)) + "\n")
            sink.flush()
            gc.collect()
            if n % 100 == 0:
                print(f"{zoo}: {len(done) + n}/{len(keys)}", file=sys.stderr, flush=True)
    current.write_text("")


# ------------------------------------------------------------------------------------ supervisor
def worker_command(checkout: Path, zoo: str, out: Path, limit: int | None, nice: int) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "dump", "--worker", "--checkout", str(checkout),
               "--zoo", zoo, "--out", str(out), "--nice", str(nice)]
    return command + (["--limit", str(limit)] if limit else [])


def worker_env(checkout: Path) -> dict[str, str]:
    env = dict(os.environ, **OFFLINE_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), os.environ.get("PYTHONPATH")) if p)
    return env


def read_current(out: Path) -> str | None:
    try:
        return current_path(out).read_text()
    except OSError:
        return None


def watch(process: subprocess.Popen, out: Path, timeout: float, poll: float) -> bool:
    """Wait for the worker; kill it when it stays on one model longer than ``timeout`` seconds.
    True when it was killed."""
    key, since = None, time.monotonic()
    while True:
        try:
            process.wait(timeout=poll)
            return False
        except subprocess.TimeoutExpired:
            pass
        now_on = read_current(out)
        if now_on != key:
            key, since = now_on, time.monotonic()
        elif key and time.monotonic() - since > timeout:
            process.kill()
            process.wait()
            return True


def supervise(command: list[str], out: Path, timeout: float, cwd: Path, env: dict[str, str],
              poll: float = 2.0) -> None:
    """Run the worker ``command`` until it finishes; after each timeout or crash, record the model
    it was on as fatal and start a new worker, which skips the models already in ``out``."""
    for _ in range(MAX_RESTARTS + 1):
        drop_partial_line(out)
        current_path(out).unlink(missing_ok=True)
        process = subprocess.Popen(command, cwd=cwd, env=env)
        try:
            killed = watch(process, out, timeout, poll)
        finally:  # interrupted: leave no worker behind
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode == 0 and not killed:
            current_path(out).unlink(missing_ok=True)
            return
        key = read_current(out)
        if not key:
            raise DumpError(f"worker failed (exit status {process.returncode}) before starting a model")
        drop_partial_line(out)
        if key not in done_keys(out):
            reason = f"timeout after {timeout:g}s" if killed else f"worker died, exit status {process.returncode}"
            with out.open("a") as sink:
                sink.write(json.dumps({"key": key, "created": None, "fatal": reason}) + "\n")
            print(f"{key}: {reason}", file=sys.stderr, flush=True)
    raise DumpError(f"worker restarted more than {MAX_RESTARTS} times")


def dump_checkout(checkout: Path, zoo: str, out: Path, limit: int | None, timeout: float, nice: int) -> int:
    """Dump one zoo of ``checkout`` into ``out`` (resuming it); the number of records."""
    checkout = checkout.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    command = worker_command(checkout, zoo, out.resolve(), limit, nice)
    supervise(command, out.resolve(), timeout, cwd=checkout, env=worker_env(checkout))
    return len(done_keys(out))


# ------------------------------------------------------------------------------------ commits
def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise DumpError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve_commit(repo: Path, revision: str) -> str:
    return git(repo, "rev-parse", "--verify", f"{revision}^{{commit}}")


def environment() -> dict[str, str]:
    """What a dump depends on besides the commit."""
    versions = {name: metadata.version(name) for name in ("torch", "timm", "transformers")}
    construction = hashlib.sha256(TRANSFORMERS_SWEEP.read_bytes()).hexdigest()[:12]
    return dict(python=platform.python_version(), **versions, record_format=str(RECORD_FORMAT),
                transformers_zoo_sweep=construction)


def fingerprint(env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:10]


def dump_file(workdir: Path, commit: str, zoo: str, limit: int | None, env: dict[str, str]) -> Path:
    suffix = f"-first{limit}" if limit else ""
    return workdir / "dumps" / f"{commit[:12]}-{zoo}-{fingerprint(env)}{suffix}.jsonl"


def marker_path(out: Path) -> Path:
    """Written when a dump is complete; a dump without it is resumed."""
    return out.with_name(out.name + ".done")


@contextlib.contextmanager
def worktree(repo: Path, commit: str, workdir: Path) -> Iterator[Path]:
    """A detached worktree of ``commit``, removed afterwards (also after an interruption)."""
    path = workdir / "worktrees" / commit[:12]
    git(repo, "worktree", "prune")  # forget worktrees whose folders are gone
    if path.exists():  # left by an interrupted run
        git(repo, "worktree", "remove", "--force", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--detach", str(path), commit)
    try:
        yield path
    finally:
        git(repo, "worktree", "remove", "--force", str(path))


def dump_commit(repo: Path, commit: str, zoos: list[str], workdir: Path, limit: int | None, timeout: float,
                nice: int, env: dict[str, str]) -> dict[str, Path]:
    """The complete dump of each zoo for ``commit``: reused, or made in a worktree."""
    outs = {zoo: dump_file(workdir, commit, zoo, limit, env) for zoo in zoos}
    missing = [zoo for zoo, out in outs.items() if not marker_path(out).exists()]
    for zoo in zoos:
        if zoo not in missing:
            print(f"{commit[:12]} {zoo}: reusing {outs[zoo]}", flush=True)
    if missing:
        with worktree(repo, commit, workdir) as checkout:
            for zoo in missing:
                out = outs[zoo]
                resumed = len(done_keys(out))
                print(f"{commit[:12]} {zoo}: dumping into {out}" + (f" (resuming after {resumed})" if resumed else ""),
                      flush=True)
                start = time.monotonic()
                records = dump_checkout(checkout, zoo, out, limit, timeout, nice)
                seconds = round(time.monotonic() - start, 1)
                print(f"{commit[:12]} {zoo}: {records} records in {seconds} s", flush=True)
                marker = dict(commit=commit, zoo=zoo, limit=limit, records=records, seconds=seconds, environment=env)
                marker_path(out).write_text(json.dumps(marker, indent=1))
    return outs


# ------------------------------------------------------------------------------------ comparison
class Difference(NamedTuple):
    field: str  # "default.ids", "groups[3].lr", "created", ...
    kind: str  # value, ids, order, error, missing, count, ulp-only
    detail: str


@dataclasses.dataclass
class Comparison:
    """Two dumps of one zoo, model by model."""

    compared: int = 0
    identical: int = 0
    differences: dict[str, list[Difference]] = dataclasses.field(default_factory=dict)
    only_a: list[str] = dataclasses.field(default_factory=list)
    only_b: list[str] = dataclasses.field(default_factory=list)
    status_a: Counter = dataclasses.field(default_factory=Counter)
    status_b: Counter = dataclasses.field(default_factory=Counter)

    @property
    def same(self) -> bool:
        return not (self.differences or self.only_a or self.only_b)


def normalized_error(error: Any) -> Any:
    return [error[0], HEX_ADDRESS.sub("0x?", error[1])] if isinstance(error, list) else error


def error_of(result: Any) -> list | None:
    return result.get("error") if isinstance(result, dict) else None


def within_one_ulp(x: Any, y: Any) -> bool:
    return isinstance(x, float) and isinstance(y, float) and x != y and abs(x - y) <= math.ulp(max(abs(x), abs(y)))


def order_detail(a: dict, b: dict) -> str:
    keys_a, keys_b = list(a), list(b)
    i = next(i for i, (x, y) in enumerate(zip(keys_a, keys_b)) if x != y)
    return (f"same name->id pairs, different key order: first at position {i} of {len(keys_a)}: "
            f"A {keys_a[i:i + 3]} B {keys_b[i:i + 3]}")


def compare_ids(field_name: str, a: dict, b: dict) -> list[Difference]:
    if a == b:
        return [] if list(a) == list(b) else [Difference(field_name, "order", order_detail(a, b))]
    only_a = [k for k in a if k not in b]
    only_b = [k for k in b if k not in a]
    changed = [(k, a[k], b[k]) for k in a if k in b and a[k] != b[k]]
    out = []
    if only_a:
        out.append(Difference(field_name, "ids", f"{len(only_a)} names only in A, e.g. {only_a[:3]}"))
    if only_b:
        out.append(Difference(field_name, "ids", f"{len(only_b)} names only in B, e.g. {only_b[:3]}"))
    if changed:
        out.append(Difference(field_name, "ids", f"{len(changed)} ids differ (name, A, B), e.g. {changed[:4]}"))
    return out


GROUP_FIELDS = ("name", "layer_id", "weight_decay", "lr", "param_names")


def compare_groups(a: list, b: list) -> list[Difference]:
    out = []
    if len(a) != len(b):
        out.append(Difference("groups", "count", f"A={len(a)} B={len(b)} groups; A names {[g[0] for g in a][:8]} "
                                                 f"B names {[g[0] for g in b][:8]}"))
    ulp = []
    for i, (group_a, group_b) in enumerate(zip(a, b)):
        for what, x, y in zip(GROUP_FIELDS, group_a, group_b):
            if x == y:
                continue
            if what in ("lr", "weight_decay") and within_one_ulp(x, y):
                ulp.append((i, what, x, y))
            elif what == "param_names":
                only_a, only_b = set(x) - set(y), set(y) - set(x)
                detail = ("same names, different order" if not (only_a or only_b)
                          else f"only A {sorted(only_a)[:3]} ({len(only_a)}), only B {sorted(only_b)[:3]} ({len(only_b)})")
                out.append(Difference(f"groups[{i}].{what}", "value", f"group {group_a[0]!r}/{group_b[0]!r}: {detail}"))
            else:
                out.append(Difference(f"groups[{i}].{what}", "value", f"group {group_a[0]!r}/{group_b[0]!r}: A={x!r} B={y!r}"))
    if ulp:
        out.append(Difference("groups", "ulp-only", f"{len(ulp)} float(s) differ by <= 1 ulp, e.g. {ulp[:3]}"))
    return out


def compare_call(name: str, a: Any, b: Any) -> list[Difference]:
    """Differences between two records of one call (a result, an error, or absent)."""
    if a is None or b is None:
        return [] if a is b else [Difference(name, "missing", f"A={a is not None} B={b is not None}")]
    error_a, error_b = error_of(a), error_of(b)
    if error_a or error_b:
        if normalized_error(error_a) == normalized_error(error_b):
            return []
        return [Difference(name, "error", f"A={error_a or 'ok'} B={error_b or 'ok'}")]
    if name == "groups":
        return [] if a == b else compare_groups(a, b)
    out = []
    for sub in sorted(set(a) | set(b)):
        x, y = a.get(sub), b.get(sub)
        if sub == "ids" and isinstance(x, dict) and isinstance(y, dict):
            out += compare_ids(f"{name}.ids", x, y)
        elif x != y:
            out.append(Difference(f"{name}.{sub}", "value", f"A={str(x)[:300]} B={str(y)[:300]}"))
    return out


def compare_record(a: dict, b: dict) -> list[Difference]:
    out = []
    for name in BUILD_FIELDS:
        x, y = a.get(name), b.get(name)
        if name == "create_error":
            x, y = normalized_error(x), normalized_error(y)
        if x != y:
            out.append(Difference(name, "value", f"A={x} B={y}"))
    for name in CALLS:
        out += compare_call(name, a.get(name), b.get(name))
    return out


def status(record: dict) -> str:
    if record.get("fatal"):
        return "fatal (timeout or crash)"
    if not record.get("created"):
        return "not created"
    raised = any(error_of(record.get(name)) for name in CALLS)
    return "created, some call raised" if raised else "created, all calls ok"


def compare_records(a: dict[str, dict], b: dict[str, dict]) -> Comparison:
    comparison = Comparison(only_a=[k for k in a if k not in b], only_b=[k for k in b if k not in a])
    for key, record_a in a.items():
        if key not in b:
            continue
        comparison.compared += 1
        comparison.status_a[status(record_a)] += 1
        comparison.status_b[status(b[key])] += 1
        differences = compare_record(record_a, b[key])
        if differences:
            comparison.differences[key] = differences
        else:
            comparison.identical += 1
    return comparison


def field_family(name: str) -> str:
    """``groups[3].lr`` -> ``groups.lr``: differences counted per kind of field."""
    return re.sub(r"\[\d+\]", "", name)


def report(comparison: Comparison, title: str, per_model: int = 12) -> list[str]:
    """The report's lines for one zoo."""
    c = comparison
    lines = [
        f"== {title}: compared {c.compared}; identical in every field: {c.identical}; differing: {len(c.differences)}",
        f"   status (A): {dict(c.status_a)}",
    ]
    if c.status_b != c.status_a:
        lines.append(f"   status (B): {dict(c.status_b)}")
    if c.only_a or c.only_b:
        lines.append(f"   only in A: {len(c.only_a)} {c.only_a[:5]}; only in B: {len(c.only_b)} {c.only_b[:5]}")
    ulp_only = [k for k, ds in c.differences.items() if all(d.kind == "ulp-only" for d in ds)]
    if ulp_only:
        lines.append(f"   models whose only difference is floats within 1 ulp: {len(ulp_only)}: {ulp_only[:20]}")
    order_only = [k for k, ds in c.differences.items() if all(d.kind == "order" for d in ds)]
    if order_only:
        lines.append(f"   models whose only difference is key order: {len(order_only)}: {order_only[:20]}")
    by_field = Counter(field_family(d.field) for ds in c.differences.values() for d in ds)
    if by_field:
        lines.append(f"   differing fields (models x field): {dict(by_field)}")
    for key, differences in c.differences.items():
        lines.append(f"-- {key}")
        lines += [f"     {d.field} [{d.kind}]: {d.detail[:600]}" for d in differences[:per_model]]
        if len(differences) > per_model:
            lines.append(f"     ... {len(differences) - per_model} more")
    return lines


def compare_files(a: Path, b: Path, title: str) -> bool:
    """Print the report of two dump files; True when they are the same."""
    comparison = compare_records(load_records(a), load_records(b))
    print("\n".join(report(comparison, title)), flush=True)
    return comparison.same


# ------------------------------------------------------------------------------------ command line
def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_dump_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=positive_int, help="only the first N models of each zoo (a quick look)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one model may take (default 300)")
    parser.add_argument("--nice", type=int, default=19, help="niceness of the dump workers (default 19)")


def commits_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare_commits.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base", help="the commit taken as the reference (A)")
    parser.add_argument("new", help="the commit checked against it (B)")
    parser.add_argument("--zoo", choices=(*ZOOS, "both"), default="both")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hf_timm_layerdecay-compare",
                        help="worktrees and dumps (kept for reuse; default: %(default)s)")
    parser.add_argument("--repo", type=Path, default=SCRIPTS.parent,
                        help="the git repository of the commits (default: the one holding this script)")
    add_dump_options(parser)
    return parser


def dump_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare_commits.py dump",
        description="Dump one zoo of a checkout as it is (uncommitted changes included), resuming --out.")
    parser.add_argument("--checkout", type=Path, required=True, help="the root of a checkout of the repository")
    parser.add_argument("--zoo", choices=ZOOS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file (appended to)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the supervised process
    add_dump_options(parser)
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compare_commits.py compare", description="Compare two dump files.")
    parser.add_argument("a", type=Path, help="the reference dump")
    parser.add_argument("b", type=Path, help="the dump checked against it")
    return parser


def compare_commits(args: argparse.Namespace) -> int:
    repo = args.repo.resolve()
    base, new = resolve_commit(repo, args.base), resolve_commit(repo, args.new)
    zoos = list(ZOOS) if args.zoo == "both" else [args.zoo]
    env = environment()
    print(f"A = {args.base} = {base}\nB = {args.new} = {new}\nenvironment: {env}", flush=True)
    # one side after the other: each dump keeps a core busy for many minutes
    dumps = [dump_commit(repo, commit, zoos, args.workdir.resolve(), args.limit, args.timeout, args.nice, env)
             for commit in (base, new)]
    same = [compare_files(dumps[0][zoo], dumps[1][zoo], f"{zoo}: A {base[:12]} vs B {new[:12]}") for zoo in zoos]
    print("IDENTICAL" if all(same) else "DIFFERENT", flush=True)
    return 0 if all(same) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["dump"]:
            args = dump_parser().parse_args(argv[1:])
            if args.worker:
                run_worker(args.checkout, args.zoo, args.out, args.limit, args.nice)
                return 0
            records = dump_checkout(args.checkout, args.zoo, args.out, args.limit, args.timeout, args.nice)
            print(f"{records} records in {args.out}")
            return 0
        if argv[:1] == ["compare"]:
            args = compare_parser().parse_args(argv[1:])
            return 0 if compare_files(args.a, args.b, f"A {args.a} vs B {args.b}") else 1
        return compare_commits(commits_parser().parse_args(argv))
    except DumpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    sys.exit(main())
