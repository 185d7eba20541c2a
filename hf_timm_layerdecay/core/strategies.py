"""Turn a user's naming rule into a :class:`LayerMap`.

Two shapes of rule are supported, both purely name based:

* a callable ``rule(name) -> int``, like the BEiT and ConvNeXt functions of the original
  recipes (see :mod:`hf_timm_layerdecay.rules`);
* a mapping of regular expressions to ids, tried in order with :func:`re.match` (anchored at
  the start of the name, as timm's ``group_matcher`` does). If the expression has a capture
  group, the id is the mapped value plus the captured integer, so ``{r"blocks\\.(\\d+)\\.": 1}``
  numbers ``blocks.0`` as 1, ``blocks.1`` as 2, ... The value ``"last"`` means "one past the
  largest id any other expression produced", which is where a head goes.
"""

from __future__ import annotations

import re
import warnings
from typing import Callable, Iterable, Mapping, Union

from .layer_map import LayerIdError, LayerMap, check_layer_id
from .scales import LayerDecayWarning

#: Value of a pattern mapping meaning "the id after every other id" (the head).
LAST = "last"

NameRule = Callable[[str], int]
PatternRule = Mapping[str, Union[int, str]]


def layer_map_from_rule(names: Iterable[str], rule: NameRule) -> LayerMap:
    """Apply ``rule`` to every name; errors name the parameter that failed."""
    ids = {}
    for name in names:
        try:
            layer_id = rule(name)
        except LayerIdError:
            raise
        except Exception as exc:  # the user's rule failed: say on which name, keep the cause
            raise LayerIdError(f"layer rule {_describe(rule)} failed on parameter {name!r}: {exc}") from exc
        ids[name] = check_layer_id(name, layer_id)
    return LayerMap.from_ids(ids)


def layer_map_from_patterns(names: Iterable[str], patterns: PatternRule) -> LayerMap:
    """Apply a ``{regex: id}`` mapping; every name must match one expression."""
    compiled = [(_compile(pattern), _check_pattern_value(pattern, value)) for pattern, value in patterns.items()]
    ids: dict[str, int] = {}
    heads: list[str] = []
    unmatched: list[str] = []
    used: set[int] = set()
    for name in names:
        for index, (regex, value) in enumerate(compiled):
            match = regex.match(name)
            if match is None:
                continue
            used.add(index)
            if value == LAST:
                heads.append(name)
            else:
                ids[name] = check_layer_id(name, value + _captured_number(regex, match, name))
            break
        else:
            unmatched.append(name)
    if unmatched:
        shown = ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
        raise LayerIdError(
            f"{len(unmatched)} parameter(s) match none of the layer patterns {list(patterns)}: {shown}. "
            f"Add a pattern for them, e.g. {{r'.*': 'last'}} as the final entry to send the rest to the head."
        )
    # an unused catch-all for the head is harmless: the patterns before it numbered everything
    unused = [p for i, (p, (_, value)) in enumerate(zip(patterns, compiled)) if i not in used and value != LAST]
    if unused:
        warnings.warn(
            f"layer patterns that match no parameter: {unused}. Patterns are tried with re.match, which anchors at "
            "the start of the name: r'fc' does not match 'blocks.0.fc.weight' (write r'.*fc' or r'blocks\\.\\d+\\.fc'), "
            "and a pattern after a broader one never gets its turn",
            LayerDecayWarning,
            stacklevel=2,
        )
    head_id = max(ids.values(), default=-1) + 1
    ids.update({name: head_id for name in heads})
    return LayerMap.from_ids(ids)


def _compile(pattern: object) -> re.Pattern:
    if not isinstance(pattern, str):
        raise LayerIdError(f"layer pattern {pattern!r} must be a string (a regular expression), got {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise LayerIdError(f"layer pattern {pattern!r} is not a valid regular expression: {exc}") from None


def _captured_number(regex: re.Pattern, match: re.Match, name: str) -> int:
    captured = match.group(1) if regex.groups else None
    if captured is None:
        return 0
    if not captured.isdigit():
        raise LayerIdError(
            f"layer pattern {regex.pattern!r} captured {captured!r} from parameter {name!r}; "
            "its first group must capture a block number such as (\\d+)"
        )
    return int(captured)


def _check_pattern_value(pattern: str, value: object) -> Union[int, str]:
    if value == LAST:
        return LAST
    return check_layer_id(f"<pattern {pattern!r}>", value)


def _describe(rule: Callable) -> str:
    return getattr(rule, "__qualname__", None) or repr(rule)
