"""Collection of the package's doctests: a module of an optional integration whose package is not
installed (the oldest-versions environment has no Lightning) is not collected."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("lightning") else ["hf_timm_layerdecay/integrations/lightning.py"]
