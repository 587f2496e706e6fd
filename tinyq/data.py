"""The one data loader for every tinyq command that takes samples.

Accepted inputs:

* ``.npz`` with an array ``x`` (samples, batch first) and optionally ``y`` (labels:
  class indices ``(N,)`` or one-hot ``(N, C)``);
* ``.npy`` (samples only);
* a folder of images (``.png .jpg .jpeg .bmp .gif .ppm .pgm .tif .tiff``, read with
  Pillow). Images are resized to the model input (``input_shape`` is required),
  converted to grayscale when the input has 1 channel and to RGB when it has 3,
  and scaled by ``image_scale``: ``"0-1"`` (pixel / 255, the default),
  ``"-1-1"`` (pixel / 127.5 - 1) or ``"0-255"`` (pixel values as they are). When
  the folder has sub-folders, each sub-folder is a class: its images get label
  ``i`` where ``i`` is the sub-folder's rank in sorted name order.

Checks (each a :class:`~tinyq.errors.DataError` with one line and the fix): a missing
or unreadable file, a missing ``x``, a non-numeric dtype, samples whose shape is not
the model input (a missing batch dimension, or a missing trailing channel dimension of
1, is added, and a batch dimension of 1 kept on every sample is dropped, when that
reading is the only one that fits), NaN/inf values, no samples,
fewer samples than asked, labels that do not match the samples; and, with
:func:`check_label_range`, labels outside the model's classes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError

import numpy as np

from tinyq.errors import DataError, ToolNotFoundError
from tinyq.fileio import open_input_file

log = logging.getLogger(__name__)

#: image file suffixes read from a folder (lower case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff")

#: --image-scale choices: name -> (multiplier, offset) applied to 0..255 pixel values
IMAGE_SCALES: dict[str, tuple[float, float]] = {
    "0-1": (1.0 / 255.0, 0.0),
    "-1-1": (1.0 / 127.5, -1.0),
    "0-255": (1.0, 0.0),
}
DEFAULT_IMAGE_SCALE = "0-1"
#: file signatures: .npy arrays, and the zip archives .npz files are
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
#: Most values one array of a data file (or one image folder) may hold. tinyq keeps the
#: samples in memory and converts them to float32, so this is 1 GiB of float32; the
#: largest MLPerf Tiny test set (visual wake words, 1,000 images of 96x96x3) is 27.6 M
#: values, 10x fewer. Checked from the file's header before anything is allocated, so a
#: header claiming 10^12 samples (or a zip bomb) is refused at once.
MAX_DATA_VALUES = 1 << 28
#: Longest .npy header read: numpy's own limit for files it does not trust
#: (numpy.lib.format's max_header_size default); a real header is ~128 bytes.
NPY_MAX_HEADER_BYTES = 10_000
#: Most pixels of one image in an image folder. Decoding converts it to RGB before the
#: resize to the model input (3 bytes a pixel plus a copy), so 64 MP is ~0.4 GB; a
#: phone photo is 12-50 MP, and a TinyML input is a few hundred pixels a side. Checked
#: from the image header before decoding (also below Pillow's own 89 MP bomb warning).
MAX_IMAGE_PIXELS = 1 << 26


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples (batch first), optional labels, and where they came from."""

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def class_labels(self) -> np.ndarray | None:
        """Labels as class indices (one-hot rows become their argmax), or None."""
        if self.y is None:
            return None
        y = self.y
        if y.ndim == 2 and y.shape[1] > 1:
            return np.argmax(y, axis=1).astype(np.int64)
        y = y.reshape(len(y), -1)
        if y.shape[1] != 1 or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            return None
        return y[:, 0].astype(np.int64)


def require_class_labels(y: np.ndarray | None, what: str) -> np.ndarray:
    """Class indices from integer labels or one-hot rows; a DataError if there are none."""
    if y is None:
        raise DataError(f"{what} has no labels `y`: accuracy needs class labels",
                        hint="save the file with numpy.savez(path, x=..., y=...)")
    labels = Dataset(np.empty((len(y), 0)), np.asarray(y), what).class_labels()
    if labels is None:
        raise DataError(f"the labels in {what} are not class indices",
                        hint="store integer class labels (or one-hot rows) under 'y'")
    return labels


def check_label_range(y: np.ndarray, classes: int, what: str) -> None:
    """Refuse labels a ``classes``-way classifier cannot predict (a DataError, one line).

    ``y``: class indices ``(N,)`` or one-hot rows ``(N, C)``. One-hot rows must be
    ``classes`` wide; indices must lie in ``0..classes-1``. Such labels would only
    lower the accuracy silently (they can never match a prediction).
    """
    labels = require_class_labels(y, what)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and y.shape[1] != classes:
        raise DataError(f"the labels in {what} are one-hot rows of width {y.shape[1]}, but the "
                        f"model has {classes} classes",
                        hint=f"store one-hot rows of width {classes} or class indices "
                             f"0..{classes - 1}")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise DataError(f"{int(bad.sum())} of {len(labels)} labels in {what} are outside the "
                        f"valid range 0..{classes - 1} (found {int(labels.min())}.."
                        f"{int(labels.max())}; the model has {classes} classes)",
                        hint=f"use class indices 0..{classes - 1}, or the model these labels "
                             "belong to")


def load_data(path: str | os.PathLike[str] | Dataset | np.ndarray,
              input_shape: Sequence[int | None] | None = None,
              dtype: np.dtype | str | None = None,
              image_scale: str = DEFAULT_IMAGE_SCALE,
              limit: int | None = None) -> Dataset:
    """Load and check samples for a model whose input (without batch) is ``input_shape``.

    ``dtype``: the dtype the samples must become (e.g. ``float32``); integer data
    converts to a float dtype, float data never converts to an integer one. Without
    it, floating data becomes float32 and integer data keeps its dtype.
    ``limit``: use the first ``limit`` samples; fewer than that is an error.
    An already loaded :class:`Dataset` or array goes through the same checks.

    Example::

        data = tinyq.load_data("test.npz")
        print(data.x.shape, data.y[:5])
    """
    if image_scale not in IMAGE_SCALES:
        raise DataError(f"unknown image scale {image_scale!r}",
                        hint=f"use one of {', '.join(IMAGE_SCALES)}")
    if isinstance(path, Dataset):
        x, y, source = path.x, path.y, path.source
    elif isinstance(path, np.ndarray):
        x, y, source = path, None, "array"
    else:
        x, y, source = _read(Path(path), input_shape, image_scale)
    x = _check_dtype(x, dtype, source)
    if input_shape is not None:
        x = _fit_shape(x, tuple(input_shape), source)
    elif x.ndim == 0:
        raise DataError(f"{source} holds a scalar, not samples",
                        hint="save an array of samples, batch first")
    if x.shape[0] == 0:
        raise DataError(f"{source} holds no samples", hint="pass a file with at least one sample")
    if limit is not None:
        if limit < 1:
            raise DataError(f"the number of samples asked must be at least 1, got {limit}",
                            hint="pass a positive sample count")
        if x.shape[0] < limit:
            raise DataError(f"{source} holds {x.shape[0]} samples, {limit} were asked",
                            hint=f"pass at most {x.shape[0]} samples or a bigger file")
        x = x[:limit]
    _check_finite(x, source)
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            example = f" (e.g. {y.reshape(-1)[0].item()!r})" if y.size and y.dtype.kind in "SU" \
                else ""
            raise DataError(f"the labels y in {source} are {y.dtype} values{example}, not "
                            "class numbers",
                            hint="store class indices 0..C-1 (or one-hot rows) under 'y'; map "
                                 "class names to indices in sorted order, as image folders do")
        if y.ndim == 0 or y.shape[0] < x.shape[0] or (limit is None and y.shape[0] != x.shape[0]):
            raise DataError(f"{source} has {x.shape[0]} samples but labels y of shape "
                            f"{tuple(y.shape)}", hint="save one label per sample in y")
        y = y[: x.shape[0]]
    return Dataset(x=x, y=y, source=source)


# --------------------------------------------------------------------------- reading

def _read(path: Path, input_shape, image_scale: str):
    if not path.exists():
        raise DataError(f"data {path} not found",
                        hint="pass an existing .npz, .npy file or image folder")
    if path.is_dir():
        return _read_folder(path, input_shape, image_scale)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'}",
                        hint="pass a .npz (x, optional y), a .npy, or a folder of images")
    with open_input_file(path, "data", DataError) as (handle, size):
        magic = handle.read(6)
        if not magic.startswith((NPY_MAGIC, ZIP_MAGIC)):
            raise DataError(f"{path} is not a valid {suffix} file (neither a numpy array nor "
                            "a zip archive)", hint="re-create it with numpy.save/numpy.savez")
        handle.seek(0)
        if magic.startswith(NPY_MAGIC):
            if suffix == ".npz":
                raise DataError(f"{path} is a .npy array, not a .npz archive",
                                hint="rename it to .npy or save with numpy.savez(x=...)")
            _check_npy_header(handle, size, str(path))
            handle.seek(0)
            return _load_arrays(handle, path, ()), None, str(path)
        x, y = _load_arrays(handle, path, _checked_npz_members(handle, path))
    return x, y, str(path)


def _check_npy_header(handle, data_bytes: int, name: str) -> None:
    """Refuse a .npy (or .npz member) from its header, before numpy allocates anything.

    ``data_bytes``: the bytes the file (member) holds, header included. Refused: no
    valid header, Python objects, more than MAX_DATA_VALUES values, and a header that
    promises more data than the file holds (truncated).
    """
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(handle)
        # numpy reads as many header bytes as the length field says before checking them:
        # check the length first (a damaged field can claim gigabytes)
        length_field = handle.read(2 if version == (1, 0) else 4)
        length = int.from_bytes(length_field, "little")
        if length > NPY_MAX_HEADER_BYTES or length > data_bytes:
            raise ValueError(f"header length {length:,} bytes is impossible")
        header = io.BytesIO(length_field + handle.read(length))
        if version == (1, 0):
            shape, _fortran, dtype = npformat.read_array_header_1_0(header)
        else:
            shape, _fortran, dtype = npformat.read_array_header_2_0(header)
    except (ValueError, SyntaxError, TokenError, EOFError, OSError, zipfile.BadZipFile,
            zlib.error, NotImplementedError) as exc:
        raise DataError(f"{name} is not a valid numpy array ({_excerpt(exc)})",
                        hint="re-create it with numpy.save/numpy.savez") from None
    if dtype.hasobject:
        raise DataError(f"{name} holds Python objects, not numeric arrays",
                        hint="save numeric arrays with numpy.save/numpy.savez")
    values = math.prod(shape)
    if values > MAX_DATA_VALUES:
        raise DataError(f"{name} holds {values:,} values (shape {tuple(shape)}), over "
                        f"tinyq's limit of {MAX_DATA_VALUES:,} (1 GiB as float32)",
                        hint="pass fewer samples (split the file, or save the first N)")
    have = data_bytes - handle.tell()
    if values * dtype.itemsize > have:
        raise DataError(f"{name} is truncated: its header promises {values * dtype.itemsize:,} "
                        f"bytes of data (shape {tuple(shape)}, {dtype}), it holds {have:,}",
                        hint="re-create it with numpy.save/numpy.savez")


def _checked_npz_members(handle, path: Path) -> tuple[str, ...]:
    """The arrays ``x`` (and ``y``) of an .npz, each checked from its header and the zip's
    declared sizes (a zip bomb declares its real size) before anything is decompressed."""
    try:
        with zipfile.ZipFile(handle) as archive:
            members = {name[:-4]: info for info in archive.infolist()
                       if (name := info.filename).endswith(".npy")}
            if "x" not in members:
                found = ", ".join(members) if members else "no arrays"
                raise DataError(f"{path} has no array 'x' (found: {found})",
                                hint="save the samples as numpy.savez(file, x=samples, "
                                     "y=labels)")
            keys = tuple(k for k in ("x", "y") if k in members)
            for key in keys:
                with archive.open(members[key]) as member:
                    _check_npy_header(member, members[key].file_size,
                                      f"array '{key}' in {path}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:           # RuntimeError: zipfile's "encrypted" flag
        raise DataError(f"{path} is a truncated or corrupt .npz archive ({_excerpt(exc)})",
                        hint="re-create it with numpy.savez") from None
    handle.seek(0)
    return keys


#: Characters of a library's error text quoted in a message (numpy quotes a whole
#: damaged header, binary bytes included).
EXCERPT_CHARS = 80


def _excerpt(exc: BaseException) -> str:
    """A library error's text on one printable line of at most EXCERPT_CHARS characters."""
    text = "".join(c if c.isprintable() and c.isascii() else "?" for c in str(exc))
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


def _load_arrays(handle, path: Path, keys: tuple[str, ...]):
    """np.load after the header checks: one array (``keys`` empty) or ``(x, y or None)``."""
    try:
        loaded = np.load(handle, allow_pickle=False)
        if not keys:
            return loaded
        with loaded:
            return loaded["x"], (loaded["y"] if "y" in keys else None)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path} holds Python objects, not numeric arrays",
                            hint="save numeric arrays with numpy.save/numpy.savez") from None
        raise DataError(f"{path} is a truncated or corrupt {path.suffix} file ({_excerpt(exc)})",
                        hint="re-create it with numpy.save/numpy.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError) as exc:
        raise DataError(f"{path} is a truncated or corrupt {path.suffix} file ({_excerpt(exc)})",
                        hint="re-create it with numpy.save/numpy.savez") from None


def _import_pil():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ToolNotFoundError("reading image folders needs Pillow",
                                hint="pip install pillow (part of tinyq[convert])") from exc
    return Image


def _read_image(Image, file: Path, mode: str, width: int, height: int) -> np.ndarray:
    """One image as float32 pixels at ``width`` x ``height``; its size is checked from the
    header before it is decoded (MAX_IMAGE_PIXELS)."""
    with open_input_file(file, "image", DataError) as (handle, _size):
        try:
            with warnings.catch_warnings():
                # tinyq checks the size itself (below), with a lower limit
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(handle) as img:
                    pixels = img.size[0] * img.size[1]
                    if pixels > MAX_IMAGE_PIXELS:
                        raise DataError(
                            f"image {file} is {img.size[0]}x{img.size[1]} = {pixels:,} pixels, "
                            f"over tinyq's limit of {MAX_IMAGE_PIXELS:,} per image",
                            hint=f"shrink it first (the model input is {width}x{height}) or "
                                 "remove it from the folder")
                    img = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                    return np.asarray(img, dtype=np.float32)
        except Image.DecompressionBombError as exc:
            raise DataError(f"image {file} is over tinyq's limit of {MAX_IMAGE_PIXELS:,} pixels "
                            f"per image ({_excerpt(exc)})",
                            hint=f"shrink it first (the model input is {width}x{height}) or "
                                 "remove it from the folder") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {file} ({_excerpt(exc)})",
                            hint="remove or replace the file") from None


def _read_folder(folder: Path, input_shape, image_scale: str):
    Image = _import_pil()
    if input_shape is None or len(input_shape) != 3 or input_shape[-1] not in (1, 3) \
            or input_shape[0] is None or input_shape[1] is None:
        raise DataError(f"{folder} is an image folder, but the model input "
                        f"{None if input_shape is None else tuple(input_shape)} is not an "
                        "image of shape (height, width, 1 or 3)",
                        hint="pass the samples as a .npz or .npy file instead")
    height, width, channels = (int(d) for d in input_shape)
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if classes:
        entries = [(f, label) for label, sub in enumerate(classes)
                   for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        entries = [(f, None) for f in sorted(folder.iterdir())
                   if f.suffix.lower() in IMAGE_SUFFIXES]
    if not entries:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                        hint="put image files in the folder (or one sub-folder per class)")
    values = len(entries) * height * width * channels
    if values > MAX_DATA_VALUES:
        raise DataError(f"{folder} holds {len(entries):,} images = {values:,} values at the model "
                        f"input's {height}x{width}x{channels}, over tinyq's limit of "
                        f"{MAX_DATA_VALUES:,} (1 GiB as float32)",
                        hint="pass a folder with fewer images")
    scale, offset = IMAGE_SCALES[image_scale]
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(entries), height, width, channels), dtype=np.float32)
    for i, (file, _) in enumerate(entries):
        x[i] = _read_image(Image, file, mode, width, height).reshape(height, width, channels) \
            * scale + offset
    y = np.array([label for _, label in entries], dtype=np.int64) if classes else None
    log.debug("read %d images from %s (scale %s)", len(entries), folder, image_scale)
    source = f"{folder} ({len(entries)} images, scale {image_scale})"
    return x, y, source


# --------------------------------------------------------------------------- checks

def _check_dtype(x: np.ndarray, dtype, source: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise DataError(f"{source} holds {x.dtype} data, not numbers",
                        hint="save the samples as a float32 (or integer) array")
    if dtype is None:
        return x.astype(np.float32) if x.dtype.kind == "f" and x.dtype != np.float32 else x
    want = np.dtype(dtype)
    if want.kind not in "fiu":
        raise DataError(f"cannot feed {want} inputs from data", hint="use a numeric model input")
    if x.dtype == want:
        return x
    if x.dtype.kind == "f" and want.kind != "f":
        raise DataError(f"{source} holds {x.dtype} samples, the model input is {want}",
                        hint=f"save the samples as {want}, or pass float data to quantize")
    if want.kind != "f":
        info = np.iinfo(want)
        if x.size and (x.min() < info.min or x.max() > info.max):
            raise DataError(f"{source} holds {x.dtype} values in [{x.min()}, {x.max()}], "
                            f"outside the {want} input range",
                            hint=f"save the samples as {want}")
    return x.astype(want)


def _matches(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(shape) == len(want) and all(
        w is None or w == s for s, w in zip(shape, want, strict=True))


def _fit_shape(x: np.ndarray, want: tuple[int | None, ...], source: str) -> np.ndarray:
    """Samples shaped ``(N, *want)``; add a missing batch or channel-1 dim when unambiguous."""
    if x.ndim == len(want) + 1 and _matches(x.shape[1:], want):
        return x
    readings = []
    if _matches(x.shape, want):                                   # one sample, no batch dim
        readings.append(x[None, ...])
    if want and want[-1] == 1 and x.ndim == len(want) and _matches(x.shape[1:], want[:-1]):
        readings.append(x[..., None])                             # channel dim of 1 missing
    if x.ndim == len(want) + 2 and x.shape[1] == 1 and _matches(x.shape[2:], want):
        readings.append(x[:, 0])                  # each sample kept its batch dim of 1
    if len(readings) == 1:
        log.debug("%s: reshaped %s to %s", source, x.shape, readings[0].shape)
        return readings[0]
    shown = tuple("?" if d is None else d for d in want)
    if len(readings) > 1:
        raise DataError(f"{source} has shape {tuple(x.shape)}: ambiguous for the model input "
                        f"{shown} (one sample, or samples without the channel dim?)",
                        hint=f"save the samples with shape (N, {', '.join(map(str, shown))})")
    sample = tuple(x.shape[1:]) if x.ndim else ()
    raise DataError(f"{source} has samples of shape {sample} (array {tuple(x.shape)}), "
                    f"the model input is {shown}",
                    hint=f"save the samples with shape (N, {', '.join(map(str, shown))})")


def _check_finite(x: np.ndarray, source: str) -> None:
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    nans = int(np.isnan(x).sum())
    infs = int(bad.sum()) - nans
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    samples = int(bad.reshape(len(x), -1).any(axis=1).sum())
    raise DataError(f"{source} holds {nans} NaN and {infs} inf values in {samples} sample(s), "
                    f"first at sample {first[0]}, index {first[1:]} within it",
                    hint="clean or drop those samples")
