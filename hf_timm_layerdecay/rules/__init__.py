"""Hand-written layer rules for specific model families (``name -> layer id``).

Each is a plain function usable as ``strategy=`` in :func:`~hf_timm_layerdecay.layer_ids` and
:func:`~hf_timm_layerdecay.auto_layer_decay`, or as ``get_num_layer`` in
:func:`~hf_timm_layerdecay.get_parameter_groups`. They reproduce the official recipes of the
papers they come from; ``strategy="auto"`` needs none of them for timm's and transformers'
models, and uses one for models of your own once it is bound to their classes::

    from hf_timm_layerdecay import RuleAdapter, register_adapter
    register_adapter(RuleAdapter("my_beit", lambda name: get_num_layer_for_vit(name, 14), (MyBeit,)))
"""

from .beit import get_num_layer_for_vit
from .convnext import convnext_num_max_layer, get_num_layer_for_convnext

__all__ = ["get_num_layer_for_vit", "get_num_layer_for_convnext", "convnext_num_max_layer"]
