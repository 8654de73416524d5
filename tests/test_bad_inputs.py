"""Bad input everywhere: data, config, index files, the Python API and HTTP.

Each case asserts the one-line message (it names the problem and the item or file) and that nothing already
stored was lost: an earlier index is byte-identical afterwards, still loads and searches, and no temporary
directory is left behind.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import IndexMismatchError, Retriever
from pipeline.ann.faiss_index import IndexCorruptError
from pipeline.config import ConfigError, load_config
from pipeline.data.images import ImageLoadError, load_image, probe_image
from pipeline.query import QueryError
from pipeline.space.anchors import AnchorSet
from pipeline.store.layout import lock_file

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown"]


def make_folder(root: Path, rows: list[dict[str, str]] | None = None) -> Path:
    """Ten solid-colour images with captions; ``rows`` replace or extend the caption file."""
    root.mkdir(parents=True, exist_ok=True)
    base = []
    for i, c in enumerate(COLOURS):
        Image.new("RGB", (48, 48), c).save(root / f"{c}.png")
        base.append({"id": f"c{i}", "image": f"{c}.png", "caption": f"a {c} square"})
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image", "caption"])
        w.writeheader()
        w.writerows(base + (rows or []))
    return root


def folder_config(root: Path, cache: Path):
    return load_config(
        {
            "name": "folder",
            # on_error: fail, so that each bad row below stops the build (the default, skip, leaves it out)
            "data": {"source": "folder", "path": str(root), "captions": "captions.csv", "cache_dir": str(cache),
                     "on_error": "fail"},
            "anchors": {"count": 5},
            "projector": {"topk": 3},
            "index": {"thumbnails": 32},
        }
    )


def test_folder_source_builds_and_searches(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    r = Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert r.manifest.counts.image == 10
    hits = r.search(image=root / "red.png", k=10, target="image")
    assert hits[0].id == "c0" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.id for h in hits} == {f"c{i}" for i in range(10)}


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"id": "bad", "image": "corrupt.png", "caption": "broken"}, r"item 'bad'.*cannot decode"),
        ({"id": "gone", "image": "missing.png", "caption": "missing"}, r"item 'gone'.*not found"),
        ({"id": "mute", "image": "red.png", "caption": ""}, r"item 'mute'.*empty caption"),
        ({"id": "c1", "image": "red.png", "caption": "dup"}, r"duplicate id 'c1'"),
    ],
    ids=["corrupt", "missing", "empty-caption", "duplicate-id"],
)
def test_bad_item_fails_build_and_keeps_old_index(tmp_path: Path, extra: dict, match: str) -> None:
    root = make_folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    out = tmp_path / "idx"
    good = Retriever.build(folder_config(root, cache), out)
    before = [h.id for h in good.search(text="a red square", k=5)]
    manifest = (out / "manifest.json").read_bytes()

    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    make_folder(root, [extra])
    with pytest.raises(ValueError, match=match):
        Retriever.build(folder_config(root, cache), out)

    assert (out / "manifest.json").read_bytes() == manifest
    again = Retriever.load(out)
    assert [h.id for h in again.search(text="a red square", k=5)] == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx") and p != lock_file(out)]  # no temp dirs


def _cmyk(p: Path) -> None:
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(p, format="JPEG")


def _palette_transparent(p: Path) -> None:
    img = Image.new("P", (40, 40), 1)
    img.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.save(p, transparency=0)


def _sixteen_bit(p: Path) -> None:
    arr = (np.linspace(0, 65535, 40 * 40).reshape(40, 40)).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    img.save(p)


def _rgba(p: Path) -> None:
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(p)


@pytest.mark.parametrize("writer", [_cmyk, _palette_transparent, _sixteen_bit, _rgba], ids=lambda f: f.__name__)
def test_odd_modes_become_rgb(tmp_path: Path, writer) -> None:
    p = tmp_path / "img.jpg" if writer is _cmyk else tmp_path / "img.png"
    writer(p)
    img = load_image(p, item="x")
    assert img.mode == "RGB" and img.size == (40, 40)
    arr = np.asarray(img)
    if writer is _sixteen_bit:
        assert arr.min() == 0 and arr.max() == 255  # rescaled, not clipped to white
    if writer is _rgba:
        assert (arr == 255).all()  # fully transparent pixels composite onto white


def test_odd_modes_build(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    _cmyk(root / "cmyk.jpg")
    _palette_transparent(root / "pal.png")
    _sixteen_bit(root / "deep.png")
    make_folder(root, [{"id": n, "image": f, "caption": f"odd {n}"}
                       for n, f in (("cmyk", "cmyk.jpg"), ("pal", "pal.png"), ("deep", "deep.png"))])
    r = Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert r.manifest.counts.image == 13
    assert r.search(image=root / "deep.png", k=1, target="image")[0].id == "deep"


def test_load_image_errors_name_item(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="item 'z'.*not found"):
        load_image(tmp_path / "nope.png", item="z")
    with pytest.raises(ImageLoadError, match="item 'q'.*cannot decode"):
        load_image(b"garbage", item="q")


def test_failed_first_build_leaves_nothing(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", [{"id": "gone", "image": "missing.png", "caption": "x"}])
    with pytest.raises(ValueError, match="gone"):
        Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    shutil.rmtree(root)


# -- helpers shared by the cases below ----------------------------------------------------------------------


def digest(d: Path) -> dict[str, str]:
    """A sha256 per file under ``d``: taken before a failed operation and compared after it."""
    import hashlib

    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def assert_intact(d: Path, before: dict[str, str]) -> None:
    """``d`` holds exactly the bytes it held before, and no temporary sibling was left behind (the writers'
    lock file stays: it outlives every publish)."""
    assert digest(d) == before
    assert not [p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.") and p != lock_file(d)]


def one_line(e: pytest.ExceptionInfo) -> str:
    """The message is one line of our own, not a library's multi-line or C++ text."""
    msg = str(e.value)
    assert "\n" not in msg and "Error in " not in msg and "Traceback" not in msg, msg
    return msg


def _same_search(index_dir: Path, reference: Retriever, text: str = "a red apple") -> None:
    """``index_dir`` loads and answers like ``reference`` (vectors from its already loaded encoder)."""
    r = Retriever.load(index_dir)
    xq = reference.embed(text=text)
    assert [h.id for h in r.search_vectors(xq, 5)[0]] == [h.id for h in reference.search_vectors(xq, 5)[0]]


# -- damaged index files: Retriever.load names the file; the original index is untouched ---------------------


@pytest.fixture(scope="module")
def pristine(small_index: Path) -> dict[str, str]:
    return digest(small_index)


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return damage


def _garbage(name: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        (d / name).write_bytes(b"PAR1" + b"\x00not a table" * 8 + b"PAR1")  # parquet's magic at both ends
    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        data = json.loads((d / "manifest.json").read_text())
        edit(data)
        (d / "manifest.json").write_text(json.dumps(data))
    return damage


DAMAGED = [
    # A file of another size than the manifest published is refused before it is read (store/verify.check_sizes).
    ("faiss-truncated", _truncate("image.faiss"), IndexCorruptError,
     r"\S+idx is damaged: image\.faiss: \d+ bytes, but \d+ were published"),
    ("faiss-missing", _remove("text.faiss"), FileNotFoundError, r"\S+text\.faiss is missing; the index is incomplete"),
    ("items-corrupt", _garbage("image_items.parquet"), IndexCorruptError,
     r"\S+idx is damaged: image_items\.parquet: \d+ bytes, but \d+ were published"),
    ("items-truncated", _truncate("text_items.parquet"), IndexCorruptError,
     r"\S+idx is damaged: text_items\.parquet: \d+ bytes, but \d+ were published"),
    ("projector-truncated", _truncate("projector.safetensors"), IndexCorruptError,
     r"\S+idx is damaged: projector\.safetensors: \d+ bytes, but \d+ were published"),
    ("projector-missing", _remove("projector.safetensors"), FileNotFoundError,
     r"\S+projector\.safetensors is missing; the index is incomplete"),
    ("manifest-invalid-json", lambda d: (d / "manifest.json").write_text('{"encoders": '), ValueError,
     r"manifest\.json is not valid JSON"),
    ("manifest-missing-field", _manifest(lambda m: m.pop("faiss")), ValueError,
     r"manifest\.json lacks the required field 'faiss'"),
    ("manifest-wrong-dim", _manifest(lambda m: m["encoders"]["image"].update(dim=7)), ValueError,
     r"projector 'image' reads dim \d+, but its encoder 'efficientnet-lite0' has dim 7"),
    ("manifest-counts", _manifest(lambda m: m["counts"].update(image=m["counts"]["image"] + 1)), ValueError,
     r"manifest\.json records \d+ image vectors, but image\.faiss holds \d+"),
    ("manifest-format-version", _manifest(lambda m: m.update(format_version=99)), IndexMismatchError,
     r"manifest\.json: index format 99 is newer than this relspace reads .*; upgrade relspace"),
]


@pytest.mark.parametrize("damage, exc, match", [c[1:] for c in DAMAGED], ids=[c[0] for c in DAMAGED])
def test_damaged_index_file_is_named(tmp_path: Path, small_index: Path, pristine: dict, small_retriever,
                                     damage, exc, match: str) -> None:
    bad = tmp_path / "idx"
    shutil.copytree(small_index, bad)
    damage(bad)
    damaged = digest(bad)
    with pytest.raises(exc, match=match) as e:
        Retriever.load(bad)
    one_line(e)
    assert_intact(bad, damaged)  # loading only reads: the damaged copy is as it was, for a post-mortem
    assert_intact(small_index, pristine)
    _same_search(small_index, small_retriever)


def test_corrupt_anchor_file_is_named(tmp_path: Path, small_index: Path, pristine: dict, small_retriever) -> None:
    bad = tmp_path / "anchors.parquet"
    _garbage("anchors.parquet")(tmp_path)
    with pytest.raises(ValueError, match=r"anchor file \S+anchors\.parquet is damaged") as e:
        AnchorSet.load(bad)
    one_line(e)
    with pytest.raises(ValueError, match=r"anchor file \S+anchors\.parquet is damaged"):
        Retriever.load(small_index, anchors=bad)
    assert_intact(small_index, pristine)


def test_reanchor_on_corrupt_anchor_file_keeps_index(tmp_path: Path, small_index: Path, small_retriever) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(small_index, idx)
    path = idx / "anchors.parquet"
    path.write_bytes(bytes(path.stat().st_size))  # damaged but of its published size: a load does not read it
    before = digest(idx)
    r = Retriever.load(idx)  # the anchor file is read only by re-anchoring
    for kwargs in ({"in_place": True}, {"out": tmp_path / "swapped"}):
        with pytest.raises(ValueError, match=r"anchor file \S+idx/anchors\.parquet is damaged") as e:
            r.swap_encoder("text", "minilm-l3", **kwargs)
        one_line(e)
    assert_intact(idx, before)
    assert not (tmp_path / "swapped").exists()
    _same_search(idx, small_retriever)


# -- images: odd files decode as they are seen, unreadable ones are refused by name --------------------------


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    # Stored landscape, red left and blue right, tagged "rotate 90° clockwise" (orientation 6): a phone photo.
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "photo.jpg", exif=exif)
    arr = np.asarray(load_image(tmp_path / "photo.jpg", item="photo")).astype(int)
    assert arr.shape == (40, 20, 3)  # portrait, as displayed
    assert arr[2, 10, 0] > 200 and arr[2, 10, 2] < 60  # the top is red
    assert arr[-3, 10, 2] > 200 and arr[-3, 10, 0] < 60  # the bottom is blue


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    probe_image(tmp_path / "anim.gif", item="anim")
    img = load_image(tmp_path / "anim.gif", item="anim")
    assert img.mode == "RGB" and img.size == (30, 30)
    assert tuple(np.asarray(img)[15, 15]) == (255, 0, 0)


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16"/></svg>\n'
UNREADABLE = [  # (file name, contents, message fragment after the item and file)
    ("drawing.svg", SVG.encode(), r"SVG drawing, not a raster image"),
    ("vector.png", SVG.encode(), r"SVG drawing, not a raster image"),
    ("notes.png", b"shopping list: apples, pears\n", r"cannot decode image: not a format Pillow recognises"),
    ("empty.png", b"", r"the file is empty \(0 bytes\)"),
]


@pytest.mark.parametrize("name, data, reason", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_image_fails_build_by_name(tmp_path: Path, folder_index, name: str, data: bytes,
                                              reason: str) -> None:
    _, good, reference = folder_index
    root = make_folder(tmp_path / "imgs", [{"id": "bad", "image": name, "caption": "unreadable"}])
    (root / name).write_bytes(data)
    out = tmp_path / "idx"
    shutil.copytree(good, out)
    before = digest(out)
    with pytest.raises(ValueError, match=rf"item 'bad' \(\S+{name}\): .*{reason}") as e:
        Retriever.build(folder_config(root, tmp_path / "cache"), out)
    assert "data.on_error is 'fail'" in one_line(e)
    assert_intact(out, before)
    _same_search(out, reference, "a red square")


def test_unreadable_images_skipped_and_listed(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rows = [{"id": f"bad{i}", "image": name, "caption": "unreadable"} for i, (name, _, _) in enumerate(UNREADABLE)]
    root = make_folder(tmp_path / "imgs", rows)
    for name, data, _ in UNREADABLE:
        (root / name).write_bytes(data)
    cfg = load_config(folder_config(root, tmp_path / "cache"), **{"data.on_error": "skip"})
    r = Retriever.build(cfg, tmp_path / "idx")
    assert r.manifest.counts.image == 10 and r.manifest.counts.skipped == len(UNREADABLE)
    skipped = pq.read_table(tmp_path / "idx" / "skipped.parquet").to_pylist()
    assert [s["id"] for s in skipped] == [row["id"] for row in rows]
    for s, (name, _, reason) in zip(skipped, UNREADABLE):
        assert re.search(rf"item '{s['id']}' \(\S+{name}\): .*{reason}", s["reason"]), s["reason"]
    assert {h.id for h in r.search(text="a red square", k=20)} == {f"c{i}" for i in range(10)}


# -- config: refused by key and file, or by the missing file, before an earlier index is touched ------------


@pytest.fixture(scope="module")
def folder_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Retriever]:
    """A good folder index (read-only: copy it), its image folder, and its loaded Retriever."""
    base = tmp_path_factory.mktemp("folder")
    root = make_folder(base / "imgs")
    r = Retriever.build(folder_config(root, base / "cache"), base / "idx")
    return root, base / "idx", r


CONFIG_FILES = [
    ("unknown-key", "data:\n  sauce: folder\n", r"cfg\.yaml: unknown key 'data\.sauce'; known keys at this level"),
    ("wrong-type", "anchors:\n  count: many\n", r"cfg\.yaml: 'anchors\.count' must be int, got 'many'"),
    ("bad-on-error", "data:\n  on_error: ignore\n",
     r"cfg\.yaml: 'data\.on_error' must be one of 'skip', 'fail', got 'ignore'"),
]


@pytest.mark.parametrize("text, match", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES])
def test_bad_config_file_is_named(tmp_path: Path, folder_index, text: str, match: str) -> None:
    _, good, reference = folder_index
    (tmp_path / "cfg.yaml").write_text(text)
    out = tmp_path / "idx"
    shutil.copytree(good, out)
    before = digest(out)
    with pytest.raises(ConfigError, match=match) as e:
        Retriever.build(tmp_path / "cfg.yaml", out)
    one_line(e)
    assert_intact(out, before)
    _same_search(out, reference, "a red square")


def _no_image_column(root: Path) -> dict:
    (root / "noimage.csv").write_text("id,file,caption\nc0,red.png,a red square\n")
    return {"data.captions": "noimage.csv"}


BAD_BUILDS = [
    ("missing-data-folder", lambda root: {"data.path": str(root.parent / "nowhere")},
     r"image folder not found: \S+nowhere \(data\.path\)"),
    ("missing-caption-file", lambda root: {"data.captions": "gone.csv"}, r"caption file not found: \S+imgs/gone\.csv"),
    ("no-image-column", _no_image_column, r"caption file \S+noimage\.csv has no 'image' column"),
    ("unknown-encoder", lambda root: {"text_encoder": "bogus:thing"},
     r"unknown encoder 'bogus:thing'; known schemes and aliases: .*minilm"),
    ("unknown-anchor-strategy", lambda root: {"anchors.strategy": "psychic"},
     r"unknown anchor strategy 'psychic'; known: .*random"),
]


@pytest.mark.parametrize("override, match", [c[1:] for c in BAD_BUILDS], ids=[c[0] for c in BAD_BUILDS])
def test_bad_build_config_keeps_old_index(tmp_path: Path, folder_index, override, match: str) -> None:
    _, good, reference = folder_index
    root = make_folder(tmp_path / "imgs")
    out = tmp_path / "idx"
    shutil.copytree(good, out)
    before = digest(out)
    cfg = load_config(folder_config(root, tmp_path / "cache"), **override(root))
    with pytest.raises(ValueError, match=match) as e:
        Retriever.build(cfg, out)
    one_line(e)
    assert_intact(out, before)
    _same_search(out, reference, "a red square")


# -- the Python API and HTTP: refused by name, and the index serves on as before -----------------------------


def test_load_of_a_non_index_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an index")
    before = digest(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\S+ is not a relspace index: manifest\.json is missing") as e:
        Retriever.load(tmp_path)
    one_line(e)
    assert digest(tmp_path) == before


@pytest.mark.parametrize(
    "query, exc, match",
    [
        ({"text": "a red apple", "lang": "xx"}, QueryError,
         r"unknown lang 'xx': no anchor captions in language 'xx'; this index has \['en', 'es'\]"),
        ({"image": b""}, ImageLoadError, r"the query image: cannot decode image: the file is empty \(0 bytes\)"),
        ({"image": b"\x89PNG\r\n\x1a\n" + b"cut short"}, ImageLoadError, r"the query image: cannot decode image"),
    ],
    ids=["unknown-lang", "zero-byte-image", "corrupt-image"],
)
def test_bad_query_is_named(small_retriever, small_index: Path, pristine: dict, query: dict, exc, match: str) -> None:
    with pytest.raises(exc, match=match) as e:
        small_retriever.search(**query, k=5)
    one_line(e)
    assert_intact(small_index, pristine)
    _same_search(small_index, small_retriever)


@pytest.fixture(scope="module")
def client(small_retriever):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from pipeline.serve import create_app

    with TestClient(create_app(small_retriever)) as c:
        yield c


@pytest.mark.parametrize(
    "request_kwargs, status, detail",
    [
        ({"files": {"image": ("q.png", b"\x89PNG\r\n\x1a\n" + b"not a png" * 20, "image/png")}}, 400,
         r"cannot read the upload as an image: the query image: cannot decode image"),
        ({"files": {"image": ("q.png", b"", "image/png")}}, 400, r"uploaded image is empty"),
        ({"json": {"text": "a red apple", "lang": "xx"}}, 422, r"unknown lang 'xx'"),
    ],
    ids=["corrupt-upload", "zero-byte-upload", "unknown-lang"],
)
def test_bad_http_search_is_json_error(client, small_index: Path, pristine: dict, request_kwargs: dict, status: int,
                                       detail: str) -> None:
    good = client.post("/search", json={"text": "a red apple", "k": 5}).json()["hits"]
    res = client.post("/search", **request_kwargs)
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert set(body) == {"error", "detail"} and re.search(detail, body["detail"]), body
    assert "\n" not in body["detail"]
    assert client.post("/search", json={"text": "a red apple", "k": 5}).json()["hits"] == good  # serves on
    assert_intact(small_index, pristine)
