"""The server's bounds before parsing and across requests: image shapes, JSON depth, text that no encoder can
read, and the budget of pixels decoded at once; each refused with a 4xx (or 503) and the connection kept."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.serve import Limits, create_app  # noqa: E402
from pipeline.serve.errors import ApiError  # noqa: E402
from pipeline.serve.guards import PixelBudget, json_depth  # noqa: E402

from ..bomb import png_header  # noqa: E402

DEEP = b"[" * 100_000 + b"]" * 100_000
SURROGATE = b'{"text":"\\ud800","k":3}'
JSON = {"content-type": "application/json"}
MAX_PIXELS = Limits().max_image_pixels


@pytest.fixture(scope="module")
def live(small_retriever) -> Iterator[int]:
    """The app under uvicorn on 127.0.0.1 in a thread: real keep-alive connections, which TestClient has not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(small_retriever), host="127.0.0.1", port=port,
                                           log_level="warning", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("size", [(100_000, 1), (1, 100_000), (30_000, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_thin_images_are_422(client, size: tuple[int, int]) -> None:
    res = client.post("/search", files={"image": ("thin.png", png_header(*size))})
    assert res.status_code == 422, res.text
    assert res.json()["detail"].startswith(f"the query image is {size[0]}x{size[1]}, an aspect ratio of")
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("body", "status", "detail"), [
    (DEEP, 400, "request body is JSON nested 100000 levels deep; the limit is 32"),
    (b'{"text": "cat", "k": 3, "lang": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, "nested 50001 levels"),
    (SURROGATE, 422, "text is not valid Unicode: a lone surrogate U+D800 at position 0"),
    (b'{"text": "\\u200b\\u200c", "k": 3}', 422, "text has no visible character"),
], ids=["deep-array", "deep-field", "lone-surrogate", "zero-width"])
def test_bad_json_is_4xx_and_the_connection_serves_the_next_request(live: int, body: bytes, status: int,
                                                                    detail: str) -> None:
    """Found: 100,000 levels gave a 500 and the next request on that connection was reset; a lone surrogate
    reached the tokenizer (TypeError, 500)."""
    conn = http.client.HTTPConnection("127.0.0.1", live, timeout=60)
    try:
        conn.request("POST", "/search", body=body, headers=JSON)
        res = conn.getresponse()
        payload = json.loads(res.read())
        assert res.status == status and detail in payload["detail"], payload
        conn.request("POST", "/search", body=json.dumps({"text": "a red apple", "k": 2}), headers=JSON)
        again = conn.getresponse()  # the same connection: it was not reset
        assert again.status == 200 and len(json.loads(again.read())["hits"]) == 2
    finally:
        conn.close()


def test_json_depth_counts_structure_not_strings() -> None:
    assert json_depth(b'{"text": "[[[{{{", "k": 3}') == 1
    assert json_depth(b'{"a": "\\"[[[", "b": [[1]]}') == 3
    assert json_depth(b"") == 0 and json_depth(b'"[[["') == 0
    assert json_depth(DEEP) == 100_000


def test_pixel_budget_waits_then_refuses() -> None:
    budget = PixelBudget(100, wait_s=0.2)
    with budget.hold(80):
        t0 = time.monotonic()
        with pytest.raises(ApiError) as e, budget.hold(30):
            pass
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
        assert time.monotonic() - t0 >= 0.2
        with budget.hold(20):  # what fits is not kept waiting
            assert budget.in_use == 100
    assert budget.in_use == 0
    seen: list[int] = []

    def waiter() -> None:
        with budget.hold(100):
            seen.append(budget.in_use)

    with budget.hold(100):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        assert not seen  # still waiting
    t.join(5)
    assert seen == [100] and budget.in_use == 0  # the waiter got in once the holder left


def test_a_full_budget_is_503_with_retry_after(small_retriever) -> None:
    png = small_retriever.thumbnail(small_retriever.items["image"].column("id")[0].as_py())
    limits = Limits(max_inflight_pixels=MAX_PIXELS, pixel_wait_ms=100)
    with TestClient(create_app(small_retriever, limits=limits)) as c:
        with c.app.state.pixels.hold(MAX_PIXELS):  # as if other requests were decoding
            res = c.post("/search", files={"image": ("q.png", png)})
            assert c.post("/search", json={"text": "cat"}).status_code == 200  # text draws nothing
        assert res.status_code == 503 and res.headers["retry-after"] == "1", res.text
        assert "retry in a moment" in res.json()["detail"]
        assert c.post("/search", files={"image": ("q.png", png)}).status_code == 200
        assert c.app.state.pixels.in_use == 0

