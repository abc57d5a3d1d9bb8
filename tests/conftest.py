"""Shared fixtures. The vendored index lives in the normal cache (built once per machine, like a
user's); tests that exercise the cache itself use their own temporary REACTLAB_HOME."""

import pytest


@pytest.fixture(scope="session")
def vendored_index():
    from reactlab.wiki.index import get_index

    index = get_index()
    yield index
    index.close()
