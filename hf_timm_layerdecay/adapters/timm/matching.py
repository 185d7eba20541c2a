"""timm's grouping of parameter names by a model's ``group_matcher()``, in one match per name.

timm's helper (``timm.models._manipulate.group_with_matcher``) tries the matcher's regular
expressions one after the other on every name, each try a Python-level step. Here they are
joined into one alternation, ``(?P<_m0>p0)|(?P<_m1>p1)|...``: matched at the start of a name, it
takes the first ``p_k`` that matches, exactly as trying them in turn does, and the wrapping group
that closed says which one it was. Everything after the match (the ordering key, its ranking)
follows timm's code step by step, so the ids are timm's: ``tests/adapters/timm/test_timm_matching.py``
checks a model of every timm family against timm's helper, ``scripts/timm_zoo_sweep.py`` the
whole zoo.

Matchers that cannot be joined (a callable, a pattern with back-references or flags, a group
name that clashes) go through timm's helper itself.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from itertools import chain
from typing import Any, Iterable, Optional

#: A pattern that refers to its own groups by number or by name (``\1``, ``(?P=name)``,
#: ``(?(1)...)``) would refer to other groups once joined; timm's helper handles those.
_SELF_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
#: Flags of a pattern compiled from a plain string, which the joined pattern gets as well.
_PLAIN_FLAGS = re.compile("").flags
#: timm's marker for a group that continues the previous one (``MATCH_PREV_GROUP``).
_CONTINUES_PREVIOUS = 99999


def group_ids(names: Iterable[str], group_matcher: Any) -> dict[str, int]:
    """``name -> group id`` for ``names``, equal to timm's
    ``group_with_matcher(((n, n) for n in names), group_matcher, reverse=True)``.

    Example:
        >>> group_ids(["stem.w", "blocks.1.w", "blocks.0.w", "head.w"], {"stem": r"^stem", "blocks": r"^blocks\\.(\\d+)"})
        {'stem.w': 0, 'blocks.0.w': 1, 'blocks.1.w': 2, 'head.w': 3}
    """
    names = list(names)
    specs = _compiled(group_matcher) if isinstance(group_matcher, dict) else None
    joined = _joined(specs) if specs else None
    if joined is None:
        from timm.models._manipulate import group_with_matcher

        return group_with_matcher(((n, n) for n in names), group_matcher, reverse=True)
    pattern, group_spans = joined
    keys: dict[tuple, tuple] = {}  # (which pattern, its groups) -> timm's ordering key
    grouping: dict[tuple, list[str]] = defaultdict(list)
    for name in names:
        found = pattern.match(name)
        if found is None:
            key = (math.inf,)  # timm: unmatched names go last
        else:
            which = int(found.lastgroup[2:])
            start, end = group_spans[which]
            groups = found.groups()[start:end]
            key = keys.get((which, groups))
            if key is None:
                _, prefix, suffix = specs[which]
                # timm's key, built as timm builds it (None parts dropped, numbers as floats)
                key = keys[which, groups] = tuple(map(float, chain.from_iterable(filter(None, (prefix, groups, suffix)))))
        grouping[key].append(name)
    ids: dict[str, int] = {}
    group_id = -1
    for key in sorted(grouping):
        if group_id < 0 or key[-1] != _CONTINUES_PREVIOUS:
            group_id += 1
        for name in grouping[key]:
            ids[name] = group_id
    return ids


def _compiled(group_matcher: dict) -> list[tuple[re.Pattern, tuple[int], Any]]:
    """``(pattern, (ordinal,), suffix)`` per matcher entry, as timm compiles them."""
    specs = []
    for ordinal, spec in enumerate(group_matcher.values()):
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            specs += [(re.compile(entry[0]), (ordinal,), entry[1]) for entry in spec]
        else:
            specs.append((re.compile(spec), (ordinal,), None))
    return specs


def _joined(specs: list[tuple[re.Pattern, tuple[int], Any]]) -> Optional[tuple[re.Pattern, list[tuple[int, int]]]]:
    """The alternation of every pattern and, per pattern, the slice of ``match.groups()``
    holding its own groups; ``None`` when the patterns cannot be joined."""
    parts, spans, position = [], [], 0
    for k, (pattern, _, _) in enumerate(specs):
        if not isinstance(pattern.pattern, str) or pattern.flags != _PLAIN_FLAGS:
            return None
        if _SELF_REFERENCE.search(pattern.pattern):
            return None
        parts.append(f"(?P<_m{k}>{pattern.pattern})")
        spans.append((position + 1, position + 1 + pattern.groups))  # after the wrapping group
        position += 1 + pattern.groups
    try:
        joined = re.compile("|".join(parts))
    except re.error:  # a group name used twice, a flag inside a pattern
        return None
    return joined, spans

