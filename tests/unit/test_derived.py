"""Package data kept parsed in the home's cache (vischoose.derived): read back as parsed, made again whenever a source
changes, and never an error where it cannot be kept."""

from __future__ import annotations

import os
import tomllib

import pytest

from vischoose import derived, paths, presets
from vischoose.errors import PresetError


def _refuse_parsing(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the TOML was parsed")

    monkeypatch.setattr(tomllib, "loads", refuse)


def test_a_toml_file_read_again_comes_from_the_cache_as_parsed(tmp_path, monkeypatch):
    source = tmp_path / "data.toml"
    source.write_text('name = "x"\nsizes = [224, 288]\n[table]\nratio = 0.875\nflag = true\n', encoding="utf-8")
    first = derived.toml(source)
    assert first == tomllib.loads(source.read_text(encoding="utf-8"))
    assert [f.name for f in paths.derived_cache().iterdir() if f.name.startswith("data-")]
    with monkeypatch.context() as m:
        _refuse_parsing(m)
        assert derived.toml(source) == first


def test_a_same_size_edit_with_its_mtime_kept_is_parsed_again(tmp_path):
    source = tmp_path / "data.toml"
    source.write_text("budget = 150\n", encoding="utf-8")
    assert derived.toml(source) == {"budget": 150}
    before = source.stat()
    source.write_text("budget = 250\n", encoding="utf-8")
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert derived.toml(source) == {"budget": 250}


def test_two_files_of_one_name_in_two_folders_keep_their_own_values(tmp_path):
    a, b = tmp_path / "a" / "mobile.toml", tmp_path / "b" / "mobile.toml"
    for path, value in ((a, 1), (b, 2)):
        path.parent.mkdir()
        path.write_text(f"v = {value}\n", encoding="utf-8")
    assert (derived.toml(a), derived.toml(b), derived.toml(a)) == ({"v": 1}, {"v": 2}, {"v": 1})


def test_a_value_marshal_cannot_keep_is_returned_and_simply_not_kept(tmp_path):
    source = tmp_path / "dated.toml"
    source.write_text("when = 2026-12-07T10:00:00Z\n", encoding="utf-8")
    assert derived.toml(source)["when"].year == 2026  # a datetime: marshal refuses it
    assert not list(paths.derived_cache().glob("dated-*"))


def test_a_broken_cache_or_a_cache_folder_that_cannot_be_made_only_costs_the_shortcut(tmp_path, monkeypatch):
    source = tmp_path / "data.toml"
    source.write_text("x = 1\n", encoding="utf-8")
    derived.toml(source)
    (kept,) = paths.derived_cache().glob("data-*")
    kept.write_bytes(b"\x00not marshal")
    assert derived.toml(source) == {"x": 1}
    with monkeypatch.context() as m:  # written again, whole
        _refuse_parsing(m)
        assert derived.toml(source) == {"x": 1}
    assert not [f for f in paths.derived_cache().iterdir() if f.name.startswith(".")]  # no temporary file left
    for f in paths.derived_cache().iterdir():
        f.unlink()
    paths.derived_cache().rmdir()
    paths.derived_cache().write_text("a file where the cache folder would be")
    assert derived.toml(source) == {"x": 1}
    monkeypatch.setenv("VISCHOOSE_HOME", "~no-such-user-here/vischoose")  # a home that cannot even be named
    assert derived.toml(source) == {"x": 1}


def test_a_preset_is_read_from_the_cache_and_a_broken_one_is_still_a_one_line_error(tmp_path, monkeypatch):
    first = presets.load_preset("mobile")
    with monkeypatch.context() as m:
        _refuse_parsing(m)
        assert presets.load_preset("mobile") == first
    bad = tmp_path / "bad.toml"
    bad.write_text("[constraints\nmax_memory_mb = 1\n", encoding="utf-8")
    with pytest.raises(PresetError, match="not valid TOML"):
        presets.load_preset(str(bad))
    old_mac = tmp_path / "cr.toml"  # lone carriage returns end lines, as they did when presets were read as text
    old_mac.write_bytes(b'name = "cr"\r[constraints]\rmax_memory_mb = 10\r')
    assert presets.load_preset(str(old_mac)).constraints.max_memory_mb == 10
    undecodable = tmp_path / "latin.toml"
    undecodable.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(PresetError, match="not valid TOML"):
        presets.load_preset(str(undecodable))


def test_the_key_names_every_source_by_its_bytes():
    assert derived.key_of((b"abc", b"x")) != derived.key_of((b"abd", b"x"))
    assert derived.key_of((b"abc", b"x")) != derived.key_of((b"abc", b"y"))
    assert derived.key_of((b"abc",)) == derived.key_of((b"abc",))

