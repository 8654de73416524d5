"""The typed manifest: JSON round trip, the format-2 fixture read as typed values, refusals that name the file.

``manifest_format2.json`` was written by the build, remove and reanchor of relspace before format 3 (a
40-item OpenMoji index, ``factory: auto``, a Spanish text encoder of its own, then ``remove`` of one item
and ``swap_encoder("text", "minilm-l3")``), so it holds every kind of record a format-2 index can.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import Config, ProjectorConfig, load_config
from pipeline.core.spaces import IMAGE, TEXT, SpaceKey
from pipeline.encoders import EncoderInfo
from pipeline.store.info import index_info
from pipeline.store.manifest import FORMAT_VERSION, MANIFEST, IndexMismatchError, Manifest
from pipeline.store.records import (
    AnchorRecord,
    AutoChoice,
    BudgetRecord,
    CandidateRow,
    Counts,
    FaissRecord,
    ReanchorEvent,
    UpdateEvent,
)

FORMAT2 = Path(__file__).with_name("manifest_format2.json")
ES = SpaceKey.text("es")


def full_manifest() -> Manifest:
    """A manifest with every record filled, optional fields both set and unset."""
    minilm = EncoderInfo(spec="minilm", modality="text", dim=384, version="st 1")
    skipped = CandidateRow(name="ivf", key="IVF64,Flat", params={}, estimated_bytes=10, peak_bytes=20, bytes=None,
                           p50_ms=None, p99_ms=None, recall_at_10=None, reason="n=80 < 10,000: exact search is fast")
    chosen = dict(name="flat", key="Flat", params={"nprobe": 8, "k_factor": 1.5}, estimated_bytes=6400,
                  peak_bytes=16000, bytes=6445, p50_ms=0.005, p99_ms=0.05, recall_at_10=1.0, build_s=0.001)
    auto = AutoChoice(**chosen, candidates=[skipped, CandidateRow(**chosen)], queries=40, n=80,
                      budget=BudgetRecord(max_memory=4 << 30, max_query_ms=20.0, recall=0.95, k=10))
    return Manifest(
        encoders={TEXT: minilm, ES: EncoderInfo("minilm-l3", "text", 384, "ort 1"),
                  IMAGE: EncoderInfo("efficientnet-lite0", "image", 1280, "timm 1")},
        anchors=AnchorRecord(hash="ab" * 32, count=20, spaces=[IMAGE, SpaceKey.text("en"), ES], strategy="random",
                             per_language={"en": 20, "es": 19}),
        projector=ProjectorConfig(topk=8, ridge=None),
        faiss=FaissRecord(factory="auto", auto={"text": auto, "image": auto}),
        counts=Counts(skipped=2, items=39, text=78, image=39, text_langs={"en": 39, "es": 39}, shards=1),
        package_version="0.test",
        config=load_config({"name": "full", "text_encoders": {"es": "minilm-l3"}, "data": {"limit": 40}}),
        stored_by={TEXT: minilm},
        history=[UpdateEvent(added=3, removed=1, upserted=1, at="2026-12-04T16:06:17+0000", generation=2),
                 ReanchorEvent(space=ES, from_spec="minilm", to_spec="minilm-l3", anchors=20, at=None)],
        generation=3,
    )


def write(tmp_path: Path, data: dict | str) -> Path:
    (tmp_path / MANIFEST).write_text(data if isinstance(data, str) else json.dumps(data))
    return tmp_path


def test_round_trip_through_json_is_equal(tmp_path: Path) -> None:
    m = full_manifest()
    back = Manifest.read(write(tmp_path, m.to_json()))
    assert back == m and back.to_json() == m.to_json()
    plain = json.loads(m.to_json())
    assert plain["format_version"] == FORMAT_VERSION and plain["history"][1]["op"] == "reanchor"
    assert plain["history"][1]["from"] == "minilm" and plain["history"][1]["modality"] == "text:es"
    row = plain["faiss"]["auto"]["text"]["candidates"][0]
    assert "build_s" not in row and row["bytes"] is None and row["reason"].startswith("n=80")  # as auto.py writes
    no_config = Manifest(m.encoders, m.anchors, m.projector, m.faiss, m.counts, "0")
    assert json.loads(no_config.to_json())["config"] == {} and Manifest.read(write(tmp_path, no_config.to_json())) \
        .config is None


def test_format2_fixture_loads_with_typed_values(tmp_path: Path) -> None:
    m = Manifest.read(write(tmp_path, FORMAT2.read_text()))
    assert m.format_version == FORMAT_VERSION and m.generation == 3 and m.package_version == "0.1.0"
    assert m.encoders[TEXT] == m.encoders[ES] == EncoderInfo("minilm-l3", "text", 384,
                                                              "onnxruntime 1.32.0; paraphrase-MiniLM-L3-v2.onnx")
    assert m.stored_by[TEXT].spec == "minilm" and m.encoders[IMAGE].dim == 1280
    assert m.anchors.hash.startswith("835e8b04c767") and m.anchors.count == 20 and m.anchors.strategy == "random"
    assert m.spaces == [IMAGE, SpaceKey.text("en"), ES] and m.anchors.per_language == {"en": 20, "es": 20}
    assert m.projector == ProjectorConfig() and m.faiss.factory == "auto" and m.faiss.normalized
    image = m.faiss.auto["image"]
    assert (image.key, image.n, image.queries, image.bytes, image.budget) == (
        "Flat", 40, 80, 3245, BudgetRecord(max_memory=4 << 30, max_query_ms=20.0, recall=0.95, k=10))
    assert [c.key for c in image.candidates] == ["Flat"] and image.candidates[0].reason is None
    assert m.counts == Counts(skipped=0, items=39, text=78, image=39, text_langs={"en": 39, "es": 39}, shards=1)
    assert isinstance(m.config, Config) and m.config.name == "fixture" and m.config.data.limit == 40
    assert m.config.text_encoders == {"es": "minilm-l3"} and m.config.index.factory == "auto"
    # format 2 did not record an entry's generation, nor a re-anchoring's time: unknown, never invented
    assert m.history == [UpdateEvent(added=0, removed=1, upserted=0, at="2026-12-04T16:06:17+0000"),
                         ReanchorEvent(space=TEXT, from_spec="minilm", to_spec="minilm-l3", anchors=20, at=None)]


def test_format2_written_again_keeps_every_key_and_value() -> None:
    """Format 3 only adds: every key of the format-2 file comes back with its value (the contract's keys)."""
    old = json.loads(FORMAT2.read_text())
    new = json.loads(Manifest.from_plain(old).to_json())

    def within(a: object, b: object, path: str) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict), path
            for k in a:
                assert k in b, f"{path}.{k} dropped"
                within(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                within(x, y, f"{path}[{i}]")
        else:
            assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"

    within({**old, "format_version": FORMAT_VERSION}, new, "")
    assert new["history"][1]["at"] is None and new["history"][0]["generation"] is None


def test_format2_reanchor_entry_without_op_reads_as_reanchor() -> None:
    """Format 2 wrote re-anchorings without ``op`` until entries named their operation (commit 25591ad)."""
    old = json.loads(FORMAT2.read_text())
    del old["history"][1]["op"]
    assert isinstance(Manifest.from_plain(old).history[1], ReanchorEvent)


def test_info_json_keeps_its_keys_on_a_format2_index(tmp_path: Path) -> None:
    """``relspace info --json`` is read by users: the same keys and values as the untyped manifest gave."""
    old = json.loads(FORMAT2.read_text())
    info = index_info(write(tmp_path, FORMAT2.read_text()))
    assert info == {
        "index_dir": str(tmp_path), "package_version": "0.1.0",
        "encoders": {k: {"spec": e["spec"], "dim": e["dim"]} for k, e in old["encoders"].items()},
        "anchors": {k: old["anchors"][k] for k in ("count", "hash", "strategy", "spaces")},
        "projector": old["projector"], "counts": old["counts"],
        "faiss": {k: v for k, v in old["faiss"].items() if k != "auto"},
        "faiss_file_bytes": {"image": None, "text": None}, "auto": old["faiss"]["auto"],
        "checksums": 0,  # format 2 recorded none; and a manifest alone is no index: info says so (exit 1)
        "problems": [f"{m}.faiss: FAISS index file missing: {tmp_path / f'{m}.faiss'}; the index is incomplete: "
                     "rebuild it" for m in ("text", "image")],
    }


def test_succeed_stamps_the_generation_on_new_history_entries_only(tmp_path: Path) -> None:
    shutil.copy(FORMAT2, tmp_path / MANIFEST)
    m = Manifest.read(tmp_path)
    m.history.append(UpdateEvent(added=1, removed=0, upserted=0, at="now"))
    m.succeed(tmp_path)
    assert m.generation == 4 and m.history[-1].generation == 4
    assert [e.generation for e in m.history[:-1]] == [None, None]  # format-2 entries stay unknown
    m.succeed(tmp_path)  # a second publish of the same object stamps nothing again
    assert m.history[-1].generation == 4


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 40])
def test_a_newer_format_is_refused_naming_the_file(tmp_path: Path, version: int) -> None:
    data = json.loads(full_manifest().to_json()) | {"format_version": version}
    with pytest.raises(IndexMismatchError) as e:
        Manifest.read(write(tmp_path, data))
    msg = str(e.value)
    assert str(tmp_path / MANIFEST) in msg and f"format {version} is newer" in msg and "upgrade relspace" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("version", [1, None, "2"])
def test_an_older_or_unknown_format_is_refused_with_rebuild(tmp_path: Path, version: object) -> None:
    data = json.loads(FORMAT2.read_text()) | {"format_version": version}
    if version is None:
        del data["format_version"]
    with pytest.raises(IndexMismatchError, match=r"manifest\.json: index format .* rebuild the index") as e:
        Manifest.read(write(tmp_path, data))
    assert str(tmp_path / MANIFEST) in str(e.value) and "\n" not in str(e.value)


def _edit(path: str, value: object) -> dict:
    """The full manifest's JSON with the value at a dotted path replaced (``...`` deletes it)."""
    data = json.loads(full_manifest().to_json())
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(("data", "says"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list"),
    (_edit("counts.image", "many"), "'counts.image' must be int, got 'many'"),
    (_edit("anchors.hash", ...), "'anchors.hash' is missing"),
    (_edit("anchors.spaces", ["text:"]), "'anchors.spaces[0]' must be a space key"),
    (_edit("encoders", {"audio": {"spec": "x", "modality": "text", "dim": 1, "version": "1"}}), "'encoders.audio'"),
    (_edit("history.0.op", "merge"), "unknown operation 'merge'"),
    (_edit("faiss.auto.text.budget.k", ...), "a record lacks a field"),
    (_edit("config.index", {"factory": "Flat", "colour": "red"}), "unknown key 'config.index.colour'"),
    (_edit("generation", "3"), "'generation' must be int"),
    (_edit("projector", ...), "lacks the required field 'projector'"),
    (_edit("stowaway", 1), "unknown field 'stowaway'"),
])
def test_a_damaged_manifest_is_refused_naming_the_file(tmp_path: Path, data: dict | str, says: str) -> None:
    with pytest.raises(ValueError) as e:
        Manifest.read(write(tmp_path, data))
    msg = str(e.value)
    assert str(tmp_path / MANIFEST) in msg and says in msg and "rebuild" in msg and "\n" not in msg, msg
