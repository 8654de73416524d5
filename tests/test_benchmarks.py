"""The benchmarks package: every module imports, the shared helper works, and the index section runs for real."""

from __future__ import annotations

import importlib
import json
from dataclasses import fields, is_dataclass

import pytest

MODULES = ["benchmarks", "benchmarks.common", "benchmarks.image", "benchmarks.workers", "benchmarks.text",
           "benchmarks.query", "benchmarks.index", "benchmarks.load_test", "benchmarks.reanchor",
           "benchmarks.scale", "benchmarks.resume", "benchmarks.soak", "benchmarks.decode_guard", "benchmarks.api_fuzz",
           "benchmarks.__main__"]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    assert importlib.import_module(name).__doc__


def test_sections_are_dataclass_descriptors():
    from benchmarks.__main__ import SECTIONS

    assert list(SECTIONS) == ["image", "workers", "text", "query", "index", "ensemble"]
    for section in SECTIONS.values():
        assert is_dataclass(section.descriptor)
        names = {f.name for f in fields(section.descriptor)}
        assert set(section.quick) <= names and set(section.options) <= names, section.name


def test_descriptor_takes_only_the_options_a_section_has():
    from benchmarks.__main__ import SECTIONS, build_parser, descriptor

    args = build_parser().parse_args(["image", "workers", "--quick", "--n", "7", "--workers", "0", "--budget", "3"])
    img = descriptor(SECTIONS["image"], args)
    assert (img.n, img.reps, img.workers, img.budget) == (7, 2, 0, 3.0)
    sweep = descriptor(SECTIONS["workers"], args)
    assert (sweep.n, sweep.workers) == (7, [0, 1, 2])  # --workers is the image section's, not the sweep's list
    args = build_parser().parse_args(["index", "--factories", "Flat; IVF16,Flat;"])
    assert descriptor(SECTIONS["index"], args).factories == ["Flat", "IVF16,Flat"]


def test_interleave_alternates_and_keeps_whole_rounds():
    from benchmarks.common import interleave

    calls = []
    times = interleave({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))}, reps=4)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert all(t >= 0 for v in times.values() for t in v)
    times = interleave({"a": lambda r: None, "b": lambda r: None}, reps=100, budget=0.0)
    assert {k: len(v) for k, v in times.items()} == {"a": 1, "b": 1}  # the first round always runs


def test_ratios_and_percentiles():
    from benchmarks.common import paired_ratio, percentile, spread

    assert paired_ratio([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 1.0
    assert spread([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == "1.50-2.50"
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_table_markdown():
    from benchmarks.common import Table, fmt

    t = Table("s", "Title", ["name", "value"], [["x", 0.12345], ["y", 12345.6], ["z", float("nan")], ["n", 1500]],
              ["a note"], seconds=2.0, load=(1.0, 1.5))
    lines = t.markdown().splitlines()
    assert lines[:4] == ["### Title", "", "| name | value |", "|---|---|"]
    assert lines[4:8] == ["| x | 0.123 |", "| y | 12,346 |", "| z | - |", "| n | 1,500 |"]
    assert lines[-2:] == ["- a note", "- section wall time 2 s; load average 1.00 -> 1.50"]
    assert fmt(True) == "True"


def test_forward_clock_times_and_restores():
    from benchmarks.common import ForwardClock

    class Enc:
        def forward(self, batch):
            return batch * 2

    enc, into = Enc(), []
    with ForwardClock(enc) as clock:
        clock.timed(lambda: enc.forward(3), into)
        assert enc.forward(4) == 8
    assert len(into) == 1 and into[0] >= 0
    assert "forward" not in vars(enc)  # the class's method again


def test_load_test_summary():
    from benchmarks.load_test import _summary

    out = _summary([4.0, 1.0, 3.0, 2.0], (50, 99))
    assert out["p50"] == 2.5 and out["max"] == 4.0 and out["mean"] == 2.5
    assert _summary([], (50,))["p50"] != _summary([], (50,))["p50"]  # NaN, no max or mean
    assert "max" not in _summary([], (50,))


def test_index_section_recall():
    from benchmarks.index import IndexBench, run

    (table,) = run(IndexBench(n=2_000, nq=50, d=64, d_abs=32, clusters=20, factories=["Flat", "HNSW32"]))
    assert [row[0] for row in table.rows] == ["Flat", "HNSW32"]
    recall = table.columns.index("recall@10 vs Flat")
    assert table.rows[0][recall] == 1.0 and 0.0 < table.rows[1][recall] <= 1.0
    assert table.rows[0][table.columns.index("bytes/vector (file)")] >= 64 * 4  # Flat stores d float32s


def test_cli_runs_the_index_section(tmp_path, capsys):
    from benchmarks.__main__ import main

    out = tmp_path / "r.json"
    assert main(["index", "--quick", "--n", "2000", "--factories", "Flat", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## relspace benchmarks\n\n`python -m benchmarks index --quick")
    assert "| Flat |  |" in printed
    res = json.loads(out.read_text())
    assert res["command"].startswith("python -m benchmarks index")
    assert {"git", "cpus", "torch_threads", "faiss_threads"} <= set(res["machine"])
    (table,) = res["results"]
    assert table["section"] == "index" and len(table["rows"]) == 1 and table["rows"][0][0] == "Flat"


def test_scale_phases_build_an_auto_index_under_a_tiny_budget_and_serve_it(tmp_path):
    """The scale benchmark's path, small: shards -> auto choice -> publish -> Retriever.load -> queries."""
    from benchmarks.scale import ScaleBench, phase_build, phase_serve
    from pipeline import Retriever

    b = ScaleBench(n=40_000, anchors=64, d_image=96, d_text=48, clusters=40, shard_size=10_000, queries=50,
                   max_memory="8M", max_query_ms=50.0, train_size=5_000)
    built = phase_build(b, tmp_path / "index")
    chosen = built["auto"]["image"]
    assert chosen["key"] != "Flat" and chosen["peak_bytes"] <= 8 * 2**20  # 40,000 x 64 floats is 9.8 MiB
    assert any(c["key"] == "Flat" and "memory" in c.get("reason", "") for c in chosen["candidates"])
    r = Retriever.load(tmp_path / "index")
    assert r.manifest.faiss.auto["image"].key == chosen["key"] and r.indexes["image"].ntotal == b.n
    served = phase_serve(b, tmp_path / "index")
    assert 0 < served["p50_ms"] <= served["p99_ms"]



@pytest.mark.slow
def test_soak_smoke_run_on_the_small_index(small_index, tmp_path, capsys):
    """A short soak for real: a server process, mixed queries, one add and one remove by the CLI, no errors."""
    from benchmarks.soak import main

    out = tmp_path / "soak.json"
    rc = main(["--index", str(small_index), "--minutes", "0.3", "--concurrency", "2", "--update-every", "30",
               "--warmup", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "| minute | requests | errors | p50 ms | p99 ms | generations | updates | server RSS MiB |" in printed
    res = json.loads(out.read_text())
    (row,) = res["table"]["rows"]
    assert row[1] > 0 and row[2] == 0  # requests, errors
    assert [u["op"] for u in res["updates"]] == ["add", "remove"] and all(u["ok"] for u in res["updates"])
    start, end = res["generations"]
    assert end == start + 2  # the running server took in the add's version and then the remove's
    assert all(rss > 0 for _, rss in res["rss_mib"])
