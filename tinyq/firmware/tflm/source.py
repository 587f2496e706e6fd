"""Where the TensorFlow Lite Micro source tree comes from.

Lookup order (:func:`locate`): ``--tflm-dir DIR``, then ``$TINYQ_TFLM_DIR``, then
the tree ``tinyq setup tflm`` put in the user cache
(``$TINYQ_CACHE_DIR`` or ``~/.cache/tinyq``, ``/tflm/<commit>``). A tree counts
as TFLM when it has ``tensorflow/lite/micro/micro_interpreter.h``; its
third-party code is expected where TFLM's own ``make third_party_downloads``
puts it (``tensorflow/lite/micro/tools/make/downloads/<name>``).

:func:`setup` downloads the pinned TFLM commit (a GitHub archive tarball) and the
third-party archives TFLM pins at that commit, verifies each against the
checksum recorded in :data:`PINS`, extracts them and applies TFLM's flatbuffers
patch. The TFLM archive is verified by content: its extracted files must hash to
the git tree of the pinned commit (SHA-1 of git's tree object, recorded from the
repository itself, so it does not depend on how GitHub compresses the tarball).
The third-party archives carry the MD5 that TFLM's own download scripts check.
An archive with no recorded checksum is refused (its sha256 is shown so a
maintainer can check and record it); nothing is installed half-way.

Offline, :func:`setup` takes what the user already has (docs/tflm_offline.md):
``tflm_dir``, a tflite-micro checkout (checked against the pinned commit's git
tree: with git when it is a repository, by hashing its files when it is an
export; another commit is installed with a warning), and ``archives``, a folder
of dependency archives under their original names (checked by TFLM's MD5s) or
of extracted folders (checked by the git tree id of the pinned release's files when
unchanged, else installed as they are, unverified). Only what is found nowhere locally is
downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tinyq.errors import ToolError, ToolNotFoundError, UserInputError
from tinyq.fileio import atomic_path, check_output
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import run_process

log = logging.getLogger(__name__)

#: Environment variable naming a TFLM tree (after --tflm-dir, before the cache).
TFLM_DIR_ENV = "TINYQ_TFLM_DIR"
#: Environment variable of tinyq's cache root (shared with firmware.compiling and analyze).
CACHE_ENV = "TINYQ_CACHE_DIR"
#: A file every TFLM tree has.
MARKER = "tensorflow/lite/micro/micro_interpreter.h"
#: Where TFLM's Makefile downloads its third-party code, relative to the tree.
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
#: Written into a tree made by `tinyq setup tflm` (what was installed, verified how).
SETUP_RECORD = "tinyq_tflm.json"
#: Seconds one HTTP request may stall (connect or between reads) before setup gives up.
DOWNLOAD_TIMEOUT_S = 60
#: Largest archive accepted (the TFLM tarball is ~10 MB, CMSIS_6 ~40 MB).
MAX_ARCHIVE_BYTES = 512 << 20
#: Seconds `git rev-parse` / `git status` may take on a local checkout (a cold disk).
GIT_TIMEOUT_S = 120

#: The TFLM commit tinyq pins (tflite-micro main, 2026-08-20).
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"

OFFLINE_MESSAGE = "cannot download TFLM (offline?)"
OFFLINE_HINT = ("install from files you have: tinyq setup tflm --tflm-dir CHECKOUT --archives DIR "
                "(docs/tflm_offline.md), or point tinyq at a complete tree with --tflm-dir DIR "
                "or TINYQ_TFLM_DIR")


@dataclass(frozen=True)
class Archive:
    """One archive `tinyq setup tflm` installs.

    ``sha256`` is recorded by tinyq after checking a download; ``md5`` is the value
    TFLM's own download script checks at :data:`TFLM_COMMIT` (copied from that
    script, named in ``source``). At least one is required to install it.
    """

    name: str
    url: str
    top: str               # the archive's top folder
    dest: str              # where its contents go, relative to the tree root
    source: str            # where the pin (and md5) come from
    sha256: str | None = None
    md5: str | None = None
    git_tree: str | None = None  # git tree id the extracted top folder must hash to
    # git tree id of the archive's files (as `git archive` exports the pinned commit:
    # submodule folders empty): checks a folder the user extracted, before BUILD files are
    # deleted and patches applied. Recorded from the upstream repositories.
    folder_tree: str | None = None
    patch: str | None = None    # TFLM patch (path in the TFLM tree) applied after extraction
    cmsis_nn: bool = False      # needed only for CMSIS-NN kernels

    @property
    def kind(self) -> str:
        return "zip" if self.url.endswith(".zip") else "tar.gz"

    def local_names(self) -> tuple[str, ...]:
        """File names this archive may have in an ``archives`` folder: the download's own
        name (``v25.9.23.zip``), the name a browser gives it (``flatbuffers-25.9.23.zip``)
        and ``<name>.zip``."""
        ext = "." + self.kind
        return tuple(dict.fromkeys((self.url.rsplit("/", 1)[1], self.top + ext,
                                    self.name + ext)))


_MAKE = "tensorflow/lite/micro/tools/make"

#: The pinned archives. The TFLM tarball is checked by the git tree id of
#: TFLM_COMMIT (`git rev-parse TFLM_COMMIT^{tree}`; the commit has no
#: .gitattributes, symlinks or submodules, so its archive reproduces the tree
#: exactly). The third-party archives carry the MD5 TFLM's own scripts verify.
PINS: tuple[Archive, ...] = (
    Archive("tflite-micro",
            f"https://github.com/tensorflow/tflite-micro/archive/{TFLM_COMMIT}.tar.gz",
            top=f"tflite-micro-{TFLM_COMMIT}", dest=".",
            source="tinyq's pin", git_tree="8430b71bfb1dee65a747f076e052f0d0ab272f15"),
    Archive("flatbuffers",
            "https://github.com/google/flatbuffers/archive/refs/tags/v25.9.23.zip",
            top="flatbuffers-25.9.23", dest=f"{DOWNLOADS}/flatbuffers",
            source=f"{_MAKE}/flatbuffers_download.sh",
            md5="023eca1e211d64007124420cd6be29c7", patch=f"{_MAKE}/flatbuffers.patch",
            folder_tree="489678cbf326b3f9e0ff680d85260dd1e65cbaa2"),
    Archive("gemmlowp",
            "https://github.com/google/gemmlowp/archive/"
            "719139ce755a0f31cbf1c37f7f98adcc7fc9f425.zip",
            top="gemmlowp-719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
            dest=f"{DOWNLOADS}/gemmlowp", source=f"{_MAKE}/third_party_downloads.inc",
            md5="7e8191b24853d75de2af87622ad293ba",
            folder_tree="08372d9192e19cc2066ddef27b4ee4ff04d98aba"),
    Archive("ruy",
            "https://github.com/google/ruy/archive/d37128311b445e758136b8602d1bbd2a755e115d.zip",
            top="ruy-d37128311b445e758136b8602d1bbd2a755e115d", dest=f"{DOWNLOADS}/ruy",
            source=f"{_MAKE}/third_party_downloads.inc",
            md5="abf7a91eb90d195f016ebe0be885bb6e",
            folder_tree="8f56b37b106f216d3bfdd04a89b637b4fa4094dd"),
    Archive("cmsis",
            "https://github.com/ARM-software/CMSIS_6/archive/"
            "5782d6f8057906d360f4b95ec08a2354afe5c9b9.zip",
            top="CMSIS_6-5782d6f8057906d360f4b95ec08a2354afe5c9b9", dest=f"{DOWNLOADS}/cmsis",
            source=f"{_MAKE}/ext_libs/cmsis_download.sh",
            md5="563e7c6465f63bdc034359e9b536b366", cmsis_nn=True,
            folder_tree="efc9679e0ff807de08c952e93b2db4d2006ffb9b"),
    Archive("cmsis_nn",
            "https://github.com/ARM-software/CMSIS-NN/archive/"
            "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae.zip",
            top="CMSIS-NN-4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
            dest=f"{DOWNLOADS}/cmsis_nn", source=f"{_MAKE}/ext_libs/cmsis_nn_download.sh",
            md5="c960031e7d10cf31c477fb34ef460106", cmsis_nn=True,
            folder_tree="a9c20186ed352c085b3165c00b16779d50d9d0c6"),
)

#: Files that show a dependency is in place (relative to the tree).
DEPENDENCY_FILES: Mapping[str, str] = {
    "flatbuffers": f"{DOWNLOADS}/flatbuffers/include/flatbuffers/flatbuffers.h",
    "gemmlowp": f"{DOWNLOADS}/gemmlowp/fixedpoint/fixedpoint.h",
    "ruy": f"{DOWNLOADS}/ruy/ruy/profiler/instrumentation.h",
    "cmsis": f"{DOWNLOADS}/cmsis/CMSIS/Core/Include/cmsis_compiler.h",
    "cmsis_nn": f"{DOWNLOADS}/cmsis_nn/Include/arm_nnfunctions.h",
}
#: Dependencies the CMSIS-NN kernels need on top of the rest.
CMSIS_NN_DEPENDENCIES = ("cmsis", "cmsis_nn")


@dataclass(frozen=True)
class TflmTree:
    """A TFLM source tree tinyq builds against."""

    path: Path             # absolute
    origin: str            # "--tflm-dir", "TINYQ_TFLM_DIR" or "cache"
    commit: str | None     # git commit when known (setup record or .git)

    def missing(self, kernels: str = "reference") -> tuple[str, ...]:
        """Third-party dependencies not found in the tree for ``kernels``."""
        names = [n for n in DEPENDENCY_FILES if n not in CMSIS_NN_DEPENDENCIES]
        if kernels == "cmsis_nn":
            names += list(CMSIS_NN_DEPENDENCIES)
        return tuple(n for n in names if not (self.path / DEPENDENCY_FILES[n]).is_file())

    def require(self, kernels: str = "reference") -> TflmTree:
        """Raise a one-line UserInputError if a dependency for ``kernels`` is missing."""
        missing = self.missing(kernels)
        if missing:
            raise UserInputError(
                f"the TFLM tree {self.path} has no {', '.join(missing)} in {DOWNLOADS}",
                hint=f"run `tinyq setup tflm --tflm-dir {self.path}` (add --archives DIR "
                "offline: docs/tflm_offline.md) and use the tree it installs",
                path=str(self.path), missing=missing)
        return self


def cache_root() -> Path:
    """``$TINYQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/tinyq``, else ``~/.cache/tinyq``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyq"


def cached_tree_path(root: Path | None = None, commit: str = TFLM_COMMIT) -> Path:
    """Where `tinyq setup tflm` installs the pinned tree."""
    return (root or cache_root()) / "tflm" / commit


def _git_commit(path: Path) -> str | None:
    git = path / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref: "):
        return head or None
    ref = head[5:]
    try:
        return (git / ref).read_text().strip()
    except OSError:
        pass
    try:
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def tree_commit(path: Path) -> str | None:
    """The commit of a tree: from `tinyq setup`'s record, else its .git, else None."""
    try:
        record = json.loads((path / SETUP_RECORD).read_text())
        commit = record.get("commit")
        if isinstance(commit, str) and commit:
            return commit
    except (OSError, ValueError):
        pass
    return _git_commit(path)


def check_tree(path: str | os.PathLike[str], origin: str) -> TflmTree:
    """A TflmTree for ``path``, or a one-line UserInputError saying what is wrong."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserInputError(f"{origin} {p} is not a folder",
                             hint="pass the root of a tflite-micro checkout "
                             "(or run `tinyq setup tflm`)", path=str(p))
    if not (p / MARKER).is_file():
        raise UserInputError(f"{origin} {p} is not a TensorFlow Lite Micro tree (no {MARKER})",
                             hint="pass the root of a tflite-micro checkout "
                             "(or run `tinyq setup tflm`)", path=str(p))
    p = p.resolve()
    return TflmTree(path=p, origin=origin, commit=tree_commit(p))


def locate(tflm_dir: str | os.PathLike[str] | None = None, *,
           env: Mapping[str, str] | None = None, cache: Path | None = None) -> TflmTree:
    """Find the TFLM tree: ``tflm_dir``, then $TINYQ_TFLM_DIR, then the user cache."""
    env = os.environ if env is None else env
    if tflm_dir:
        return check_tree(tflm_dir, "--tflm-dir")
    if env.get(TFLM_DIR_ENV):
        return check_tree(env[TFLM_DIR_ENV], TFLM_DIR_ENV)
    cached = cached_tree_path(cache)
    if (cached / MARKER).is_file():
        return check_tree(cached, "cache")
    raise UserInputError(
        "no TensorFlow Lite Micro source tree found (no --tflm-dir, no "
        f"{TFLM_DIR_ENV}, nothing in {cached})",
        hint="run `tinyq setup tflm` (downloads; offline: add --tflm-dir CHECKOUT --archives "
        f"DIR, see docs/tflm_offline.md), or pass --tflm-dir DIR / set {TFLM_DIR_ENV} to a "
        "complete tflite-micro tree")


# ------------------------------------------------------------------ setup (download)

Fetch = Callable[[str], bytes]


def http_fetch(url: str) -> bytes:
    """GET ``url`` (follows redirects); the offline error is one line."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
            data = response.read(MAX_ARCHIVE_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.debug("downloading %s failed: %s", url, exc)
        raise ToolError(OFFLINE_MESSAGE, hint=OFFLINE_HINT, url=url,
                        reason=str(getattr(exc, "reason", exc))) from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ToolError(f"{url} is larger than {MAX_ARCHIVE_BYTES >> 20} MB",
                        hint="check the pin in tinyq/firmware/tflm/source.py", url=url)
    return data


def verify(archive: Archive, data: bytes) -> str:
    """Check ``data`` against the recorded checksum; return how it was verified."""
    sha256 = hashlib.sha256(data).hexdigest()
    if archive.sha256 is not None:
        if sha256 != archive.sha256:
            raise ToolError(f"{archive.name} archive has sha256 {sha256}, expected "
                            f"{archive.sha256}", hint="the download is corrupt or the "
                            "archive changed upstream; retry, or use --tflm-dir", url=archive.url)
        return f"sha256 {sha256}"
    if archive.md5 is not None:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if md5 != archive.md5:
            raise ToolError(f"{archive.name} archive has md5 {md5}, expected {archive.md5} "
                            f"(from {archive.source})", hint="the download is corrupt or the "
                            "archive changed upstream; retry, or use --tflm-dir", url=archive.url)
        return f"md5 {md5} (TFLM's pin in {archive.source}); sha256 {sha256}"
    if archive.git_tree is not None:
        return f"git tree {archive.git_tree} of {archive.source}; sha256 {sha256}"
    raise ToolError(
        f"tinyq has no recorded checksum for the {archive.name} archive {archive.url} "
        f"(its sha256 is {sha256}), so it will not install it",
        hint="check that archive and record its sha256 in PINS (tinyq/firmware/tflm/source.py), or "
        "use --tflm-dir DIR / TINYQ_TFLM_DIR with a tree you trust", url=archive.url,
        sha256=sha256)


def _git_object_id(kind: bytes, body: bytes) -> str:
    return hashlib.sha1(kind + b" %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def git_tree_hash(folder: str | os.PathLike[str], skip: tuple[str, ...] = (),
                  _prefix: str = "") -> str | None:
    """The git tree id of ``folder``'s files (what `git add -A; git write-tree` would give).

    Files are blobs (mode 100755 when executable, else 100644), symlinks are
    120000 blobs of their target, folders are trees; empty folders are left
    out as git does (None for a folder with nothing in it). ``skip``: paths
    relative to ``folder`` left out (a checkout's .git, its downloads).
    """
    entries: list[tuple[bytes, bytes, bytes, str]] = []
    for child in Path(folder).iterdir():
        name = os.fsencode(child.name)
        rel = _prefix + child.name
        if rel in skip:
            continue
        if child.is_symlink():
            mode, oid = b"120000", _git_object_id(b"blob", os.fsencode(os.readlink(child)))
        elif child.is_dir():
            sub = git_tree_hash(child, skip, rel + "/")
            if sub is None:
                continue
            mode, oid = b"40000", sub
        else:
            executable = child.stat().st_mode & 0o100
            mode = b"100755" if executable else b"100644"
            oid = _git_object_id(b"blob", child.read_bytes())
        sort_key = name + b"/" if mode == b"40000" else name   # git's tree order
        entries.append((sort_key, mode, name, oid))
    if not entries:
        return None
    entries.sort(key=lambda e: e[0])
    body = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid)
                    for _, mode, name, oid in entries)
    return _git_object_id(b"tree", body)


def check_git_tree(archive: Archive, top: Path) -> None:
    """Raise if the extracted ``top`` folder is not the pinned git tree."""
    if archive.git_tree is None:
        return
    got = git_tree_hash(top)
    if got != archive.git_tree:
        raise ToolError(f"the {archive.name} archive's files hash to git tree {got}, expected "
                        f"{archive.git_tree}", hint="the download is corrupt or the archive "
                        "changed upstream; retry, or use --tflm-dir", url=archive.url)


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise ToolError(f"archive member {name!r} escapes the extraction folder",
                        hint="the archive is not a plain source archive; use --tflm-dir")
    return target


def extract(archive: Archive, data: bytes, into: Path) -> Path:
    """Extract ``data`` into ``into``; return the archive's top folder."""
    into = into.resolve()
    if archive.kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                target = _safe_target(into, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            members = tf.getmembers()
            for member in members:
                _safe_target(into, member.name)
            if hasattr(tarfile, "data_filter"):       # Python >= 3.11.4 (and 3.12)
                tf.extractall(into, filter="data")
            else:                                     # e.g. Debian's 3.11.2: files and
                for member in members:                # folders only, checked above
                    if member.isdir():
                        _safe_target(into, member.name).mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target = _safe_target(into, member.name)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with tf.extractfile(member) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        target.chmod(0o755 if member.mode & 0o111 else 0o644)
                    elif member.issym():                # a link must stay inside the tree
                        target = _safe_target(into, member.name)
                        _safe_target(into, str(Path(member.name).parent / member.linkname))
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.symlink_to(member.linkname)
    top = into / archive.top
    if not top.is_dir():
        raise ToolError(f"the {archive.name} archive has no folder {archive.top}",
                        hint="the pin in tinyq/firmware/tflm/source.py is out of date",
                        url=archive.url)
    return top


def apply_patch(folder: Path, patch_file: Path) -> None:
    """Apply a TFLM patch (``-p1``) to ``folder`` with patch(1)."""
    exe = shutil.which("patch")
    if exe is None:
        raise ToolNotFoundError("patch not found (needed for TFLM's flatbuffers patch)",
                                hint="install it: sudo apt-get install patch", tool="patch")
    proc = run_process([exe, "-p1", "--batch", "--forward", "-i", str(patch_file)],
                       cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stdout + proc.stderr).strip().splitlines()[:1]
        raise ToolError(f"applying {patch_file.name} failed: {' '.join(first)}",
                        hint="the pins in tinyq/firmware/tflm/source.py disagree with TFLM; "
                             "use --tflm-dir")


#: A pinned archive found or fetched for setup: its bytes (an archive) or a folder of its
#: contents (a checkout, an extracted archive), and how it was verified.
@dataclass(frozen=True)
class Payload:
    archive: Archive
    verified: str
    data: bytes | None = None
    folder: Path | None = None


def _git_out(folder: Path, *args: str) -> str | None:
    exe = shutil.which("git")
    if exe is None:
        return None
    proc = run_process([exe, "-C", str(folder), *args], capture_output=True, text=True,
                       timeout=GIT_TIMEOUT_S)
    return proc.stdout.strip() if proc.returncode == 0 else None


def check_checkout(folder: Path, archive: Archive,
                   progress: ProgressFn = null_progress) -> str:
    """How far a local tflite-micro tree matches the pinned commit (never raises for a
    mismatch: another commit may still build, so it is installed with a warning).

    A git repository is compared by ``HEAD^{tree}`` and must have no local changes;
    a plain folder is hashed as git would hash it, without its downloads and tinyq's
    record (an exact export of the pinned commit matches).
    """
    if (folder / ".git").exists():
        tree = _git_out(folder, "rev-parse", "HEAD^{tree}")
        if tree is not None:
            changed = _git_out(folder, "status", "--porcelain", "--untracked-files=no")
            if tree == archive.git_tree and not changed:
                return f"git tree {tree} (the pinned commit, checked with git)"
            how = ("has local changes" if tree == archive.git_tree
                   else f"is at another commit (git tree {tree})")
            progress(ProgressEvent("setup", f"warning: the TFLM checkout {folder} {how}; "
                                   f"tinyq is tested with {TFLM_COMMIT[:12]}"))
            return f"not verified: the checkout {how}"
    got = git_tree_hash(folder, skip=(".git", DOWNLOADS, SETUP_RECORD))
    if got == archive.git_tree:
        return f"git tree {got} (an exact export of the pinned commit)"
    progress(ProgressEvent("setup", f"warning: the files of {folder} are not the pinned TFLM "
                           f"commit {TFLM_COMMIT[:12]} (git tree {got}); installing them "
                           "anyway"))
    return f"not verified: files hash to git tree {got}, not the pinned commit's"


def check_folder(folder: Path, archive: Archive) -> str:
    """How an extracted dependency folder was checked: by the git tree id of the pinned
    release's files when it is unchanged, else (patched already, another version) not."""
    if archive.folder_tree is None:
        return "not verified (an extracted folder; no tree id recorded)"
    got = git_tree_hash(folder)
    if got == archive.folder_tree:
        return f"git tree {got} (the pinned release's files)"
    return (f"not verified (an extracted folder whose files hash to git tree {got}, not the "
            "pinned release's: already patched, or another version)")


def _contents(folder: Path, marker: str | None) -> Path:
    """``folder``, or its one subfolder holding ``marker`` (an archive extracted with its
    top folder kept, e.g. ``flatbuffers/flatbuffers-25.9.23/``)."""
    if marker is None or (folder / marker).is_file():
        return folder
    subs = [d for d in folder.iterdir() if d.is_dir() and (d / marker).is_file()]
    return subs[0] if len(subs) == 1 else folder


def _marker(archive: Archive) -> str | None:
    """The file that shows an extracted ``archive`` (relative to its own folder)."""
    if archive.dest == ".":
        return MARKER
    full = DEPENDENCY_FILES.get(archive.name)
    return full[len(archive.dest) + 1:] if full else None


def find_local(archive: Archive, archives: Path | None, tflm_dir: Path | None,
               progress: ProgressFn = null_progress) -> Payload | None:
    """``archive`` from the user's files, verified as far as it can be; None if absent.

    Looked for in ``archives`` as a file (:meth:`Archive.local_names`, checked like a
    download, so a repacked archive is refused) or a folder named after the archive or
    its top folder; then (dependencies) in ``tflm_dir``'s own downloads folder; the
    tflite-micro tree itself is ``tflm_dir``.
    """
    marker = _marker(archive)
    if archives is not None:
        for name in archive.local_names():
            path = archives / name
            if path.is_file():
                if path.stat().st_size > MAX_ARCHIVE_BYTES:
                    raise UserInputError(f"{path} is larger than {MAX_ARCHIVE_BYTES >> 20} MB",
                                         hint="pass the original archive", path=str(path))
                data = path.read_bytes()
                try:
                    how = verify(archive, data)
                except ToolError as exc:
                    raise UserInputError(
                        f"{path} is not the original {archive.name} archive ({exc.message})",
                        hint=f"use the file from {archive.url}, or put its extracted folder "
                        f"in {archives} as {archive.name}/", path=str(path)) from None
                return Payload(archive, f"{how}; local file {path}", data=data)
        for name in (archive.name, archive.top):
            folder = archives / name
            if folder.is_dir() and marker and (_contents(folder, marker) / marker).is_file():
                contents = _contents(folder, marker)
                if archive.dest == ".":
                    how = check_checkout(contents, archive, progress)
                else:
                    how = check_folder(contents, archive)
                return Payload(archive, f"{how}; local folder {folder}", folder=contents)
    if tflm_dir is not None:
        folder = tflm_dir if archive.dest == "." else tflm_dir / archive.dest
        if folder.is_dir() and marker and (folder / marker).is_file():
            how = (check_checkout(folder, archive, progress) if archive.dest == "."
                   else "not verified (the checkout's own download)")
            return Payload(archive, f"{how}; local folder {folder}", folder=folder)
    return None


def _patched(folder: Path, patch_file: Path) -> bool:
    """True when ``patch_file`` is already applied in ``folder`` (it reverses cleanly)."""
    exe = shutil.which("patch")
    if exe is None:
        return False
    proc = run_process([exe, "-p1", "--force", "--dry-run", "-R", "-i", str(patch_file)],
                       cwd=folder, capture_output=True, text=True)
    return proc.returncode == 0


def _copy_folder(src: Path, dest: Path) -> None:
    """Copy a local tree, without git's metadata and (for a checkout) its downloads."""
    skip_downloads = (src / MARKER).is_file()

    def ignore(folder: str, names: list[str]) -> list[str]:
        out = [n for n in names if n == ".git"]
        if skip_downloads and Path(folder) == (src / DOWNLOADS).parent:
            out += [n for n in names if n == Path(DOWNLOADS).name]
        return out

    shutil.copytree(src, dest, symlinks=True, ignore=ignore, dirs_exist_ok=dest.exists())


def _fetch_missing(archive: Archive, fetch: Fetch, local: bool, archives: Path | None) -> bytes:
    try:
        return fetch(archive.url)
    except ToolError as exc:
        if not local:
            raise
        where = f"in {archives}" if archives else "beside the checkout"
        why = "offline?" if exc.message == OFFLINE_MESSAGE else exc.message
        raise ToolError(
            f"no {archive.name} found {where}, and it could not be downloaded ({why})",
            hint=f"put {archive.local_names()[0]} (from {archive.url}) or its extracted "
            f"folder {archive.name}/ in the --archives folder (docs/tflm_offline.md)",
            url=archive.url) from None


def setup(dest: str | os.PathLike[str] | None = None, *, cmsis_nn: bool = True,
          force: bool = False, fetch: Fetch = http_fetch,
          progress: ProgressFn = null_progress,
          tflm_dir: str | os.PathLike[str] | None = None,
          archives: str | os.PathLike[str] | None = None) -> TflmTree:
    """Install the pinned TFLM tree and its dependencies (default: into the user cache).

    Each piece comes from the user's files when given (``tflm_dir``: a tflite-micro
    checkout; ``archives``: a folder of dependency archives or extracted folders, see
    :func:`find_local`), else is downloaded. Everything is found and verified before
    anything is installed; the tree appears atomically. An existing complete tree is
    reused unless ``force``.
    """
    target = Path(dest).expanduser() if dest else cached_tree_path()
    local_tree = check_tree(tflm_dir, "--tflm-dir").path if tflm_dir else None
    local_archives = Path(archives).expanduser() if archives else None
    if local_archives is not None and not local_archives.is_dir():
        raise UserInputError(f"--archives {local_archives} is not a folder",
                             hint="pass the folder holding the dependency archives "
                             "(docs/tflm_offline.md)", path=str(local_archives))
    local = local_tree is not None or local_archives is not None
    if local_tree is not None and local_tree == target.resolve():
        raise UserInputError(f"--tflm-dir {local_tree} is where the tree would be installed",
                             hint="pass another --dir, or use the checkout directly with "
                             "--tflm-dir in the other commands", path=str(local_tree))
    if (target / MARKER).is_file() and not force:
        tree = check_tree(target, "cache" if dest is None else "--dir")
        if not tree.missing("cmsis_nn" if cmsis_nn else "reference"):
            progress(ProgressEvent("setup", f"TFLM is already in {target}"))
            return tree
    # Only an empty folder or a tree tinyq installed (marked, unchanged) is replaced:
    # refuse anything else before downloading.
    check_output(target, force=True, kind="folder")
    wanted = [a for a in PINS if cmsis_nn or not a.cmsis_nn]
    payloads: list[Payload] = []
    for i, archive in enumerate(wanted):
        found = find_local(archive, local_archives, local_tree, progress) if local else None
        if found is not None:
            progress(ProgressEvent("setup", f"{archive.name}: {found.verified}", done=i,
                                   total=len(wanted)))
            payloads.append(found)
            continue
        progress(ProgressEvent("setup", f"downloading {archive.name}", done=i,
                               total=len(wanted)))
        data = _fetch_missing(archive, fetch, local, local_archives)
        payloads.append(Payload(archive, verify(archive, data), data=data))
    progress(ProgressEvent("setup", "verified", done=len(wanted), total=len(wanted)))
    with atomic_path(target, force=True, kind="folder") as tmp:
        work = tmp.parent / (tmp.name + ".extract")
        work.mkdir()
        record = []
        for payload in payloads:
            archive = payload.archive
            dest_dir = tmp / archive.dest
            if payload.folder is not None:
                if archive.dest != ".":
                    dest_dir.parent.mkdir(parents=True, exist_ok=True)
                _copy_folder(payload.folder, dest_dir)
            else:
                top = extract(archive, payload.data or b"", work / archive.name)
                check_git_tree(archive, top)
                if archive.dest == ".":
                    shutil.move(str(top), str(tmp))
                else:
                    dest_dir.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(top), str(dest_dir))
            if archive.dest != ".":
                for build_file in [*dest_dir.rglob("BUILD"), *dest_dir.rglob("BUILD.bazel")]:
                    build_file.unlink()     # as TFLM's download scripts do
                if archive.patch and not _patched(dest_dir, tmp / archive.patch):
                    apply_patch(dest_dir, tmp / archive.patch)
            record.append({"name": archive.name, "url": archive.url,
                           "verified": payload.verified})
        shutil.rmtree(work, ignore_errors=True)
        (tmp / SETUP_RECORD).write_text(json.dumps(
            {"commit": TFLM_COMMIT, "archives": record}, indent=2) + "\n")
    progress(ProgressEvent("setup", f"installed TFLM {TFLM_COMMIT[:12]} in {target}"))
    return check_tree(target, "cache" if dest is None else "--dir")
