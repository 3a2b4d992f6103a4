"""timm's zoo as package data: the committed file is what models/zoobuild.py makes of timm's CSVs, its rows are the
CSVs' rows joined by arch.tag and (arch, size), and entries read from it say where each figure comes from.

The full CSVs are in the shared data folder on the development machines (not on CI): there the committed file must be
byte for byte what the builder writes. Everywhere, tests/data/timm-results-mini (every row of 10 architectures, cut
unchanged from the same CSVs) is rebuilt and each of its rows must be in the committed file."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from vischoose.errors import UsageError
from vischoose.models import catalog, zoo, zoobuild

MINI = Path(__file__).resolve().parent.parent / "data" / "timm-results-mini"
FULL = Path(os.environ.get("VISCHOOSE_TIMM_RESULTS", "/work/shared/data/timm-results"))


def committed() -> dict:
    return json.loads(zoo.zoo_path().read_text(encoding="utf-8"))


def csv_row(name: str, model: str, size: int, size_column: str = "img_size") -> dict[str, str]:
    """The row of a fixture CSV for a model at an input size, as the file has it."""
    with open(MINI / name, newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["model"] == model and int(r[size_column]) == size)


@pytest.mark.skipif(not (FULL / "results-imagenet.csv").is_file(), reason="timm's full results CSVs are not here")
def test_the_committed_file_is_what_the_builder_makes_of_the_full_csvs():
    assert zoobuild.dumps(zoobuild.build(FULL)) == zoo.zoo_path().read_text(encoding="utf-8")


def test_every_row_built_from_the_cut_csvs_is_in_the_committed_file():
    mini, full = zoobuild.build(MINI), committed()
    assert mini["source"] == full["source"] and mini["source"]["commit"] == zoobuild.commit_of(MINI)
    assert mini["machines"] == full["machines"] and mini["bench_columns"] == full["bench_columns"]
    with open(MINI / "results-imagenet.csv", newline="") as fh:
        assert len(mini["tags"]) == len(list(csv.DictReader(fh)))  # one row per tag and evaluation size
    assert all(row in full["tags"] for row in mini["tags"])
    assert mini["bench"] and all(row in full["bench"] for row in mini["bench"])
    assert all(full["pretrain"][arch] == value for arch, value in mini["pretrain"].items())
    assert "Apache-2.0" in full["about"] and full["source"]["commit"] in full["about"]


def test_a_tag_joins_its_accuracy_its_sizes_and_its_architectures_benchmarks():
    t = zoo.load().tags["resnet50.a1_in1k"]
    at224, at288 = csv_row("results-imagenet.csv", t.tag, 224), csv_row("results-imagenet.csv", t.tag, 288)
    assert t.deployed.size == 224 and t.deployed.top1 == float(at224["top1"])  # 80.382, deployed at 224
    assert t.test.size == 288 and t.test.top1 == float(at288["top1"])  # 81.24, timm's test size
    assert t.deployed.real_top1 == float(csv_row("results-imagenet-real.csv", t.tag, 224)["top1"])
    assert t.deployed.v2_top1 == float(csv_row("results-imagenetv2-matched-frequency.csv", t.tag, 224)["top1"])
    bench = csv_row("benchmark-infer-fp32-nchw-pt240-cpu-i9_10940x-dynamo.csv", "resnet50", 224, "infer_img_size")
    e = zoo.entry(t, zoo.load())
    assert (e.top1, e.top1_size, e.input_size, e.top1_test, e.top1_test_size) == (
        float(at224["top1"]), 224, 224, float(at288["top1"]), 288)
    assert e.gmacs == float(bench["infer_gmacs"]) and e.params == round(float(at224["param_count"]) * 1e6)
    assert e.ref_cpu_latency_ms == float(bench["infer_step_time"])
    assert e.ref_cpu.startswith("Intel Core i9-10940X (14 cores), batch 1, float32, 224 px (timm benchmark, "
                                "torch 2.4.0")
    assert e.family == "resnet" and e.int8_bytes_per_param == 1.01


def test_published_gpu_speed_is_the_one_at_the_target_precision_and_names_its_machine():
    speeds = zoo.load().speeds[("resnet50", 224)]
    bf16 = zoo.gpu_speed(speeds, "bfloat16")
    row = csv_row("benchmark-infer-bf16-nchw-pt291-cu130-pro6000maxq-dynamo.csv", "resnet50", 224, "infer_img_size")
    assert (bf16.img_s, bf16.batch, bf16.kind) == (float(row["infer_samples_per_sec"]), int(row["infer_batch_size"]),
                                                   "cuda")
    assert bf16.describe(224) == (f"NVIDIA RTX PRO 6000 Blackwell Max-Q, bfloat16, batch {bf16.batch}, 224 px "
                                  "(timm benchmark, torch 2.9.1, CUDA 13.0, torch.compile)")
    fp16 = zoo.gpu_speed(speeds, "float16")
    assert fp16.matches("float16") and fp16.precision == "float16 (AMP)"
    assert not zoo.gpu_speed(speeds, "float32").matches("float32")  # no fp32 GPU run: the label says which it is


def test_the_curated_catalog_agrees_with_the_zoo():
    data = zoo.load()
    for e in catalog.load().values():
        t = data.tags[e.tag]
        assert (t.deployed.top1, t.deployed.size, t.deployed.top5) == (e.top1, e.top1_size, e.top5), e.alias
        assert data.gmacs[(t.arch, e.input_size)] == e.gmacs, e.alias
        assert abs(t.params_m * 1e6 - e.params) < 0.006e6, e.alias  # the CSVs round to 0.01 M
        if e.top1_test is not None:
            assert (t.test.top1, t.test.size) == (e.top1_test, e.top1_test_size), e.alias


@pytest.mark.slow
def test_each_tag_is_deployed_at_timms_pretrained_input_size():
    from timm.models import get_pretrained_cfg

    for t in zoo.load().tags.values():
        cfg = get_pretrained_cfg(t.tag)
        assert cfg is not None and cfg.input_size[-1] == t.deployed.size, t.tag
        if t.test is not None:
            assert (cfg.test_input_size or (0,))[-1] == t.test.size, t.tag


def test_a_glob_that_matches_nothing_names_the_closest_architectures():
    with pytest.raises(UsageError) as info:
        raise zoo.no_match("resnt50*", zoo.load())
    assert str(info.value) == ("No model in timm's zoo matches 'resnt50*' (1,266 tags). Did you mean 'resnet50*', "
                               "'resnet50s*', 'resnet50d*'?")
    assert info.value.exit_code == 2


def test_globs_match_architectures_or_tags_with_a_dot():
    data = zoo.load()
    archs = {t.arch for t in data.matching("resnet50*")}
    assert {"resnet50", "resnet50d", "resnet50_gn"} <= archs and all(a.startswith("resnet50") for a in archs)
    tags = data.matching("vit_*_patch16_224.augreg*")
    assert {t.tag for t in tags} >= {"vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit_small_patch16_224.augreg_in1k"}
    assert all(t.tag.split(".")[1].startswith("augreg") and t.arch.endswith("_patch16_224") for t in tags)


def _fresh(path: Path | None = None) -> zoo.Zoo:
    """The zoo as a new command reads it (models.zoo.load caches it per process)."""
    zoo.load.cache_clear()
    return zoo.load(path)


def _no_json(monkeypatch) -> None:
    """From here on, reading the zoo's JSON fails: a load must come from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("the zoo's JSON was parsed")

    import json

    monkeypatch.setattr(json, "loads", refuse)


def test_the_zoo_read_from_the_home_cache_is_the_zoo_read_from_its_json(monkeypatch):
    from vischoose import paths

    first = _fresh()  # parses the JSON and keeps the rows
    assert (paths.derived_cache() / zoo.CACHE_FILE).is_file()
    with monkeypatch.context() as m:
        _no_json(m)
        again = _fresh()  # reads them back
    assert again._replace(speeds=None) == first._replace(speeds=None) and again.speeds.packed.packed == first.speeds.packed.packed
    t = again.tags["resnet50.a1_in1k"]
    assert type(t) is zoo.ZooTag and all(type(e) is zoo.Evaluation for e in t.evaluations)
    assert again.speeds.get(("resnet50", 224)) == first.speeds.get(("resnet50", 224))
    assert all(type(s) is zoo.Speed for s in again.speeds.get(("resnet50", 224)))
    assert zoo.entry(t, again) == zoo.entry(first.tags["resnet50.a1_in1k"], first)


def test_each_architecture_keeps_the_family_and_int8_recipe_the_table_gives_it(monkeypatch):
    from vischoose.models import families

    _fresh()
    _no_json(monkeypatch)
    data = _fresh()  # from the cache
    archs = {t.arch for t in data.tags.values()}
    assert set(data.archs) == archs
    for arch in archs:
        assert data.family_of(arch) == families.family_of(arch), arch
        assert data.int8_bytes_per_param(arch) == families.int8_bytes_per_param(arch), arch
    assert data.family_of("resnet50.a1_in1k") == "resnet"
    assert data.int8_bytes_per_param("resnet50.a1_in1k") == data.int8_bytes_per_param("resnet50")


def _same_size_edit(path: Path, old: str, new: str) -> None:
    """Replace text by text of the same length, the file's size and mtime kept."""
    assert len(old) == len(new)
    before, text = path.stat(), path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def test_a_changed_zoo_file_is_read_again_not_taken_from_the_cache(tmp_path):
    copy = tmp_path / "zoo.json"
    copy.write_bytes(zoo.zoo_path().read_bytes())
    top1 = _fresh(copy).tags["resnet50.a1_in1k"].deployed.top1
    text = f"{top1}"
    lower = f"{int(text[0]) - 1}{text[1:]}"  # ten points less (80.382 -> 70.382), the same length
    _same_size_edit(copy, f'["resnet50.a1_in1k",224,{text}', f'["resnet50.a1_in1k",224,{lower}')
    assert _fresh(copy).tags["resnet50.a1_in1k"].deployed.top1 == pytest.approx(float(lower))


def test_a_changed_family_table_is_read_again_not_taken_from_the_cache(tmp_path, monkeypatch):
    from vischoose.models import families

    table = tmp_path / "families.toml"
    table.write_bytes(families.table_path().read_bytes())
    monkeypatch.setattr(families, "table_path", lambda: table)
    families.load.cache_clear()
    families.family_of.cache_clear()
    try:
        assert _fresh().int8_bytes_per_param("resnet50") == pytest.approx(1.01)
        _same_size_edit(table, "convolutional = 1.01", "convolutional = 1.07")
        families.load.cache_clear()
        assert _fresh().int8_bytes_per_param("resnet50") == pytest.approx(1.07)
    finally:
        families.load.cache_clear()
        families.family_of.cache_clear()
        zoo.load.cache_clear()


def test_a_broken_cache_file_or_an_unwritable_home_only_costs_the_shortcut(monkeypatch):
    from vischoose import paths

    expected = _fresh()
    cached = paths.derived_cache() / zoo.CACHE_FILE
    cached.write_bytes(b"\x00not marshal at all")
    assert _fresh().tags == expected.tags
    with monkeypatch.context() as m:  # made again
        _no_json(m)
        assert _fresh().tags == expected.tags
    names = [f.name for f in cached.parent.iterdir()]
    assert zoo.CACHE_FILE in names and not [n for n in names if n.startswith(".")]  # no temporary file left
    shutil.rmtree(cached.parent)
    cached.parent.write_text("a file where the cache folder would be")  # the folder cannot be made
    assert _fresh().tags == expected.tags
    assert cached.parent.read_text() == "a file where the cache folder would be"
    monkeypatch.setenv("VISCHOOSE_HOME", "~no-such-user-here/vischoose")  # a home that cannot even be named
    assert _fresh().tags == expected.tags


def test_tags_are_built_when_asked_for_and_a_family_builds_only_its_own():
    data = _fresh()
    assert not data.tags.built  # nothing built by reading
    vits = data.of_families({"vit"})
    assert vits and {data.family_of(t.tag) for t in vits} == {"vit"}
    assert set(data.tags.built) == {t.tag for t in vits}
    assert len(vits) == sum(1 for name in data.tags if data.family_of(name) == "vit")
    # only the vit architectures' rows were unpacked, of every architecture's kept as bytes
    assert set(data.tags.packed.rows) == {t.arch for t in vits} and len(data.tags.packed.packed) > 2 * len(vits) // 3
    t = data.tags["resnet50.a1_in1k"]
    assert data.tags["resnet50.a1_in1k"] is t and "resnet50.a1_in1k" in data.tags
    assert "no-such.tag" not in data.tags and data.tags.get("no-such.tag") is None
