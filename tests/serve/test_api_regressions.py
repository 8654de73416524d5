"""Requests Schemathesis found where /openapi.json and the server disagreed, kept as plain tests.

Each body is sent as found, and the published schema must agree with the server: a body it allows is
answered with 200, a body it refuses is refused with a 4xx.
"""

from __future__ import annotations

from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
jsonschema = pytest.importorskip("jsonschema")
from fastapi.testclient import TestClient  # noqa: E402


def _body_schema(client: TestClient, media_type: str) -> Any:
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/search"]["post"]["requestBody"]["content"][media_type]["schema"]
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("body", "ok"), [
    # found: no text and no image was schema-valid (text was optional), refused with 422
    ({"k": 10, "lang": None, "result_lang": "", "target": None, "text": None}, False),
    ({"text": "a red apple"}, True),
    ({"text": "a red apple", "k": 100, "lang": "es", "target": "text", "result_lang": "es"}, True),
    ({"text": "a red apple", "lang": None, "target": None, "result_lang": None}, True),
    ({"text": "a red apple", "k": 0}, False),  # k was any integer in the schema; the server wants 1..max_k
    ({"text": "a red apple", "k": 101}, False),
    ({"text": "a red apple", "lang": "xx"}, False),  # a language the index lacks
    ({"text": "a red apple", "result_lang": "es"}, False),  # result_lang needs target text
    ({"text": "   "}, False),
    ({"text": "x" * 1001}, False),
    ({"text": "a red apple", "extra": 1}, False),
    ({"text": " " * 995 + "kitten"}, False),  # found: maxLength counts the text as sent, the server counted it stripped
    ({"text": "\u200b\u200c"}, False),  # zero-width only: nothing to search for
    ({"text": "\u200b kitten"}, True),
])
def test_search_json_schema_and_server_agree(client, body: dict, ok: bool) -> None:
    assert _body_schema(client, "application/json").is_valid(body) is ok
    res = client.post("/search", json=body)
    assert (res.status_code == 200) is ok, res.text
    assert ok or res.status_code == 422


def test_search_form_with_unknown_fields_is_refused_by_schema_and_server(client, small_retriever) -> None:
    """Found: a multipart body with extra fields was schema-valid; the server refuses it (400 above 8 fields)."""
    png = small_retriever.thumbnail(small_retriever.items["image"].column("id")[0].as_py())
    extra = {f"f{i}": "5.0" for i in range(9)}
    form = _body_schema(client, "multipart/form-data")
    assert not form.is_valid({"image": "<binary>", **extra}) and not form.is_valid({"image": "<binary>", "f0": "5.0"})
    res = client.post("/search", files={"image": ("q.png", png), **{k: (None, v) for k, v in extra.items()}})
    assert res.status_code == 400 and "Too many fields" in res.json()["detail"], res.text
    res = client.post("/search", files={"image": ("q.png", png), "f0": (None, "5.0")})
    assert res.status_code == 422, res.text
    assert client.post("/search", files={"image": ("q.png", png)}).status_code == 200


def test_search_form_schema_allows_what_the_server_answers(client, small_retriever) -> None:
    png = small_retriever.thumbnail(small_retriever.items["image"].column("id")[0].as_py())
    form = _body_schema(client, "multipart/form-data")
    assert form.is_valid({"image": "<binary>", "k": 3, "result_lang": "es"})
    assert client.post("/search", data={"k": "3", "result_lang": "es"}, files={"image": ("q.png", png)}).status_code == 200
    assert not form.is_valid({"image": "<binary>", "target": "image", "result_lang": "es"})
    res = client.post("/search", data={"target": "image", "result_lang": "es"}, files={"image": ("q.png", png)})
    assert res.status_code == 422
    assert not form.is_valid({"image": "<binary>", "lang": "en"})  # an image query has no language
    assert client.post("/search", data={"lang": "en"}, files={"image": ("q.png", png)}).status_code == 422


def test_empty_form_fields_are_not_set_in_schema_and_server(client) -> None:
    """Found: an empty result_lang form field was schema-invalid, but the server answers it (empty = not set)."""
    fields = {"result_lang": "", "target": "text", "text": "0", "k": "1", "lang": "en"}
    assert _body_schema(client, "multipart/form-data").is_valid({**fields, "k": 1})
    res = client.post("/search", files={k: (None, v) for k, v in fields.items()})
    assert res.status_code == 200, res.text
    assert res.json()["query"]["result_lang"] is None


def test_an_image_sent_as_a_plain_field_is_an_image(client, small_retriever) -> None:
    """Found: an ``image`` part without a filename (schema-valid: a binary string) got 422. Starlette decodes
    such a part as text; its bytes are recovered exactly, so it is searched like a file, or refused as one."""
    png = small_retriever.thumbnail(small_retriever.items["image"].column("id")[0].as_py())
    as_file = client.post("/search", files={"image": ("q.png", png)})
    as_field = client.post("/search", files={"image": (None, png)})
    assert as_field.status_code == as_file.status_code == 200, as_field.text
    assert [h["id"] for h in as_field.json()["hits"]] == [h["id"] for h in as_file.json()["hits"]]
    res = client.post("/search", files={"image": (None, "content-length")})
    assert res.status_code == 400 and "cannot read the upload as an image" in res.json()["detail"], res.text


@pytest.mark.parametrize("k", ["+5", " 5", "5.0", "1_0", "0x5", "٥"])
def test_form_k_is_digits_in_schema_and_server(client, k: str) -> None:
    """Found: a form k that breaks the schema's integer ("1_0", "5.0", "+5") was read by Pydantic and got 200."""
    assert not _body_schema(client, "multipart/form-data").is_valid({"text": "cat", "k": k})
    res = client.post("/search", files={"text": (None, "cat"), "k": (None, k)})
    assert res.status_code == 422, res.text
    assert client.post("/search", files={"text": (None, "cat"), "k": (None, "5")}).status_code == 200


def test_a_damaged_index_is_a_503_that_says_so() -> None:
    """An impossible score (tests/store/test_verify.py) raises IndexCorruptError: never a hit, never a bare 500."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from pipeline.ann.faiss_index import IndexCorruptError
    from pipeline.serve.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise IndexCorruptError("/x/image.faiss is damaged: vector #5 scored 1.03e38")

    with TestClient(app) as c:
        res = c.get("/boom")
    assert res.status_code == 503 and "vector #5" in res.json()["detail"] and "relspace verify" in res.json()["detail"]
