import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests import their helpers (models, oracle) directly


def pytest_configure(config):
    config.addinivalue_line("markers", "long: takes minutes; collected first (see pytest_collection_modifyitems)")


def pytest_collection_modifyitems(items):
    """Long tests first: under ``-n 2 --dist worksteal`` (the README's test command) one worker
    starts the fine-tuning notebook while the other runs the rest and then steals the first
    worker's queue, instead of the notebook starting last and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
