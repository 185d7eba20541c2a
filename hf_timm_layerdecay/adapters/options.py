"""Options of the automatic layer map: ``strategy="auto"`` is ``AutoStrategy()``.

:class:`AutoStrategy` is defined with the other options in :mod:`hf_timm_layerdecay.config`;
this name stays for the adapters and for code that imported it from here.
"""

from ..config import AutoStrategy

__all__ = ["AutoStrategy"]
