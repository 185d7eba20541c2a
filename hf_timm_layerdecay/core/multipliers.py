"""Per-parameter multipliers of the lr and the weight decay, on top of the layer scale.

``{pattern: multiplier}``, patterns matched as ``no_weight_decay`` entries are (names, module
names, globs; see :func:`~hf_timm_layerdecay.core.weight_decay.matches_entry`). Where several
patterns match one parameter the longest wins, as in mmengine's ``paramwise_cfg.custom_keys``:
the longer pattern is the one that names less, which is what a user adding ``blocks.11.mlp``
beside ``blocks`` means. Equal lengths are decided by alphabetical order, so that the result never
depends on the order of a dict.
"""

from __future__ import annotations

from typing import Mapping

from .weight_decay import matches_entry


class Multipliers:
    """The multiplier of each parameter, from ``{pattern: multiplier}``; 1.0 where nothing matches.

    Example:
        >>> lr_mult = Multipliers({"blocks": 0.5, "blocks.1.mlp": 2.0, "head": 10.0})
        >>> lr_mult.of("blocks.1.mlp.fc1.weight"), lr_mult.of("blocks.0.attn.qkv.weight"), lr_mult.of("norm.weight")
        (2.0, 0.5, 1.0)
        >>> lr_mult.unused
        ['head']
    """

    def __init__(self, entries: Mapping[str, float]) -> None:
        self.entries = dict(entries)
        self._ranked = sorted(self.entries.items(), key=lambda item: (-len(item[0]), item[0]))
        self._used: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def of(self, *names: str) -> float:
        """The multiplier of the parameter known by ``names`` (its reported and canonical names)."""
        matched = [(pattern, multiplier) for pattern, multiplier in self._ranked
                   if any(matches_entry(pattern, name) for name in names)]
        self._used.update(pattern for pattern, _ in matched)  # a pattern a longer one overrides is still used
        return matched[0][1] if matched else 1.0

    @property
    def unused(self) -> list[str]:
        """Patterns that have matched no parameter so far (won or not), in the order given."""
        return [pattern for pattern in self.entries if pattern not in self._used]
