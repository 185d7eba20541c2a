"""Moved to :mod:`hf_timm_layerdecay.adapters.transformers.layout`; this name is kept for old imports."""

from .transformers.layout import Region, Stack, Unit, find_layout, warn_unnumbered_block_lists  # noqa: F401
