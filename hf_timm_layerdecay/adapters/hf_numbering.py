"""Moved to :mod:`hf_timm_layerdecay.adapters.transformers.numbering`; this name is kept for old imports."""

from .transformers.numbering import (  # noqa: F401
    Numbering,
    Placer,
    number,
    pair_encoders,
    plan_region,
    tower_matches,
    tower_names,
)
