"""Collection: the scripts under tests/distributed/ (run by the tests in their own processes) are
no test modules, and a module of an optional integration whose package is not installed (the
oldest-versions environment has no Lightning) is not collected for its doctests."""

import importlib.util
import os
import shutil

# DeepSpeed picks its accelerator when first imported (by the Trainer, by a test) and, finding no
# GPU, prints a warning to stdout: a doctest whose process imports it first would see that line
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

collect_ignore_glob = ["tests/distributed/*.py"]
collect_ignore = [] if importlib.util.find_spec("lightning") else ["hf_timm_layerdecay/integrations/lightning.py"]
