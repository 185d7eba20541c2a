"""The oldest supported versions, said once: .ci/oldest.txt pins them; this checks that the lower
bounds of pyproject.toml and the "oldest verified" column of README.md's version table are the
same versions, and, with --installed, that the running environment has exactly them.

    python3 .ci/check_bounds.py               # pyproject.toml and README.md agree with .ci/oldest.txt
    .venv-oldest/bin/python .ci/check_bounds.py --installed
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def release(version: str) -> tuple[int, ...]:
    """``"2.8"`` and ``"2.8.0"`` compare equal."""
    parts = [int(p) for p in re.match(r"\d+(?:\.\d+)*", version).group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[normalized(name)] = version.strip()
    return found


def declared_lower_bounds() -> dict[str, str]:
    """``name>=version`` of every requirement string in pyproject.toml (dependencies and extras;
    read by pattern, so that Python 3.10, without tomllib, runs this too)."""
    text = (ROOT / "pyproject.toml").read_text()
    pattern = r'"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)'
    return {normalized(name): version for name, version in re.findall(pattern, text)}


def readme_oldest() -> dict[str, str]:
    """Rows ``| package | oldest verified | newest verified | ...`` of README's version table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- versions-table -->", 1)[1] if "<!-- versions-table -->" in text else ""
    found = {}
    for line in table.splitlines():
        if not line.startswith("|"):
            if found:
                break
            continue
        cells = [c.strip(" `") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.match(r"\d", cells[1]):
            found[normalized(cells[0].split()[0])] = cells[1]  # "peft (extra ...)" -> peft
    return found


def main(argv: list[str]) -> int:
    oldest = pins()
    problems = []
    bounds, readme = declared_lower_bounds(), readme_oldest()
    for name, version in oldest.items():
        if name not in bounds:
            problems.append(f"pyproject.toml declares no lower bound (>=) for {name}; .ci/oldest.txt pins {version}")
        elif release(bounds[name]) != release(version):
            problems.append(f"pyproject.toml: {name}>={bounds[name]}, but .ci/oldest.txt verifies {version}")
        if release(readme.get(name, "0")) != release(version):
            problems.append(f"README.md's version table: {name} oldest {readme.get(name)!r}, .ci/oldest.txt: {version}")
    if "--installed" in argv:
        for name, version in oldest.items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} is not installed")
                continue
            if release(installed) != release(version):
                problems.append(f"{name} {installed} is installed, .ci/oldest.txt pins {version}")
    for problem in problems:
        print(f"check_bounds: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_bounds: {len(oldest)} lower bounds agree" + (" and are installed" if "--installed" in argv else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
