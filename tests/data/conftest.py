"""Fixtures shared by the data tests."""
import urllib.error

import pytest


@pytest.fixture
def offline(monkeypatch):
    """torchvision's downloads fail as they do without a network, whatever this machine has."""
    datasets_utils = pytest.importorskip("torchvision.datasets.utils")

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets_utils, "download_url", no_network)
