"""HTTP API tests on the real small OpenMoji index: search, items, info, limits, errors and concurrency."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.config import DataConfig  # noqa: E402
from pipeline.core.spaces import IMAGE, TEXT  # noqa: E402
from pipeline.serve import Limits, create_app  # noqa: E402

from ..bomb import png_header  # noqa: E402

ATTRIBUTION = "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0"


@pytest.fixture(scope="module")
def item_ids(small_retriever) -> list[str]:
    return small_retriever.items["image"].column("id").to_pylist()


@pytest.fixture(scope="module")
def png(small_retriever, item_ids) -> bytes:
    """A real query image: the stored thumbnail of the first item."""
    data = small_retriever.thumbnail(item_ids[0])
    assert data is not None and data.startswith(b"\x89PNG")
    return data


def _assert_error(res: Any, status: int, error: str | None = None, detail_has: str | None = None) -> dict:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert set(body) == {"error", "detail"}, body
    if error is not None:
        assert body["error"] == error
    if detail_has is not None:
        assert detail_has in str(body["detail"]), body
    return body


def _same_hits(api_hits: list[dict], lib_hits: list) -> None:
    assert [h["id"] for h in api_hits] == [h.id for h in lib_hits]
    assert [h["score"] for h in api_hits] == pytest.approx([h.score for h in lib_hits], abs=1e-5)


# -- search ---------------------------------------------------------------------------------------------


def test_text_search_returns_image_hits_with_thumbnails(client, small_retriever):
    res = client.post("/search", json={"text": "a red apple", "k": 7})
    assert res.status_code == 200, res.text
    body = res.json()
    assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    assert body["query"] == {"modality": "text", "target": "image", "k": 7, "lang": "en", "result_lang": None}
    hits = body["hits"]
    assert len(hits) == 7
    assert all(h["modality"] == "image" for h in hits)
    assert set(hits[0]) == {"id", "score", "modality", "caption", "lang", "metadata", "captions", "thumbnail"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    _same_hits(hits, small_retriever.search(text="a red apple", k=7))
    for h in hits:
        assert h["caption"] and "char" in h["metadata"]
        assert h["thumbnail"] == f"/items/{h['id']}/image"
        img = client.get(h["thumbnail"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content == small_retriever.thumbnail(h["id"])


def test_image_upload_returns_caption_hits(client, small_retriever, png):
    res = client.post("/search", files={"image": ("query.png", png, "image/png")}, data={"k": "5"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["query"]["modality"] == "image" and body["query"]["target"] == "text"
    hits = body["hits"]
    assert len(hits) == 5
    assert all(h["modality"] == "text" and h["caption"] and h["lang"] in ("en", "es") for h in hits)
    assert len({h["id"] for h in hits}) == 5  # one hit per item, its languages in captions, best first
    assert all(next(iter(h["captions"])) == h["lang"] and h["captions"][h["lang"]] == h["caption"] for h in hits)
    _same_hits(hits, small_retriever.search(image=png, k=5))


def test_upload_as_octet_stream_is_sniffed(client, png):
    """Files without a known extension arrive as application/octet-stream; the bytes decide."""
    res = client.post("/search", files={"image": ("blob", png, "application/octet-stream")}, data={"k": "2"})
    assert res.status_code == 200, res.text


def test_same_modality_search(client, small_retriever, png):
    res = client.post("/search", json={"text": "cat", "k": 4, "target": "text"})
    assert res.status_code == 200, res.text
    assert all(h["modality"] == "text" for h in res.json()["hits"])
    _same_hits(res.json()["hits"], small_retriever.search(text="cat", k=4, target="text"))
    res = client.post("/search", files={"image": ("q.png", png, "image/png")}, data={"k": "4", "target": "image"})
    assert res.status_code == 200, res.text
    assert all(h["modality"] == "image" for h in res.json()["hits"])
    _same_hits(res.json()["hits"], small_retriever.search(image=png, k=4, target="image"))


def test_lang_and_result_lang(client, small_retriever, png):
    res = client.post("/search", json={"text": "manzana roja", "k": 5, "lang": "es"})
    assert res.status_code == 200, res.text
    assert res.json()["query"]["lang"] == "es"
    _same_hits(res.json()["hits"], small_retriever.search(text="manzana roja", k=5, lang="es"))

    res = client.post("/search", json={"text": "dog", "k": 6, "target": "text", "result_lang": "es"})
    assert res.status_code == 200, res.text
    assert {h["lang"] for h in res.json()["hits"]} == {"es"}

    res = client.post("/search", files={"image": ("q.png", png, "image/png")}, data={"k": "6", "result_lang": "en"})
    assert res.status_code == 200, res.text
    hits = res.json()["hits"]
    assert len(hits) == 6 and {h["lang"] for h in hits} == {"en"}
    _same_hits(hits, small_retriever.search(image=png, k=6, result_lang="en"))


def test_text_is_stripped_and_form_text_works(client, small_retriever):
    res = client.post("/search", data={"text": "  sun  ", "k": "3"})
    assert res.status_code == 200, res.text
    _same_hits(res.json()["hits"], small_retriever.search(text="sun", k=3))


# -- items ----------------------------------------------------------------------------------------------


def test_item_and_image_endpoints(client, small_retriever, item_ids):
    item_id = item_ids[3]
    res = client.get(f"/items/{item_id}")
    assert res.status_code == 200, res.text
    rec = small_retriever.item(item_id)
    body = res.json()
    assert body["id"] == item_id and body["caption"] == rec["caption"]
    assert body["metadata"] == {k: v for k, v in rec.items() if k not in ("id", "caption")}
    assert body["thumbnail"] == f"/items/{item_id}/image"

    img = client.get(f"/items/{item_id}/image")
    assert img.status_code == 200
    assert img.headers["content-type"] == "image/png"
    assert img.headers["x-content-type-options"] == "nosniff"
    assert "max-age" in img.headers["cache-control"]
    assert img.content == small_retriever.thumbnail(item_id)


def test_unknown_item_is_404_json(client):
    _assert_error(client.get("/items/NOT-AN-EMOJI"), 404, "not_found", "NOT-AN-EMOJI")
    _assert_error(client.get("/items/NOT-AN-EMOJI/image"), 404, "not_found", "unknown item")


TRAVERSAL_IDS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5c..%5cwindows%5cwin.ini",
    "....//....//etc/passwd",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "%2e%2e",
    "thumbnails.parquet",
    "manifest.json",
    "..%2Fmanifest.json",
    "%00",
]


@pytest.mark.parametrize("raw", TRAVERSAL_IDS)
@pytest.mark.parametrize("suffix", ["", "/image"])
def test_traversal_ids_are_plain_unknown_keys(client, raw, suffix):
    """Ids are looked up in the index's tables only: no file is ever opened, whatever the id."""
    res = client.get(f"/items/{raw}{suffix}")
    _assert_error(res, 404, "not_found")
    assert b"root:" not in res.content and b"encoders" not in res.content


# -- service endpoints ----------------------------------------------------------------------------------


def test_health(client):
    res = client.get("/health")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "generation": 1, "counts": {"image": 160, "text": 320}}


def test_info(client, small_retriever):
    from pipeline.data import source_attribution

    notice = str(source_attribution("openmoji"))
    res = client.get("/info")
    body = res.json()
    manifest = json.loads(small_retriever.manifest.to_json())
    assert body["manifest"] == {  # what a client needs; the build config (local paths) stays on the server
        "encoders": {"text": {"spec": "minilm", "dim": 384}, "image": {"spec": "efficientnet-lite0", "dim": 1280}},
        "anchors": {"count": manifest["anchors"]["count"]},
        "projector": manifest["projector"],
        "faiss": {"factory": "Flat", "metric": "inner_product"},
        "package_version": manifest["package_version"],
    }
    assert "config" not in res.text and manifest["config"]["data"]["cache_dir"] not in res.text
    assert body["languages"] == ["en", "es"] and body["caption_languages"] == ["en", "es"]
    assert body["counts"] == {"image": 160, "text": 320}
    assert body["limits"] == Limits().to_dict()
    assert body["attribution"]["text"] == ATTRIBUTION
    assert notice.startswith(body["attribution"]["text"])
    assert body["attribution"]["license_url"] in notice
    assert body["version"]


def test_docs_and_openapi(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()  # the docs must work offline
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert {"/items/{item_id}", "/items/{item_id}/image", "/health", "/info"} <= set(spec["paths"])


def test_page_and_static_files(client):
    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in res.headers["content-security-policy"]
    html = res.text
    assert 'aria-live="polite"' in html and '<label for="q"' in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no CDN
    for name, ctype in [("app.js", "javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")]:
        res = client.get(f"/static/{name}")
        assert res.status_code == 200 and ctype in res.headers["content-type"], name
    _assert_error(client.get("/static/nope.js"), 404)
    _assert_error(client.get("/static/../app.py"), 404)


def test_static_files_ship_as_package_data():
    root = resources.files("pipeline.serve").joinpath("static")
    for name in ("index.html", "app.js", "app.css", "favicon.svg"):
        assert root.joinpath(name).is_file(), name


def test_import_pipeline_does_not_import_fastapi():
    code = "import sys, pipeline; assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- limits and errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 101, 10_000])
def test_k_out_of_range_is_422(client, k):
    _assert_error(client.post("/search", json={"text": "cat", "k": k}), 422, "invalid_request", "k must be")


@pytest.mark.parametrize("k", ["ten", 2.5, None])
def test_k_not_an_integer_is_422(client, k):
    _assert_error(client.post("/search", json={"text": "cat", "k": k}), 422, "invalid_request", "k")


def test_max_k_is_allowed(client):
    res = client.post("/search", json={"text": "cat", "k": 100})
    assert res.status_code == 200 and len(res.json()["hits"]) == 100


def test_text_too_long_or_empty_is_422(client):
    _assert_error(client.post("/search", json={"text": "a" * 1001}), 422, "invalid_request", "limit is 1000")
    assert client.post("/search", json={"text": "a" * 1000, "k": 1}).status_code == 200
    for text in ["", "   ", "\n\t"]:
        _assert_error(client.post("/search", json={"text": text}), 422, "invalid_request", "empty")
    _assert_error(client.post("/search", json={"k": 3}), 422, "invalid_request", "give a text query")
    _assert_error(client.post("/search", json={"text": 5}), 422, "invalid_request", "text")


def test_bad_fields_are_422(client, png):
    cases: list[tuple[dict, str]] = [
        ({"text": "cat", "lang": "xx"}, "unknown lang"),
        ({"text": "cat", "target": "video"}, "target"),
        ({"text": "cat", "result_lang": "es"}, "needs target 'text'"),
        ({"text": "cat", "target": "text", "result_lang": "xx"}, "unknown result_lang"),
        ({"text": "cat", "colour": "red"}, "colour"),
    ]
    for payload, detail in cases:
        _assert_error(client.post("/search", json=payload), 422, "invalid_request", detail)
    _assert_error(client.post("/search", json=["cat"]), 422, "invalid_request", "object")
    _assert_error(client.post("/search", json={"image": "aGk="}), 422, "invalid_request", "multipart")
    files = {"image": ("q.png", png, "image/png")}
    _assert_error(client.post("/search", files=files, data={"lang": "en"}), 422, detail_has="lang")
    _assert_error(client.post("/search", files=files, data={"text": "cat"}), 422, detail_has="not both")
    # an image field without a filename is read as the image's bytes (test_api_regressions.py); these are none
    _assert_error(client.post("/search", data={"image": "not a file"}), 400, "bad_request", "cannot read the upload")


def test_bad_body_and_content_type(client):
    _assert_error(client.post("/search", content=b"{nope", headers={"content-type": "application/json"}), 400,
                  "bad_request", "not valid JSON")
    _assert_error(client.post("/search", content=b"cat", headers={"content-type": "text/plain"}), 415,
                  "unsupported_media_type")
    _assert_error(client.post("/search"), 415, "unsupported_media_type")
    _assert_error(client.get("/search"), 405, "method_not_allowed")


def test_non_image_upload_is_415(client):
    res = client.post("/search", files={"image": ("notes.txt", b"just some text", "text/plain")})
    _assert_error(res, 415, "unsupported_media_type", "text/plain")


def test_bad_image_bytes_are_400(client, png):
    res = client.post("/search", files={"image": ("q.png", b"this is not a png", "image/png")})
    _assert_error(res, 400, "bad_request", "cannot read the upload as an image")
    res = client.post("/search", files={"image": ("q.png", png[: len(png) // 2], "image/png")})
    _assert_error(res, 400, "bad_request", "cannot decode")
    _assert_error(client.post("/search", files={"image": ("q.png", b"", "image/png")}), 400, "bad_request", "empty")


def test_upload_too_large_is_413(client):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (Limits().max_upload_bytes + 1)
    res = client.post("/search", files={"image": ("big.png", big, "image/png")})
    _assert_error(res, 413, "content_too_large")


def test_upload_limits_are_configurable(small_retriever, png):
    limits = Limits(max_upload_bytes=len(png) - 1, max_k=3, max_text_chars=5, max_image_pixels=10_000)
    with TestClient(create_app(small_retriever, limits=limits)) as c:
        # the file alone is over the upload limit but the body is within the form allowance: caught after reading
        _assert_error(c.post("/search", files={"image": ("q.png", png, "image/png")}), 413, "content_too_large",
                      "uploaded image exceeds")
        _assert_error(c.post("/search", json={"text": "cat", "k": 4}), 422, detail_has="between 1 and 3")
        _assert_error(c.post("/search", json={"text": "kitten"}), 422, detail_has="limit is 5")
        assert c.get("/info").json()["limits"]["max_k"] == 3


def test_chunked_body_over_the_limit_is_413(small_retriever):
    """A body without Content-Length is counted as it streams in."""
    limits = Limits(max_upload_bytes=1000, form_overhead_bytes=1000)

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b'{"text": "' + b"a" * 500

    with TestClient(create_app(small_retriever, limits=limits)) as c:
        res = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
        _assert_error(res, 413, "content_too_large")
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize("size", [(7000, 7000), (20_000, 20_000)])
def test_too_many_pixels_is_413_before_decoding(client, size):
    """A small file that claims a huge image (a decompression bomb) is refused from its header."""
    data = png_header(*size)
    assert len(data) < 200
    res = client.post("/search", files={"image": ("bomb.png", data, "image/png")})
    _assert_error(res, 413, "content_too_large")


def test_image_pixel_limit_from_a_real_image(small_retriever, png):
    from PIL import Image

    w, h = Image.open(io.BytesIO(png)).size
    with TestClient(create_app(small_retriever, limits=Limits(max_image_pixels=w * h - 1))) as c:
        _assert_error(c.post("/search", files={"image": ("q.png", png, "image/png")}), 413, detail_has="pixels")
    with TestClient(create_app(small_retriever, limits=Limits(max_image_pixels=w * h))) as c:
        assert c.post("/search", files={"image": ("q.png", png, "image/png")}).status_code == 200


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_k"):
        Limits(max_k=0)
    assert Limits().max_body_bytes > Limits().max_upload_bytes


# -- concurrency ----------------------------------------------------------------------------------------


def test_parallel_requests_match_serial(client, small_retriever, png):
    """16 requests (text and image queries, both encoders) from 8 threads give the serial answers."""
    texts = ["a red apple", "dog", "sun", "heart", "car", "pizza", "smiling face", "rain", "flag", "tree", "cat", "ball"]
    requests: list[dict[str, Any]] = [{"json": {"text": t, "k": 5}} for t in texts]
    requests += [{"files": {"image": ("q.png", png, "image/png")}, "data": {"k": "5"}} for _ in range(2)]
    requests += [{"json": {"text": t, "k": 5, "target": "text", "result_lang": "es"}} for t in texts[:2]]
    assert len(requests) == 16

    def run(kwargs: dict[str, Any]) -> list[tuple[str, float]]:
        res = client.post("/search", **kwargs)
        assert res.status_code == 200, res.text
        return [(h["id"], h["score"]) for h in res.json()["hits"]]

    serial = [run(r) for r in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(run, requests))
    for s, p in zip(serial, parallel):
        assert [i for i, _ in s] == [i for i, _ in p]
        assert [x for _, x in s] == pytest.approx([x for _, x in p], abs=1e-5)


# -- the CLI entry point --------------------------------------------------------------------------------


def test_cli_serve_loads_warms_and_runs_uvicorn(small_index, monkeypatch):
    """``relspace serve`` reaches uvicorn with a working app; uvicorn.run is replaced so nothing listens."""
    import uvicorn

    from pipeline.cli import main

    seen: dict[str, Any] = {}

    def fake_run(app, **kwargs: Any) -> None:
        seen.update(kwargs)
        with TestClient(app) as c:
            seen["health"] = c.get("/health").json()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    # main() configures logging as a CLI should; put every logger's level back for the tests that follow.
    loggers = [logging.getLogger(), *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    levels, root_handlers = [(lg, lg.level) for lg in loggers], list(logging.getLogger().handlers)
    try:
        assert main(["-q", "serve", str(small_index), "--port", "8123"]) == 0
    finally:
        for lg, level in levels:
            lg.setLevel(level)
        logging.getLogger().handlers[:] = root_handlers
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["workers"] == 1
    assert seen["log_level"] == "warning"  # -q quiets the access log too
    assert seen["health"]["status"] == "ok"


# -- one rule on every entry point ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"text": "cat", "k": 10**9}, "k must be an integer between 1 and 100, got 1000000000"),
        ({"text": "cat", "k": 0}, "k must be an integer between 1 and 100, got 0"),
        ({"text": "a" * 1_000_000}, "text has 1000000 characters; the limit is 1000"),
    ],
    ids=["k-huge", "k-zero", "text-1MB"],
)
def test_query_rules_are_identical_on_http_api_and_cli(client, small_retriever, small_index, capsys, fields,
                                                        message):
    from pipeline.cli import main

    detail = _assert_error(client.post("/search", json=fields), 422, "invalid_request")["detail"]
    with pytest.raises(ValueError) as e:
        small_retriever.search(**fields)
    args = ["--text", fields["text"], *(["-k", str(fields["k"])] if "k" in fields else [])]
    assert main(["-q", "search", str(small_index), *args]) == 2
    cli = capsys.readouterr().err.strip()
    assert detail == str(e.value) == cli.removeprefix("relspace: error: ")
    assert message in detail


@pytest.mark.parametrize("k", [True, False])
def test_k_bool_is_422(client, small_retriever, k):
    """JSON true is not a k, as ``Retriever.search(k=True)`` is refused."""
    _assert_error(client.post("/search", json={"text": "cat", "k": k}), 422, "invalid_request", "k")
    _assert_error(client.post("/search", data={"text": "cat", "k": str(k).lower()}), 422, "invalid_request", "k")
    with pytest.raises(ValueError, match="k must be"):
        small_retriever.search(text="cat", k=k)


def test_huge_image_detail_is_ours_not_pils(client):
    from ..bomb import HUGE_MESSAGE

    res = client.post("/search", files={"image": ("bomb.png", png_header(20_000, 20_000), "image/png")})
    detail = _assert_error(res, 413, "content_too_large", HUGE_MESSAGE)["detail"]
    assert detail.startswith("the query image is too large") and "bomb" not in detail.lower()


def test_upload_errors_name_the_query_image(client, png):
    res = client.post("/search", files={"image": ("q.png", png[: len(png) // 2], "image/png")})
    detail = _assert_error(res, 400, "bad_request", "the query image")["detail"]
    assert "item '" not in detail and "#0" not in detail


def test_caption_hits_carry_metadata(client, small_retriever, png):
    res = client.post("/search", files={"image": ("q.png", png, "image/png")}, data={"k": "6"})
    assert res.status_code == 200, res.text
    for h in res.json()["hits"]:
        item = small_retriever.item(h["id"])
        assert h["modality"] == "text" and h["metadata"] == {k: item[k] for k in ("char", "group", "subgroup")}


def test_read_query_alone():
    """``read_query`` is a plain module-level coroutine: it runs on a bare Starlette request."""
    import asyncio

    from starlette.requests import Request

    from pipeline.serve.errors import ApiError
    from pipeline.serve.routes import read_query

    def request(body: bytes, ctype: bytes) -> Request:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/search", "query_string": b"",
                 "headers": [(b"content-type", ctype)]}
        return Request(scope, receive)

    fields, data = asyncio.run(read_query(request(b'{"text": "cat", "k": 3}', b"application/json"), Limits()))
    assert (fields.text, fields.k, data) == ("cat", 3, None)
    fields, data = asyncio.run(read_query(request(b"text=cat&k=4", b"application/x-www-form-urlencoded"), Limits()))
    assert (fields.text, fields.k, data) == ("cat", 4, None)
    with pytest.raises(ApiError) as e:
        asyncio.run(read_query(request(b"cat", b"text/plain"), Limits()))
    assert e.value.status == 415


# -- /info: what a client needs, nothing from the server's disk -------------------------------------------


@pytest.mark.parametrize(
    "spec, public",
    [
        ("minilm", "minilm"),
        ("st:sentence-transformers/all-MiniLM-L6-v2", "st:sentence-transformers/all-MiniLM-L6-v2"),
        ("st:/home/ana/models/my-minilm", "st:my-minilm"),
        ("st:~/models/my-minilm/", "st:my-minilm"),
        ("st:./models/mini", "st:mini"),
        ("timm:efficientnet_b0@/srv/ckpt/b0.pth", "timm:efficientnet_b0@b0.pth"),
        ("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32/laion2b_s34b_b79k"),
        ("open_clip:ViT-B-32//srv/ckpt/clip.pt", "open_clip:ViT-B-32/clip.pt"),
        ("onnx:/opt/m/model.onnx@/opt/m/tok", "onnx:model.onnx@tok"),
        ("st:C:\\Users\\ana\\mini", "st:mini"),
    ],
)
def test_public_spec_drops_local_directories(spec, public):
    from pipeline.serve.public_info import public_spec

    assert public_spec(spec) == public


def _with_manifest(retriever, **changes: Any):
    """A shallow copy of the shared retriever with an edited manifest (the shared one stays untouched)."""
    import copy

    other = copy.copy(retriever)
    other.manifest = copy.deepcopy(retriever.manifest)
    for key, value in changes.items():
        setattr(other.manifest, key, value)
    return other


def test_info_hides_local_paths(small_retriever):
    encoders = {
        TEXT: replace(small_retriever.manifest.encoders[TEXT], spec="st:/home/ana/models/my-minilm"),
        IMAGE: replace(small_retriever.manifest.encoders[IMAGE], spec="timm:tf_efficientnet_lite0@/srv/w/b0.pth"),
    }
    config = replace(small_retriever.manifest.config, data=DataConfig(source="folder", path="/home/ana/photos"))
    with TestClient(create_app(_with_manifest(small_retriever, encoders=encoders, config=config))) as c:
        res = c.get("/info")
    assert res.status_code == 200
    assert "/home/ana" not in res.text and "/srv" not in res.text
    body = res.json()
    assert body["manifest"]["encoders"] == {"text": {"spec": "st:my-minilm", "dim": 384},
                                            "image": {"spec": "timm:tf_efficientnet_lite0@b0.pth", "dim": 1280}}
    assert body["attribution"] is None  # a folder of the user's own images needs no notice


def test_info_attribution_comes_from_the_source_registry(small_retriever):
    """Any registered source with a notice gets it shown; the server names no source itself."""
    from pipeline.data import Attribution, register_source

    notice = Attribution("Photos by Test Lab. License: CC BY 4.0", "Test Lab", "https://example.org/", "CC BY 4.0",
                         "https://creativecommons.org/licenses/by/4.0/")
    register_source("test-serve-credited", attribution=lambda: notice)(lambda cfg: None)
    config = replace(small_retriever.manifest.config, data=DataConfig(source="test-serve-credited"))
    with TestClient(create_app(_with_manifest(small_retriever, config=config))) as c:
        assert c.get("/info").json()["attribution"] == notice.to_dict()
    root = resources.files("pipeline.serve")
    for path in [*root.glob("*.py"), root / "static" / "app.js"]:
        assert "openmoji" not in path.read_text().lower(), path.name
