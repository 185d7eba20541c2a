"""Which parameters are excluded from weight decay.

The rule of BEiT, MAE, timm and the original post: biases, every parameter with at most one
dimension (norm weights, layer-scale gammas, scalar temperatures) and an explicit list of
names (position embeddings, class tokens) are not decayed. ConvNeXt-V2's recipe adds, by name,
the ``gamma`` / ``beta`` of its global response norm (``grn``), which it stores 4-D as
``(1, 1, 1, C)``. Other models that store a per-channel scale with broadcast dimensions (FastViT's
and SwiftFormer's layer scales, ResMLP's affine) were trained by their authors with weight decay
on it, through timm's 1-D rule, and keep it.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable, Optional, Sequence

_GLOB_CHARS = frozenset("*?[")


class NameMatcher:
    """Matches parameter names against exact names, module prefixes and glob patterns.

    An entry matches a name when it is equal to it, when it names a module that contains it
    (``"pos_embed"`` matches ``"pos_embed"``, ``"rel_pos"`` matches ``"rel_pos.table"``), or,
    for entries with ``*``, ``?`` or ``[``, when :func:`fnmatch.fnmatchcase` accepts it
    (``"*.relative_position_bias_table"``).

    Example:
        >>> m = NameMatcher(["pos_embed", "*.relative_position_bias_table", "nothing"])
        >>> m("pos_embed"), m("blocks.0.attn.relative_position_bias_table"), m("head.weight")
        (True, True, False)
        >>> m.unused
        ['nothing']
    """

    def __init__(self, entries: Optional[Iterable[str]] = ()) -> None:
        if entries is None:
            entries = ()
        if isinstance(entries, str):  # a lone string would be iterated character by character
            entries = [entries]
        self.entries = list(dict.fromkeys(entries))
        wrong = [e for e in self.entries if not isinstance(e, str)]
        if wrong:
            raise TypeError(
                f"no-weight-decay entries must be strings (parameter names, module names or glob patterns), "
                f"got {wrong[0]!r} ({type(wrong[0]).__name__})"
            )
        self._exact = {e for e in self.entries if not _GLOB_CHARS & set(e)}
        self._globs = [e for e in self.entries if _GLOB_CHARS & set(e)]
        self._used: set[str] = set()

    def __call__(self, name: str) -> bool:
        """Whether ``name`` matches an entry (recorded for :attr:`unused`)."""
        return name in self.matching((name,))

    def matching(self, names: Iterable[str]) -> set[str]:
        """The names that match, found in one pass over all of them that asks only the names that
        match which entry they match; every entry that matched is recorded for :attr:`unused`.
        An exact entry is asked before the globs, so a name an exact entry matches does not use
        up a glob."""
        if not self.entries:
            return set()
        names = list(names)
        found: set[str] = set()
        if self._exact:
            below = tuple(entry + "." for entry in self._exact)
            for name in names:
                if name in self._exact or name.startswith(below):  # a cheap test first: most names match nothing
                    found.add(name)
                    self._used.add(self._exact_entry(name))
        for pattern in self._globs:  # as __call__: a glob is asked about what no entry before it matched
            hits = fnmatch.filter([name for name in names if name not in found], pattern)
            if hits:
                found.update(hits)
                self._used.add(pattern)
        return found

    def _exact_entry(self, name: str) -> Optional[str]:
        """The exact entry that matches ``name``: the name itself, else its innermost module."""
        if not self._exact:
            return None
        return next((entry for entry in _name_and_parents(name) if entry in self._exact), None)

    @property
    def unused(self) -> list[str]:
        """Entries that have not matched any name passed so far, in the order given."""
        return [e for e in self.entries if e not in self._used]


def no_weight_decay_list(model: object) -> list[str]:
    """The entries of ``model.no_weight_decay()`` (timm's convention: parameter or module names),
    or none when the model has no such method."""
    method = getattr(model, "no_weight_decay", None)
    if not callable(method):
        return []
    names = method()
    return [names] if isinstance(names, str) else list(names or ())


def is_no_decay_shape(name: str, shape: Sequence[int]) -> bool:
    """Biases, parameters with at most one dimension, and the ``gamma`` / ``beta`` of a global
    response norm (``grn``) stored with broadcast dimensions are never weight-decayed.

    Example:
        >>> is_no_decay_shape("stages.0.1.grn.gamma", (1, 1, 1, 96)), is_no_decay_shape("fc.weight", (1, 96))
        (True, False)
    """
    if len(shape) <= 1 or name.endswith(".bias"):
        return True
    owner, _, leaf = name.rpartition(".")
    return leaf in ("gamma", "beta") and owner.rpartition(".")[2] == "grn" and sum(size != 1 for size in shape) <= 1


def _name_and_parents(name: str) -> Iterable[str]:
    """``"a.b.c"`` -> ``"a.b.c"``, ``"a.b"``, ``"a"``."""
    yield name
    while "." in name:
        name = name.rsplit(".", 1)[0]
        yield name


def matches_entry(entry: str, name: str) -> bool:
    """Whether one entry matches one name, by :class:`NameMatcher`'s rule: equal, the name of a
    module that contains it, or a glob pattern that :func:`fnmatch.fnmatchcase` accepts.

    Example:
        >>> matches_entry("blocks.1", "blocks.1.attn.qkv.weight"), matches_entry("blocks.1", "blocks.10.mlp.bias")
        (True, False)
        >>> matches_entry("*.gamma", "blocks.0.gamma")
        True
    """
    if _GLOB_CHARS & set(entry):
        return fnmatch.fnmatchcase(name, entry)
    return name == entry or name.startswith(entry + ".")
