"""Finding and installing a TFLM tree (no network, no real TFLM code).

`setup` is exercised with a fake fetch that serves small synthetic archives with
TFLM's layout, and checksums computed from those archives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest
from tflm_helpers import make_fake_tflm

from tinyq.cli import main
from tinyq.errors import ToolError, UserInputError
from tinyq.firmware.tflm import source
from tinyq.firmware.tflm.source import (
    DOWNLOADS,
    MARKER,
    OFFLINE_HINT,
    OFFLINE_MESSAGE,
    SETUP_RECORD,
    Archive,
    check_tree,
    locate,
    setup,
    verify,
)

# ------------------------------------------------------------------ lookup order


@pytest.fixture()
def trees(tmp_path):
    a = make_fake_tflm(tmp_path / "a")
    b = make_fake_tflm(tmp_path / "b")
    cache = tmp_path / "cache"
    make_fake_tflm(source.cached_tree_path(cache))
    return a, b, cache


def test_lookup_order_is_flag_then_env_then_cache(trees):
    a, b, cache = trees
    env = {"TINYQ_TFLM_DIR": str(b)}
    assert locate(a, env=env, cache=cache).path == a.resolve()
    assert locate(a, env=env, cache=cache).origin == "--tflm-dir"
    assert locate(None, env=env, cache=cache).path == b.resolve()
    assert locate(None, env=env, cache=cache).origin == "TINYQ_TFLM_DIR"
    found = locate(None, env={}, cache=cache)
    assert found.origin == "cache" and found.path == source.cached_tree_path(cache).resolve()


def test_no_tree_anywhere_is_one_line_saying_how_to_get_one(tmp_path):
    with pytest.raises(UserInputError) as err:
        locate(None, env={}, cache=tmp_path / "empty")
    text = str(err.value)
    assert "\n" not in text
    assert "tinyq setup tflm" in text and "--tflm-dir" in text and "TINYQ_TFLM_DIR" in text


def test_a_folder_without_tflm_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserInputError, match="is not a TensorFlow Lite Micro tree"):
        locate(tmp_path / "x", env={}, cache=tmp_path)
    with pytest.raises(UserInputError, match="TINYQ_TFLM_DIR .* is not a folder"):
        locate(None, env={"TINYQ_TFLM_DIR": str(tmp_path / "nope")}, cache=tmp_path)


def test_missing_third_party_code_is_named(tmp_path):
    tree = check_tree(make_fake_tflm(tmp_path / "t", files=(MARKER,)), "--tflm-dir")
    assert tree.missing() == ("flatbuffers", "gemmlowp", "ruy")
    assert tree.missing("cmsis_nn")[-2:] == ("cmsis", "cmsis_nn")
    with pytest.raises(UserInputError, match="has no flatbuffers, gemmlowp, ruy"):
        tree.require()
    full = check_tree(make_fake_tflm(tmp_path / "full"), "--tflm-dir")
    assert full.require("cmsis_nn") is full


def test_commit_comes_from_the_setup_record_or_git(tmp_path):
    t = make_fake_tflm(tmp_path / "t")
    assert check_tree(t, "x").commit is None
    (t / ".git" / "refs" / "heads").mkdir(parents=True)
    (t / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (t / ".git" / "refs" / "heads" / "main").write_text("abc123\n")
    assert check_tree(t, "x").commit == "abc123"
    (t / SETUP_RECORD).write_text(json.dumps({"commit": "def456"}))
    assert check_tree(t, "x").commit == "def456"


# ------------------------------------------------------------------ checksums


def test_every_pin_names_its_source_and_urls_are_immutable():
    assert source.PINS[0].name == "tflite-micro" and source.TFLM_COMMIT in source.PINS[0].url
    for pin in source.PINS:
        assert pin.url.startswith("https://github.com/")
        assert pin.source
        # commits or release tags, never a branch
        assert "/archive/refs/heads/" not in pin.url and "master" not in pin.url
        if pin.md5 is not None:
            assert len(pin.md5) == 32
        if pin.sha256 is not None:
            assert len(pin.sha256) == 64


def test_an_archive_without_a_checksum_is_refused_with_its_sha256():
    data = b"some archive"
    with pytest.raises(ToolError) as err:
        verify(Archive("x", "https://github.com/a/b/archive/c.tar.gz", "t", ".", "s"), data)
    text = str(err.value)
    assert "no recorded checksum" in text and hashlib.sha256(data).hexdigest() in text
    assert "\n" not in text


def test_checksums_are_checked():
    data = b"payload"
    good = Archive("x", "u", "t", ".", "s", sha256=hashlib.sha256(data).hexdigest())
    assert verify(good, data).startswith("sha256 ")
    with pytest.raises(ToolError, match="expected"):
        verify(dataclasses.replace(good, sha256="0" * 64), data)
    md5 = Archive("x", "u", "t", ".", "flatbuffers_download.sh",
                  md5=hashlib.md5(data).hexdigest())
    assert "TFLM's pin in flatbuffers_download.sh" in verify(md5, data)
    with pytest.raises(ToolError, match="md5"):
        verify(dataclasses.replace(md5, md5="0" * 32), data)


# ------------------------------------------------------------------ setup


def test_offline_setup_fails_in_one_line(monkeypatch, tmp_path, capsys):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(source.urllib.request, "urlopen", no_network)
    with pytest.raises(ToolError) as err:
        setup(tmp_path / "tflm")
    assert str(err.value) == f"{OFFLINE_MESSAGE} — {OFFLINE_HINT}"
    assert not (tmp_path / "tflm").exists()
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["setup", "tflm"]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1] == f"error: cannot download TFLM (offline?) — {OFFLINE_HINT}"
    assert "--archives" in OFFLINE_HINT and "tflm_offline.md" in OFFLINE_HINT


def _tar(top: str, files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(top: str, files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, text in files.items():
            zf.writestr(f"{top}/{rel}", text)
    return buf.getvalue()


PATCH = """--- a/include/flatbuffers/base.h
+++ b/include/flatbuffers/base.h
@@ -1 +1,2 @@
 #define BASE 1
+#define PATCHED_BY_TFLM 1
"""


@pytest.fixture()
def fake_pins(monkeypatch):
    """Synthetic archives with TFLM's layout, and pins carrying their checksums."""
    make = "tensorflow/lite/micro/tools/make"
    payloads = {
        "tflite-micro": _tar("tflm-top", {MARKER: "", f"{make}/flatbuffers.patch": PATCH}),
        "flatbuffers": _zip("fb-top", {"include/flatbuffers/flatbuffers.h": "",
                                        "include/flatbuffers/base.h": "#define BASE 1\n",
                                        "BUILD": "bazel", "src/BUILD.bazel": "bazel"}),
        "gemmlowp": _zip("g-top", {"fixedpoint/fixedpoint.h": ""}),
        "ruy": _zip("r-top", {"ruy/profiler/instrumentation.h": ""}),
        "cmsis": _zip("c-top", {"CMSIS/Core/Include/cmsis_compiler.h": ""}),
        "cmsis_nn": _zip("n-top", {"Include/arm_nnfunctions.h": ""}),
    }
    tops = {"tflite-micro": "tflm-top", "flatbuffers": "fb-top", "gemmlowp": "g-top",
            "ruy": "r-top", "cmsis": "c-top", "cmsis_nn": "n-top"}
    pins = []
    for pin in source.PINS:
        url = f"https://example.invalid/{pin.name}" + (".zip" if pin.kind == "zip" else ".tar.gz")
        pins.append(dataclasses.replace(
            pin, url=url, top=tops[pin.name], md5=None, git_tree=None,
            sha256=hashlib.sha256(payloads[pin.name]).hexdigest()))
    monkeypatch.setattr(source, "PINS", tuple(pins))
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        name = url.rsplit("/", 1)[1].split(".")[0]
        return payloads[name]

    return fetch, fetched, payloads


def test_setup_installs_verified_archives_in_tflm_layout(tmp_path, fake_pins):
    fetch, fetched, _ = fake_pins
    tree = setup(tmp_path / "tflm", fetch=fetch)
    root = tmp_path / "tflm"
    assert tree.path == root.resolve() and tree.commit == source.TFLM_COMMIT
    assert tree.missing("cmsis_nn") == ()
    assert "PATCHED_BY_TFLM" in (root / DOWNLOADS / "flatbuffers/include/flatbuffers/base.h"
                                 ).read_text()
    assert not list((root / DOWNLOADS / "flatbuffers").rglob("BUILD*"))
    record = json.loads((root / SETUP_RECORD).read_text())
    assert [a["name"] for a in record["archives"]] == [p.name for p in source.PINS]
    assert all(a["verified"].startswith("sha256 ") for a in record["archives"])
    # a second setup reuses the tree
    n = len(fetched)
    assert setup(tmp_path / "tflm", fetch=fetch).path == tree.path
    assert len(fetched) == n


def test_setup_without_cmsis_nn_skips_it(tmp_path, fake_pins):
    fetch, fetched, _ = fake_pins
    tree = setup(tmp_path / "tflm", fetch=fetch, cmsis_nn=False)
    assert tree.missing() == () and tree.missing("cmsis_nn") == ("cmsis", "cmsis_nn")
    assert not any("cmsis" in u for u in fetched)


def test_a_bad_checksum_installs_nothing(tmp_path, fake_pins, monkeypatch):
    fetch, _, _ = fake_pins
    pins = list(source.PINS)
    pins[3] = dataclasses.replace(pins[3], sha256="0" * 64)
    monkeypatch.setattr(source, "PINS", tuple(pins))
    with pytest.raises(ToolError, match="ruy archive has sha256"):
        setup(tmp_path / "tflm", fetch=fetch)
    assert not (tmp_path / "tflm").exists()
    assert list(tmp_path.iterdir()) == []


def test_archive_members_may_not_escape(tmp_path):
    evil = _zip("top", {"../../evil.txt": "x"})
    archive = Archive("x", "u.zip", "top", ".", "s")
    with pytest.raises(ToolError, match="escapes"):
        source.extract(archive, evil, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_the_tflm_archive_is_checked_by_git_tree(tmp_path, fake_pins, monkeypatch):
    """The real TFLM pin carries the pinned commit's git tree id; a download whose files
    hash to another tree is refused and nothing is installed."""
    fetch, _, payloads = fake_pins
    pins = list(source.PINS)
    pins[0] = dataclasses.replace(pins[0], sha256=None, git_tree="0" * 40)
    monkeypatch.setattr(source, "PINS", tuple(pins))
    with pytest.raises(ToolError, match="hash to git tree .* expected 0{40}"):
        setup(tmp_path / "t", fetch=fetch)
    assert not (tmp_path / "t").exists()
    # the right tree id installs, and the record says how it was verified
    extracted = source.extract(pins[0], payloads["tflite-micro"], tmp_path / "x")
    pins[0] = dataclasses.replace(pins[0], git_tree=source.git_tree_hash(extracted))
    monkeypatch.setattr(source, "PINS", tuple(pins))
    setup(tmp_path / "t", fetch=fetch)
    record = json.loads((tmp_path / "t" / SETUP_RECORD).read_text())
    assert record["archives"][0]["verified"].startswith("git tree ")


def test_the_real_tflm_pin_names_a_git_tree():
    assert len(source.PINS[0].git_tree or "") == 40 and source.PINS[0].name == "tflite-micro"


def _git(*args: str, cwd: Path) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_git_tree_hash_equals_git_write_tree(tmp_path):
    import os
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.b").write_text("dot\n")
    (root / "a-").write_text("dash\n")
    (root / "a" / "b" / "deep.c").write_bytes(b"\x00\x01binary")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    os.symlink("a.b", root / "link")
    _git("init", "-q", cwd=root)
    _git("add", "-A", cwd=root)
    expected = _git("write-tree", cwd=root)
    shutil.rmtree(root / ".git")
    assert source.git_tree_hash(root) == expected
    (root / "a-").write_text("changed\n")
    assert source.git_tree_hash(root) != expected


def test_cached_tree_lives_under_tinyq_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path))
    assert source.cached_tree_path() == tmp_path / "tflm" / source.TFLM_COMMIT
    assert Path(source.cache_root()) == tmp_path


# ------------------------------------------------------------------ setup from local files


def _offline(url: str) -> bytes:
    raise ToolError(OFFLINE_MESSAGE, hint=OFFLINE_HINT, url=url)


def _archives_folder(tmp_path: Path, payloads: dict[str, bytes], skip: tuple[str, ...] = ()
                     ) -> Path:
    """The pinned archives saved under their download names, as a user would keep them."""
    folder = tmp_path / "archives"
    folder.mkdir()
    for pin in source.PINS:
        if pin.name not in skip:
            (folder / pin.local_names()[0]).write_bytes(payloads[pin.name])
    return folder


def test_setup_offline_from_local_archives_verifies_and_installs(tmp_path, fake_pins):
    _, _, payloads = fake_pins
    archives = _archives_folder(tmp_path, payloads)
    tree = setup(tmp_path / "tflm", fetch=_offline, archives=archives)
    assert tree.missing("cmsis_nn") == ()
    root = tmp_path / "tflm"
    assert "PATCHED_BY_TFLM" in (root / DOWNLOADS / "flatbuffers/include/flatbuffers/base.h"
                                 ).read_text()
    record = json.loads((root / SETUP_RECORD).read_text())
    assert all(a["verified"].startswith("sha256 ") and "local file" in a["verified"]
               for a in record["archives"])


def test_a_repacked_local_archive_is_refused(tmp_path, fake_pins):
    _, _, payloads = fake_pins
    archives = _archives_folder(tmp_path, payloads)
    (archives / source.PINS[2].local_names()[0]).write_bytes(_zip("g-top", {"x": "y"}))
    with pytest.raises(UserInputError, match="is not the original gemmlowp archive"):
        setup(tmp_path / "tflm", fetch=_offline, archives=archives)
    assert not (tmp_path / "tflm").exists()


def test_a_missing_dependency_offline_names_the_file_to_add(tmp_path, fake_pins):
    _, _, payloads = fake_pins
    archives = _archives_folder(tmp_path, payloads, skip=("ruy",))
    with pytest.raises(ToolError) as err:
        setup(tmp_path / "tflm", fetch=_offline, archives=archives)
    text = str(err.value)
    assert "\n" not in text and "no ruy found in" in text
    assert "ruy.zip" in text and "ruy/" in text and "tflm_offline.md" in text
    assert not (tmp_path / "tflm").exists()


def _checkout(tmp_path: Path, payloads: dict[str, bytes]) -> Path:
    """A tflite-micro checkout on which `make third_party_downloads` ran (flatbuffers
    patched, top folders stripped), made from the fake archives."""
    pins = {p.name: p for p in source.PINS}
    root = source.extract(pins["tflite-micro"], payloads["tflite-micro"],
                          tmp_path / "x").rename(tmp_path / "tflite-micro")
    for name in ("flatbuffers", "gemmlowp", "ruy"):
        top = source.extract(pins[name], payloads[name], tmp_path / f"x-{name}")
        (root / DOWNLOADS).mkdir(parents=True, exist_ok=True)
        top.rename(root / DOWNLOADS / name)
    source.apply_patch(root / DOWNLOADS / "flatbuffers",
                       root / "tensorflow/lite/micro/tools/make/flatbuffers.patch")
    return root


def test_setup_from_a_checkout_uses_its_downloads_and_does_not_patch_twice(tmp_path,
                                                                           fake_pins):
    _, fetched, payloads = fake_pins
    checkout = _checkout(tmp_path, payloads)
    # CMSIS comes from an extracted folder that kept its top folder.
    archives = tmp_path / "archives"
    for name in ("cmsis", "cmsis_nn"):
        pin = next(p for p in source.PINS if p.name == name)
        source.extract(pin, payloads[name], archives / name)
    events = []
    tree = setup(tmp_path / "tflm", fetch=_offline, tflm_dir=checkout, archives=archives,
                 progress=events.append)
    assert fetched == [] and tree.missing("cmsis_nn") == ()
    base = (tmp_path / "tflm" / DOWNLOADS / "flatbuffers/include/flatbuffers/base.h")
    assert base.read_text().count("PATCHED_BY_TFLM") == 1
    record = json.loads((tmp_path / "tflm" / SETUP_RECORD).read_text())
    verified = {a["name"]: a["verified"] for a in record["archives"]}
    # The fake pin has no git tree: the checkout is installed with a warning.
    assert verified["tflite-micro"].startswith("not verified")
    assert any("warning" in e.message and "not the pinned" in e.message for e in events)
    assert "the checkout's own download" in verified["gemmlowp"]
    assert verified["cmsis_nn"].startswith("not verified (an extracted folder")


def test_an_extracted_folder_is_checked_by_the_release_tree(tmp_path, fake_pins, monkeypatch):
    _, _, payloads = fake_pins
    pins = list(source.PINS)
    i = next(n for n, p in enumerate(pins) if p.name == "gemmlowp")
    top = source.extract(pins[i], payloads["gemmlowp"], tmp_path / "x")
    pins[i] = dataclasses.replace(pins[i], folder_tree=source.git_tree_hash(top))
    monkeypatch.setattr(source, "PINS", tuple(pins))
    archives = tmp_path / "archives"
    archives.mkdir()
    top.rename(archives / "gemmlowp")
    found = source.find_local(pins[i], archives, None)
    assert found is not None and found.verified.startswith("git tree ")
    (archives / "gemmlowp" / "fixedpoint" / "fixedpoint.h").write_text("changed")
    found = source.find_local(pins[i], archives, None)
    assert found is not None and found.verified.startswith("not verified")


def test_the_real_dependency_pins_carry_release_tree_ids():
    for pin in source.PINS[1:]:
        assert len(pin.folder_tree or "") == 40, pin.name


def test_a_checkout_is_checked_against_the_pinned_git_tree(tmp_path, fake_pins, monkeypatch):
    import shutil

    _, _, payloads = fake_pins
    checkout = _checkout(tmp_path, payloads)
    pins = list(source.PINS)
    # An exact export: its files (without downloads) hash to the pinned tree.
    exact = source.git_tree_hash(checkout, skip=(DOWNLOADS,))
    pins[0] = dataclasses.replace(pins[0], git_tree=exact)
    monkeypatch.setattr(source, "PINS", tuple(pins))
    assert source.check_checkout(checkout, pins[0]).startswith(f"git tree {exact} (an exact")
    if shutil.which("git") is None:
        return
    # A git repository: compared by HEAD^{tree}, local changes are reported.
    (checkout / ".gitignore").write_text("tensorflow/lite/micro/tools/make/downloads/\n")
    _git("init", "-q", cwd=checkout)
    _git("add", "-A", cwd=checkout)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=checkout)
    head_tree = _git("rev-parse", "HEAD^{tree}", cwd=checkout)
    pins[0] = dataclasses.replace(pins[0], git_tree=head_tree)
    assert "checked with git" in source.check_checkout(checkout, pins[0])
    (checkout / MARKER).write_text("edited\n")
    assert "local changes" in source.check_checkout(checkout, pins[0])
    pins[0] = dataclasses.replace(pins[0], git_tree="0" * 40)
    assert "another commit" in source.check_checkout(checkout, pins[0])


def test_cli_setup_from_local_files(tmp_path, fake_pins, monkeypatch, capsys):
    _, _, payloads = fake_pins

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(source.urllib.request, "urlopen", no_network)
    checkout = _checkout(tmp_path, payloads)
    archives = _archives_folder(tmp_path, payloads, skip=("tflite-micro",))
    assert main(["setup", "tflm", "--dir", str(tmp_path / "t"), "--tflm-dir", str(checkout),
                 "--archives", str(archives)]) == 0
    assert (tmp_path / "t" / MARKER).is_file()
    assert "is in" in capsys.readouterr().out
    assert main(["setup", "tflm", "--dir", str(tmp_path / "u"),
                 "--archives", str(tmp_path / "nope")]) == 1
    assert "--archives" in capsys.readouterr().err


def test_the_offline_doc_lists_every_pin_and_layout_path():
    """docs/tflm_offline.md is what users copy onto an offline machine: it must follow the
    pins (URL, file name, folder) and the files tinyq looks for."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "tflm_offline.md").read_text()
    assert source.TFLM_COMMIT in doc
    for pin in source.PINS[1:]:
        assert pin.url in doc and f"`{pin.local_names()[0]}`" in doc, pin.name
        assert f"| `{Path(pin.dest).name}` |" in doc, pin.name
    for name, rel in source.DEPENDENCY_FILES.items():
        assert rel[len(DOWNLOADS) + 1:] in doc, name
    assert MARKER in doc
