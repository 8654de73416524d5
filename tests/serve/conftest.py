"""The serve tests' shared client: the app over the session's small index, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pipeline.serve.app import create_app


@pytest.fixture(scope="module")
def client(small_retriever) -> Iterator[TestClient]:
    with TestClient(create_app(small_retriever)) as c:
        yield c
