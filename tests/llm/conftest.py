"""Fixtures for the HTTP backend: the fault-injecting server (``fault_server.py`` beside this file,
loaded by path because the suite uses ``--import-mode=importlib``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _fault_server_class():
    name = "reactlab_tests_fault_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fault_server.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].FaultServer


@pytest.fixture
def fault_server():
    """``fault_server(actions, default=..., ...)`` starts a server; all are shut down afterwards."""
    cls = _fault_server_class()
    servers = []

    def start(*args, **kwargs):
        servers.append(cls(*args, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()
