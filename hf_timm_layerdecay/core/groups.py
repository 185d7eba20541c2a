"""From (name, parameter, layer id, scale) to optimizer parameter groups, and their invariant.

A group is a plain ``dict`` that ``torch.optim`` accepts as is. Keys:

``params``        the tensors.
``param_names``   their names; ``torch.optim`` (>= 2.6) keeps these in ``state_dict()``, which
                  lets a resumed run check it got the same grouping.
``name``          ``"layer_3_decay"``, ``"layer_3_no_decay"`` (or ``"decay"``/``"no_decay"``
                  when there is no layer split); ``"layer_3_decay@tp"`` for the part on one
                  device mesh of a group split by :func:`split_by_device_mesh`.
``layer_id``      the layer id, ``None`` without a layer split.
``weight_decay``  the weight decay of the group (0.0 for the no-decay groups).
``scale``         the group's learning-rate scale: the layer's scale times ``lr_mult``.
``lr``            ``base lr x scale``, present when a base lr was given.
``lr_mult``       only where an ``lr_mult`` / ``head_lr_mult`` other than 1 applies; the group's
                  name then ends in ``_lr_x<multiplier>``.
``wd_mult``       only where a ``wd_mult`` other than 1 applies (name ends in ``_wd_x<multiplier>``);
                  ``weight_decay`` is already multiplied.
``region``        only under a per-region ``layer_decay``: the region whose decay gave the scale
                  (the name then starts with ``<region>.``: ``"vision_model.layer_3_decay"``).
``lr_scale``      the scale again, present only when no ``lr`` was given.
``merged_layer_ids``  only on a group that holds several layers with identical hyperparameters
                  (see :func:`merge_equal_groups`); its ``layer_id`` is then the lowest of them.

``lr_scale`` is the key that timm's schedulers and the BEiT/MAE training loops multiply into the
lr they set. Carrying it next to an already scaled ``lr`` would apply the decay twice, and
carrying only ``lr_scale`` makes every other scheduler ignore the decay; so a group has exactly
one of the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

logger = logging.getLogger(__name__)

DECAY, NO_DECAY = "decay", "no_decay"


class ParamGroupError(ValueError):
    """Parameter groups do not cover the trainable parameters exactly once.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> check_param_groups([{"params": [model.weight]}], model)
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.groups.ParamGroupError: 1 trainable parameter(s) in no group: bias
    """


def build_param_groups(
    named_params: Iterable[tuple[str, Any]],
    *,
    weight_decay: float,
    is_no_decay: Callable[[str, Any], bool],
    layer_of: Optional[Callable[[str], int]] = None,
    scale_of: Optional[Callable[[int], float]] = None,
    lr: Optional[float] = None,
    lr_mult_of: Optional[Callable[[str], float]] = None,
    wd_mult_of: Optional[Callable[[str], float]] = None,
    include_frozen: bool = False,
    region_of: Optional[Callable[[str], Optional[str]]] = None,
) -> list[dict]:
    """Split the trainable parameters into groups by (layer id, weight decay or not, multipliers).

    Args:
        named_params: ``(name, parameter)`` pairs, e.g. ``model.named_parameters()``. Frozen
            parameters (``requires_grad=False``) are skipped unless ``include_frozen``.
        weight_decay: weight decay of the decayed groups.
        is_no_decay: ``(name, parameter) -> bool``, True for parameters without weight decay.
        layer_of: ``name -> layer id``; ``None`` gives the plain two groups.
        scale_of: ``layer id -> scale``, called once per group made (a layer with decayed and
            not-decayed parameters asks twice); ``None`` means 1.0.
        lr: base learning rate; when given every group gets ``lr = lr * scale``.
        lr_mult_of, wd_mult_of: ``name -> multiplier`` of the lr / of the weight decay;
            ``None`` means 1.0. The weight-decay multiplier is asked of decayed parameters only.
        include_frozen: put frozen parameters in their groups too (they train once unfrozen).
        region_of: ``name -> region label or None``, for a decay per region: parameters of one
            layer in different regions get different groups, and ``scale_of`` is then called as
            ``scale_of(layer_id, region)``.

    Returns:
        Groups sorted by layer id, then region (none first), the decayed group of a layer before
        its no-decay group, then by multipliers.
    """
    if scale_of is not None and layer_of is None:
        raise ValueError("a layer scale function needs a layer id function too (get_num_layer / layer_of)")
    groups: dict[tuple, dict] = {}
    for name, param in named_params:
        if not (param.requires_grad or include_frozen):
            continue
        decays = not is_no_decay(name, param)
        layer_id = layer_of(name) if layer_of is not None else None
        region = region_of(name) if region_of is not None else None
        lr_mult = float(lr_mult_of(name)) if lr_mult_of is not None else 1.0
        wd_mult = float(wd_mult_of(name)) if wd_mult_of is not None and decays else 1.0
        key = (layer_id, region or "", not decays, lr_mult, wd_mult)
        group = groups.get(key)
        if group is None:
            if scale_of is None:
                scale = 1.0
            else:
                scale = float(scale_of(layer_id) if region_of is None else scale_of(layer_id, region))
            group = groups[key] = _new_group(layer_id, decays, weight_decay if decays else 0.0, scale, lr, lr_mult,
                                             wd_mult, region)
        group["params"].append(param)
        group["param_names"].append(name)
    _refuse_repeats(list(groups.values()))
    if not groups:
        raise ParamGroupError(
            "the model has no trainable parameters (all have requires_grad=False); unfreeze some before "
            "building an optimizer"
        )
    ordered = [groups[key] for key in sorted(groups, key=lambda k: (-1 if k[0] is None else k[0], *k[1:]))]
    _log_groups(ordered)
    return ordered


def _refuse_repeats(groups: list[dict]) -> None:
    """Raise if one tensor was passed under two names (checked on the result: one set of ids
    instead of a question per parameter)."""
    params = [param for group in groups for param in group["params"]]
    if len(set(map(id, params))) == len(params):
        return
    first: dict[int, str] = {}
    for group in groups:
        for name, param in zip(group["param_names"], group["params"]):
            if id(param) in first:
                raise ParamGroupError(
                    f"parameter {name!r} is the same tensor as {first[id(param)]!r}; pass each parameter once "
                    "(model.named_parameters() already removes tied duplicates)"
                )
            first[id(param)] = name


def _new_group(
    layer_id: Optional[int], decays: bool, weight_decay: float, scale: float, lr: Optional[float],
    lr_mult: float = 1.0, wd_mult: float = 1.0, region: Optional[str] = None,
) -> dict:
    kind = DECAY if decays else NO_DECAY
    scale *= lr_mult
    name = (kind if layer_id is None else f"layer_{layer_id}_{kind}") + _multiplier_suffix(lr_mult, wd_mult)
    group = {
        "name": name if region is None else f"{region}.{name}",
        "layer_id": layer_id,
        "params": [],
        "param_names": [],
        "weight_decay": weight_decay * wd_mult,
        "scale": scale,
    }
    # present only where they apply, so that groups without multipliers stay as they always were
    if lr_mult != 1.0:
        group["lr_mult"] = lr_mult
    if wd_mult != 1.0:
        group["wd_mult"] = wd_mult
    if region is not None:
        group["region"] = region
    if lr is None:
        group["lr_scale"] = scale
    else:
        group["lr"] = lr * scale
    return group


@dataclass(frozen=True)
class Coverage:
    """How a list of groups covers a model's parameters (see :func:`param_group_coverage`)."""

    trainable: int
    missing: tuple[str, ...]
    duplicates: tuple[str, ...]
    foreign: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Every trainable parameter in exactly one group, and nothing else grouped."""
        return not (self.missing or self.duplicates or self.foreign)

    def problems(self) -> list[str]:
        """One sentence per kind of problem, empty when :attr:`ok`."""
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} trainable parameter(s) in no group: {_short(self.missing)}")
        if self.duplicates:
            found.append(f"{len(self.duplicates)} parameter(s) in two groups: {_short(self.duplicates)}")
        if self.foreign:
            found.append(f"{len(self.foreign)} tensor(s) that are not parameters of the model: {_short(self.foreign)}")
        return found


def as_group_list(groups: Any, what: str = "groups") -> list[dict]:
    """``groups`` as a list of group dicts: a list of dicts, or an optimizer (its
    ``param_groups``). Inside a group, ``params`` may be a single tensor or any iterable, as
    ``torch.optim`` accepts them; an iterator (``model.blocks.parameters()``) is turned into a
    list *in the group*, so that an optimizer built from the same groups afterwards still finds
    the tensors (reading it here would otherwise leave that optimizer an empty group).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> groups = [{"params": model.parameters()}]
        >>> len(as_group_list(groups)[0]["params"]), type(groups[0]["params"]).__name__
        (2, 'list')
    """
    param_groups = getattr(groups, "param_groups", None)
    if param_groups is not None and not isinstance(groups, (list, tuple)):
        return list(param_groups)
    if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Iterable):
        hint = " (a single group: wrap it in a list, [group])" if isinstance(groups, Mapping) else ""
        raise TypeError(f"{what} must be a list of parameter-group dicts or an optimizer, got {type(groups).__name__}{hint}")
    if isinstance(groups, Iterator):
        raise TypeError(
            f"{what} is an iterator ({type(groups).__name__}): reading it here would use it up and leave nothing for "
            "the optimizer; pass a list of group dicts"
        )
    groups = list(groups)
    for index, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise TypeError(
                f"{what}[{index}] is a {type(group).__name__}, not a parameter-group dict: pass "
                "[{'params': [...]}, ...] (or the optimizer itself)"
            )
        if "params" not in group:
            raise ParamGroupError(f"{what}[{index}] ({group.get('name', 'unnamed')}) has no 'params' entry")
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{what}[{index}]['params'] is a set, whose order is not fixed: pass a list, as torch.optim requires")
        if _is_tensor(params):
            params = [params]
        elif isinstance(params, Iterator):
            params = list(params)
            if isinstance(group, dict):
                group["params"] = params
        elif not isinstance(params, Iterable):
            raise TypeError(f"{what}[{index}]['params'] must be a list of tensors, got {type(params).__name__}")
        if params is not group["params"]:
            group = {**group, "params": params}
        groups[index] = group
    return groups


def _is_tensor(value: Any) -> bool:
    # duck-typed: the core imports no framework
    return hasattr(value, "shape") and hasattr(value, "requires_grad")


def param_group_coverage(groups: Any, model: Any, *, named: Optional[list] = None) -> Coverage:
    """Compare ``groups`` (ours, ``optimizer.param_groups`` or the optimizer) with
    ``model.named_parameters()`` (``named``: that list, when the caller has it already).

    An optimizer that holds its own copies of the parameters in its groups (DeepSpeed ZeRO, see
    :func:`holds_copies`) is checked by the ``param_names`` its groups carry."""
    copies = holds_copies(groups)
    groups = as_group_list(groups)
    if named is None:
        if not callable(getattr(model, "named_parameters", None)):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        named = list(model.named_parameters())
    if copies:
        return _coverage_by_names(groups, named)
    grouped = [param for group in groups for param in group["params"]]
    trainable = {id(param) for _, param in named if param.requires_grad}
    grouped_ids = set(map(id, grouped))
    if len(grouped_ids) == len(grouped) and grouped_ids == trainable:  # the usual verdict, from two sets
        return Coverage(len(trainable), (), (), ())
    names_of = {id(p): n for n, p in named}
    owner: dict[int, str] = {}
    duplicates, foreign = [], []
    for index, group in enumerate(groups):
        label = group.get("name", f"group {index}")
        for param in group["params"]:
            name = names_of.get(id(param))
            if name is None:
                foreign.append(f"{tuple(param.shape)} tensor in {label}")
            elif id(param) in owner:
                duplicates.append(f"{name} (in {owner[id(param)]} and {label})")
            else:
                owner[id(param)] = label
    missing = tuple(name for name, param in named if param.requires_grad and id(param) not in owner)
    return Coverage(len(trainable), missing, tuple(duplicates), tuple(foreign))


#: Attributes of the optimizers whose ``param_groups`` hold copies of the model's parameters rather
#: than the parameters: DeepSpeed's ZeRO optimizers (one flat fp32 partition per group in stages 1
#: and 2, nothing at all in stage 3, the shards being elsewhere) keep the originals in these.
_COPYING_OPTIMIZER_ATTRIBUTES = ("bit16_groups", "fp16_groups")


def holds_copies(optimizer: Any) -> bool:
    """Whether ``optimizer`` keeps copies of the parameters in its ``param_groups`` (DeepSpeed
    ZeRO 1, 2, 3), so that its groups are read by the ``param_names`` they carry; seen through
    wrappers that hold it as ``.optimizer`` (accelerate's ``DeepSpeedOptimizerWrapper``, which the
    Trainer trains with).

    Example:
        >>> class Zero:  # what DeepSpeed's ZeRO optimizers look like
        ...     param_groups, bit16_groups = [{"params": []}], [[]]
        >>> class Wrapper:
        ...     param_groups, optimizer = Zero.param_groups, Zero()
        >>> holds_copies(Zero()), holds_copies(Wrapper()), holds_copies([{"params": []}])
        (True, True, False)
    """
    if getattr(optimizer, "param_groups", None) is None:
        return False
    seen = set()
    while optimizer is not None and id(optimizer) not in seen:
        if any(isinstance(getattr(optimizer, a, None), list) for a in _COPYING_OPTIMIZER_ATTRIBUTES):
            return True
        seen.add(id(optimizer))
        optimizer = getattr(optimizer, "optimizer", None)
    return False


def _coverage_by_names(groups: list[dict], named: list) -> Coverage:
    """Coverage from the groups' ``param_names`` (a group without them covers nothing)."""
    known = {name for name, _ in named}
    owner: dict[str, str] = {}
    duplicates, foreign = [], []
    for index, group in enumerate(groups):
        label = group.get("name", f"group {index}")
        for name in group.get("param_names") or ():
            if name not in known:
                foreign.append(f"{name!r} named in {label}")
            elif name in owner:
                duplicates.append(f"{name} (in {owner[name]} and {label})")
            else:
                owner[name] = label
    trainable = [name for name, param in named if param.requires_grad]
    missing = tuple(name for name in trainable if name not in owner)
    return Coverage(len(trainable), missing, tuple(duplicates), tuple(foreign))


def merge_equal_groups(groups: list[dict]) -> list[dict]:
    """Merge groups whose hyperparameters are all equal (same scale, lr and weight decay).

    Every group costs the optimizer its own kernel launches per step, so layers that
    ``min_scale`` clamps to one value, or a sequence of per-layer scales with repeats, share one
    group. A merged group keeps the place and the ``layer_id`` of its lowest layer, is named
    ``layers_<first>-<last>_<kind>`` and lists its layers in ``merged_layer_ids``.

    Example:
        >>> import torch
        >>> p = [torch.nn.Parameter(torch.zeros(2, 2)) for _ in range(3)]
        >>> groups = build_param_groups(
        ...     [("a.w", p[0]), ("b.w", p[1]), ("c.w", p[2])], weight_decay=0.1, is_no_decay=lambda n, _: False,
        ...     layer_of=lambda n: "abc".index(n[0]), scale_of=[0.5, 0.5, 1.0].__getitem__, lr=1.0)
        >>> [(g["name"], g["layer_id"], g.get("merged_layer_ids"), g["param_names"]) for g in merge_equal_groups(groups)]
        [('layers_0-1_decay', 0, (0, 1), ['a.w', 'b.w']), ('layer_2_decay', 2, None, ['c.w'])]
    """
    members: dict[tuple, list[dict]] = {}
    for group in groups:
        key = tuple(sorted((k, _frozen(v)) for k, v in group.items() if k not in _GROUP_CONTENT))
        members.setdefault(key, []).append(group)
    return [_merged(same) if len(same) > 1 else same[0] for same in members.values()]


def _multiplier_suffix(lr_mult: float, wd_mult: float) -> str:
    return (f"_lr_x{lr_mult:g}" if lr_mult != 1.0 else "") + (f"_wd_x{wd_mult:g}" if wd_mult != 1.0 else "")


def _merged(same: list[dict]) -> dict:
    lr_mult = same[0].get("lr_mult", 1.0)  # part of the scale: equal in all of them
    wd_mults = {g.get("wd_mult", 1.0) for g in same}  # not: a weight decay multiplied to 0 joins the no-decay group
    wd_mult = wd_mults.pop() if len(wd_mults) == 1 else 1.0
    kinds = {group_kind(g) for g in same}
    kind = kinds.pop() if len(kinds) == 1 else None
    suffix = _multiplier_suffix(lr_mult, wd_mult)
    if same[0]["layer_id"] is None:  # no layer split: decay and no_decay with equal weight decay
        group = dict(same[0], name=(kind or "all") + suffix)
        group["params"] = [p for g in same for p in g["params"]]
        group["param_names"] = [n for g in same for n in g["param_names"]]
        if wd_mult == 1.0:
            group.pop("wd_mult", None)
        return group
    layers = tuple(sorted({g["layer_id"] for g in same}))
    if len(layers) == 1:
        span = f"layer_{layers[0]}"
    elif layers == tuple(range(layers[0], layers[-1] + 1)):
        span = f"layers_{layers[0]}-{layers[-1]}"
    else:
        span = "layers_" + "_".join(map(str, layers))
    regions = {g.get("region") for g in same}
    region = regions.pop() if len(regions) == 1 else None
    prefix = f"{region}." if region is not None else ""
    group = dict(same[0], name=prefix + span + (f"_{kind}" if kind else "") + suffix, layer_id=layers[0])
    if region is None:
        group.pop("region", None)
    group["params"] = [p for g in same for p in g["params"]]
    group["param_names"] = [n for g in same for n in g["param_names"]]
    if len(layers) > 1:
        group["merged_layer_ids"] = layers
    if wd_mult == 1.0:
        group.pop("wd_mult", None)
    return group


def group_kind(group: dict) -> str:
    """``"decay"`` or ``"no_decay"``: which kind of parameters a group of this library holds."""
    name = group["name"].removesuffix(_multiplier_suffix(group.get("lr_mult", 1.0), group.get("wd_mult", 1.0)))
    return NO_DECAY if name.endswith(NO_DECAY) else DECAY


#: Keys that say what a group holds, not how it is optimized (``wd_mult`` too: its effect is in
#: ``weight_decay``, and a weight decay multiplied to 0 joins the layer's no-decay group; ``region``
#: too: two regions' groups with equal hyperparameters are one group).
_GROUP_CONTENT = frozenset({"params", "param_names", "name", "layer_id", "merged_layer_ids", "wd_mult", "region"})


def split_by_device_mesh(groups: list[dict]) -> list[dict]:
    """Split every group whose tensors live on more than one device mesh: one group per mesh.

    A ``foreach`` or ``fused`` optimizer step is one kernel call over a group's tensors, and
    torch refuses a call that mixes ``DTensor`` and plain tensors ("got mixed torch.Tensor and
    DTensor") or spans several meshes. A layer's group mixes them under expert parallelism
    combined with tensor parallelism (transformers' ``DistributedConfig(ep_size=2, tp_size=2)``:
    attention on the ``tp`` mesh, experts on ``ep``, router and norms plain), and under 2-D
    meshes; ``transformers.Trainer`` splits its own two groups the same way. The parts keep
    every hyperparameter, in the order their tensors first appear, and are named
    ``<name>@<mesh dims>`` (``layer_3_decay@tp``, ``layer_3_decay@ep``; ``@plain`` for tensors
    that are not DTensors). Groups on one mesh, and models without DTensors, are left as they are.

    Example:
        >>> class Mesh:
        ...     mesh_dim_names = ("tp",)
        >>> class Sharded:  # stands for a DTensor on the mesh
        ...     device_mesh = Mesh()
        >>> plain, sharded = object(), Sharded()
        >>> groups = [{"name": "layer_1_decay", "lr": 0.5, "params": [sharded, plain], "param_names": ["q.weight", "gate.weight"]}]
        >>> [(g["name"], g["lr"], g["param_names"]) for g in split_by_device_mesh(groups)]
        [('layer_1_decay@tp', 0.5, ['q.weight']), ('layer_1_decay@plain', 0.5, ['gate.weight'])]
    """
    # One pass over the tensor types answers the usual case (no DTensor anywhere) without
    # touching the tensors; the class-level check needs no torch.distributed import.
    if not any(hasattr(cls, "device_mesh") for cls in {type(p) for g in groups for p in g["params"]}):
        return groups
    return [part for group in groups for part in _split_group(group)]


def _split_group(group: dict) -> list[dict]:
    by_mesh: dict[Any, tuple[list, list]] = {}
    for name, param in zip(group["param_names"], group["params"]):
        params, names = by_mesh.setdefault(getattr(param, "device_mesh", None), ([], []))
        params.append(param)
        names.append(name)
    if len(by_mesh) == 1:
        return [group]
    labels = [_mesh_label(mesh) for mesh in by_mesh]
    if len(set(labels)) < len(labels):  # distinct meshes with equal dimension names: number those
        repeated = {label for label in labels if labels.count(label) > 1}
        labels = [f"{label}{labels[:i].count(label)}" if label in repeated else label for i, label in enumerate(labels)]
    return [
        dict(group, name=f"{group['name']}@{label}", params=params, param_names=names)
        for label, (params, names) in zip(labels, by_mesh.values())
    ]


def _mesh_label(mesh: Any) -> str:
    if mesh is None:
        return "plain"
    return ",".join(getattr(mesh, "mesh_dim_names", None) or ()) or "mesh"


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def check_param_groups(groups: Any, model: Any, *, named: Optional[list] = None) -> None:
    """Raise :class:`ParamGroupError` unless every trainable parameter of ``model`` is in exactly
    one group and every grouped tensor belongs to ``model``.

    Works on the groups returned by this library, on ``optimizer.param_groups`` and on an
    optimizer. A group's ``params`` given as an iterator is made a list in place (see
    :func:`as_group_list`), so the groups stay usable. ``named``:
    ``list(model.named_parameters())``, when the caller has it already.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> check_param_groups(torch.optim.SGD(model.parameters(), lr=0.1).param_groups, model)  # silent: all there
        >>> check_param_groups([{"params": [model.weight]}, {"params": [model.weight, model.bias]}], model)
        Traceback (most recent call last):
        ...
        hf_timm_layerdecay.core.groups.ParamGroupError: 1 parameter(s) in two groups: weight (in group 0 and group 1)
    """
    problems = param_group_coverage(groups, model, named=named).problems()
    if problems:
        raise ParamGroupError("; ".join(problems))


def _short(items: tuple[str, ...], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _log_groups(groups: list[dict]) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    for group in groups:
        logger.debug(
            "group %s: layer %s, scale %.6g, weight_decay %g, %d tensors: %s",
            group["name"], group["layer_id"], group["scale"], group["weight_decay"],
            len(group["params"]), ", ".join(group["param_names"]),
        )
