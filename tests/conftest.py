import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests import their helpers (models, oracle) directly


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "long: takes minutes and both cores (the fine-tuning notebook); the README's test command runs "
        "these after the others, alone, since a 2-thread torch job beside another process slows down several times",
    )
