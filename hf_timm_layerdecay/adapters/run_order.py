"""The order in which a module's parameters are expected to run, read from ``forward`` source.

Registration order (``named_parameters()``) is not the order of the forward pass: a user registers
the classifier before the backbone, OPT its ``final_layer_norm`` before ``layers``, a U-Net its
decoder list before its encoder list. Every adapter numbers blocks "in the order they run", so this
is their one source for that order: the children and own parameters of a module are ordered by
where its ``forward`` first calls (or mentions) them, read from the syntax tree of its source; a
class whose source cannot be read keeps registration order (:func:`reads_forward` tells which).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Iterable, Optional

from torch import nn

from .paths import parents
from .tree import CONTAINERS
from .wrappers import LAYER_WRAPPER_ATTRIBUTES

#: Builtins that iterate over their argument: ``enumerate(self.layers)`` runs the layers.
_ITERATING = frozenset({"enumerate", "zip", "reversed", "iter", "list", "tuple", "map"})


def run_order(model: nn.Module, *, own_first: bool = False) -> list[str]:
    """Every parameter name, aliases of shared parameters included, in the order they are
    expected to run.

    Registration order is not always the order of the forward pass: OPT registers its
    ``final_layer_norm`` before ``layers``, DeBERTa-v2 its ``rel_embeddings`` after the layers that
    use them, and ``named_parameters()`` lists a module's own parameters (CLIP's ``logit_scale``)
    before its children's. So the children and own parameters of a module are ordered by where its
    ``forward`` first calls them (``self.<name>(...)``, a loop over ``self.<name>``; also inside the
    ``self.<helper>()`` methods it calls), or else first mentions them; what it does not mention
    keeps its place after its registered predecessor, and own parameters it does not mention come
    after the children. Containers run in registration order.

    With ``own_first``, the own parameters of every module come first, before its children, as
    ``named_parameters()`` lists them, wherever ``forward`` reads them: the convention of the
    structural map, where a module's own tensors are input-side (CaiT keeps its ``cls_token`` on
    the model and reads it only for its last blocks; it is still an embedding).

    Example:
        >>> from transformers import OPTConfig, OPTModel
        >>> config = OPTConfig(hidden_size=8, ffn_dim=8, num_hidden_layers=1, num_attention_heads=2, vocab_size=10)
        >>> opt = OPTModel(config)
        >>> [name for name, _ in opt.named_parameters()][2:5]  # registration order
        ['decoder.final_layer_norm.weight', 'decoder.final_layer_norm.bias', 'decoder.layers.0.self_attn.k_proj.weight']
        >>> run_order(opt)[-3:]
        ['decoder.layers.0.fc2.bias', 'decoder.final_layer_norm.weight', 'decoder.final_layer_norm.bias']
    """
    names: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        params = module._parameters
        own = [(key, param) for key, param in params.items() if param is not None] if params else []
        if not module._modules and len(own) < 2:  # a leaf with one parameter or none: most modules
            if own:
                names.append(prefix + own[0][0])
            return
        children = [(key, child) for key, child in module._modules.items() if child is not None]
        if own_first:
            names.extend(prefix + key for key, _ in own)
            own = []
        for key, entry in _forward_sorted(module, children, own):
            if isinstance(entry, nn.Module):
                visit(entry, f"{prefix}{key}.")
            else:
                names.append(prefix + key)

    visit(model, "")
    return names


def reported_run_order(model: nn.Module, reported: Iterable[str]) -> list[str]:
    """The names ``named_parameters()`` reports (``reported``), in the order they run, a module's
    own parameters before its children (``run_order(own_first=True)`` without the other aliases
    of shared parameters): the order the structural map and the timm wrapper rule number by."""
    keep = set(reported)
    return [name for name in run_order(model, own_first=True) if name in keep]


def _forward_sorted(
    module: nn.Module, children: list[tuple[str, nn.Module]], own: list[tuple[str, nn.Parameter]]
) -> list[tuple[str, object]]:
    """The children, then the own parameters, of ``module`` in the order its ``forward`` uses them."""
    entries = children + own
    if len(entries) < 2 or isinstance(module, CONTAINERS):
        return entries
    # The order depends only on the class and the names: computed once for the 32 layers of a model.
    order = _forward_order(type(unwrapped(module)), tuple(key for key, _ in children), tuple(key for key, _ in own))
    return [entries[i] for i in order]


@functools.lru_cache(maxsize=1 << 12)
def _forward_order(cls: type, children: tuple[str, ...], own: tuple[str, ...]) -> tuple[int, ...]:
    """Positions of ``children + own`` in the order ``cls.forward`` uses them."""
    called, mentioned = _first_uses(cls)
    keys, previous = [], (-1.0, -1)
    for index, key in enumerate(children + own):
        is_child = index < len(children)
        # a child runs where it is called (a mere `self.decoder.embed_tokens.weight.dtype` is no
        # run), a parameter where it is first read
        rank = called.get(key, mentioned.get(key)) if is_child else mentioned.get(key)
        if rank is not None:
            previous = (float(rank), index)
        elif not is_child and children:
            previous = (float("inf"), index)  # an own parameter that forward does not name: after the children
        keys.append((previous, index))
    return tuple(index for _, index in sorted(keys))


@functools.lru_cache(maxsize=None)
def _first_uses(cls: type) -> tuple[dict[str, int], dict[str, int]]:
    """Where ``cls.forward`` first calls (or iterates over) each ``self.<name>``, and where it
    first mentions it at all: ranks in evaluation order (a call's arguments before the call:
    ``self.norm(self.embed(x))`` runs ``embed`` first). What a ``self.<helper>()`` method that
    forward calls uses counts at the call. Both empty without source."""
    called: dict[str, int] = {}
    mentioned: dict[str, int] = {}
    uses = _uses_in(getattr(cls, "forward", None))
    for rank, (name, is_call) in enumerate(uses):
        mentioned.setdefault(name, rank)
        if is_call:
            called.setdefault(name, rank)
    for name, rank in sorted(called.items(), key=lambda item: item[1]):
        helper = inspect.getattr_static(cls, name, None)
        if name != "forward" and inspect.isfunction(helper):
            for inner, is_call in _uses_in(helper):
                for ranks, counts in ((mentioned, True), (called, is_call)):
                    if counts and ranks.get(inner, rank + 1) > rank:
                        ranks[inner] = rank
    return called, mentioned


@functools.lru_cache(maxsize=None)
def loops_over_layer_count(cls: type) -> bool:
    """Whether ``cls.forward`` loops ``range(... num_hidden_layers ...)`` times: it then runs its
    blocks by layer count, not one by one (ALBERT applies one layer group to every layer)."""
    tree = _syntax_tree(getattr(cls, "forward", None))
    return tree is not None and any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and any(isinstance(n, ast.Attribute) and n.attr == "num_hidden_layers" for a in node.args for n in ast.walk(a))
        for node in ast.walk(tree)
    )


def _syntax_tree(function: object) -> Optional[ast.AST]:
    if not callable(function):
        return None
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(function))))
    except (OSError, TypeError, SyntaxError):
        return None


def _uses_in(function: object) -> list[tuple[str, bool]]:
    """``(x, called)`` for every ``self.x`` a function uses, in evaluation order (empty without
    source). ``called``: ``self.x(...)``, ``self.x[i](...)``, or iterated over (``for layer in
    self.x``, ``enumerate(self.x)``); not ``self.x.weight`` or ``self.x.method()``."""
    tree = _syntax_tree(function)
    if tree is None:
        return []
    receiver = _receiver(tree)
    uses: list[tuple[str, bool]] = []

    def self_attribute(node: ast.AST) -> Optional[str]:
        if isinstance(node, ast.Subscript):
            node = node.value
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == receiver:
            return node.attr
        return None

    def visit(node: ast.AST, runs: bool = False) -> None:
        name = self_attribute(node)
        if name is not None:
            if isinstance(node, ast.Subscript):
                visit(node.slice)
            uses.append((name, runs))
        elif isinstance(node, ast.Call):  # arguments run before the call
            iterates = isinstance(node.func, ast.Name) and node.func.id in _ITERATING
            arguments = [*node.args, *node.keywords]
            # `zip(self.neck, self.encoder(x))`: the builtin iterates (runs) `self.neck` only once
            # every argument is evaluated, so after `self.encoder` has run
            iterated = [a for a in arguments if iterates and self_attribute(a) is not None]
            for arg in [a for a in arguments if not any(a is i for i in iterated)] + iterated:
                visit(arg, runs=iterates)
            visit(node.func, runs=True)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for generator in node.generators:  # the loops run before the element is computed
                visit(generator)
            for part in (getattr(node, "key", None), getattr(node, "value", None), getattr(node, "elt", None)):
                if part is not None:
                    visit(part)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):  # the value before the targets
            if node.value is not None:
                visit(node.value)
            for target in getattr(node, "targets", None) or [node.target]:
                visit(target)
        elif isinstance(node, (ast.For, ast.comprehension)):
            visit(node.iter, runs=True)
            for child in ast.iter_child_nodes(node):
                if child is not node.iter:
                    visit(child)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return uses


def _receiver(tree: ast.AST) -> str:
    """The name a method calls its instance: its first argument (``self`` by convention only)."""
    function = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    arguments = [*function.args.posonlyargs, *function.args.args] if function is not None else []
    return arguments[0].arg if arguments else "self"


def first_positions(names: list[str]) -> dict[str, int]:
    """Module path -> position of the first parameter below it in ``names`` (and each name ->
    its own position)."""
    first: dict[str, int] = {}
    for position, name in enumerate(names):
        first.setdefault(name, position)
        for path in reversed(parents(name)[1:]):  # innermost first; the root "" is not a path here
            if path in first:
                break  # and so are the paths above it
            first[path] = position
    return first


def unwrapped(module: nn.Module) -> nn.Module:
    """The module inside per-layer wrappers (compiled, FSDP1- or checkpoint-wrapped layers)."""
    while True:
        # the wrappers register what they wrap as a submodule; a lookup in ``_modules`` is much
        # cheaper than getattr, which goes through nn.Module.__getattr__ and an AttributeError
        children = module._modules
        inner = next((children[a] for a in LAYER_WRAPPER_ATTRIBUTES if isinstance(children.get(a), nn.Module)), None)
        if inner is None:
            return module
        module = inner


def reads_forward(module: nn.Module) -> bool:
    """Whether the order of ``module``'s children comes from its ``forward`` source: a container
    runs its items in order by definition; any other class needs readable source (a class made by
    ``exec`` or ``type()``, or a C extension, has none and keeps registration order)."""
    return isinstance(module, CONTAINERS) or _has_forward_source(type(unwrapped(module)))


@functools.lru_cache(maxsize=None)
def _has_forward_source(cls: type) -> bool:
    return _syntax_tree(getattr(cls, "forward", None)) is not None
