"""tinyq.data: the one data loader, its formats and every bad-input message."""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.data import Dataset, load_data
from tinyq.errors import DataError


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_with_labels(tmp_path):
    x = np.random.default_rng(0).random((5, 4, 4, 1))
    path = _npz(tmp_path, x=x, y=np.arange(5))
    d = load_data(path, input_shape=(4, 4, 1))
    assert d.x.dtype == np.float32 and d.x.shape == (5, 4, 4, 1)
    np.testing.assert_allclose(d.x, x.astype(np.float32))
    assert list(d.y) == [0, 1, 2, 3, 4]
    assert str(path) in d.source and len(d) == 5


def test_npy_and_limit(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((7, 3), np.float32))
    d = load_data(path, input_shape=(3,), limit=4)
    assert d.x.shape == (4, 3) and d.y is None


def test_none_dims_match_anything(tmp_path):
    d = load_data(_npz(tmp_path, x=np.zeros((2, 10, 3), np.float32)), input_shape=(None, 3))
    assert d.x.shape == (2, 10, 3)


def test_missing_channel_dim_is_added(tmp_path):
    d = load_data(_npz(tmp_path, x=np.zeros((6, 8, 8), np.float32)), input_shape=(8, 8, 1))
    assert d.x.shape == (6, 8, 8, 1)


def test_missing_batch_dim_is_added(tmp_path):
    d = load_data(_npz(tmp_path, x=np.zeros((8, 8, 3), np.float32)), input_shape=(8, 8, 3))
    assert d.x.shape == (1, 8, 8, 3)


def test_ambiguous_shape_is_refused():
    # (1, 1, 1) is one sample of input (1, 1, 1) AND one sample of (1, 1) without channel
    with pytest.raises(DataError, match="ambiguous"):
        load_data(np.zeros((1, 1, 1), np.float32), input_shape=(1, 1, 1))


def test_wrong_shape_names_both_shapes(tmp_path):
    with pytest.raises(DataError) as err:
        load_data(_npz(tmp_path, x=np.zeros((4, 28, 28, 1), np.float32)), input_shape=(8, 8, 1))
    msg = str(err.value)
    assert "(28, 28, 1)" in msg and "(8, 8, 1)" in msg and "\n" not in msg


def test_missing_file():
    with pytest.raises(DataError, match="not found"):
        load_data("/nonexistent/data.npz")


@pytest.mark.parametrize("name, payload", [
    ("bad.npz", b"this is not a zip archive"),
    ("bad.npy", b"\x93NUMPY garbage"),
])
def test_corrupt_file(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError, match="not a valid"):
        load_data(path)


def test_truncated_npz(tmp_path):
    path = _npz(tmp_path, x=np.zeros((100, 50), np.float32))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError):
        load_data(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match="unknown data format"):
        load_data(path)


def test_missing_x_lists_keys(tmp_path):
    with pytest.raises(DataError, match=r"no array 'x' \(found: images, labels\)"):
        load_data(_npz(tmp_path, images=np.zeros((2, 3)), labels=np.zeros(2)))


def test_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        load_data(path)


@pytest.mark.parametrize("x", [np.array([["a", "b"]]), np.zeros((2, 2), bool),
                               np.zeros((2, 2), np.complex64)])
def test_non_numeric_dtype(x):
    with pytest.raises(DataError, match="not numbers"):
        load_data(x)


def test_float_data_for_integer_input_is_refused():
    with pytest.raises(DataError, match="float32 samples, the model input is int8"):
        load_data(np.zeros((2, 3), np.float32), dtype="int8")


def test_integer_data_out_of_range():
    with pytest.raises(DataError, match="outside the int8 input range"):
        load_data(np.full((2, 3), 200, np.int32), dtype="int8")


def test_integer_data_converts_to_float():
    d = load_data(np.arange(6, dtype=np.uint8).reshape(2, 3), dtype="float32")
    assert d.x.dtype == np.float32


def test_nan_inf_counted_and_located():
    x = np.zeros((4, 3), np.float32)
    x[2, 1] = np.nan
    x[3, 0] = np.inf
    x[3, 2] = np.nan
    with pytest.raises(DataError) as err:
        load_data(x)
    msg = str(err.value)
    assert "2 NaN and 1 inf" in msg and "2 sample(s)" in msg and "first at sample 2" in msg
    assert "first at sample 2, index (1,) within it" in msg      # not (2, 1): the whole array


def test_nan_position_is_within_the_sample():
    x = np.zeros((3, 4, 2), np.float32)
    x[1, 3, 0] = np.nan
    with pytest.raises(DataError, match=r"first at sample 1, index \(3, 0\) within it"):
        load_data(x)


def test_empty():
    with pytest.raises(DataError, match="no samples"):
        load_data(np.zeros((0, 3), np.float32), input_shape=(3,))


def test_fewer_samples_than_asked():
    with pytest.raises(DataError, match="holds 3 samples, 10 were asked"):
        load_data(np.zeros((3, 2), np.float32), limit=10)


def test_labels_must_match_samples(tmp_path):
    with pytest.raises(DataError, match="labels y"):
        load_data(_npz(tmp_path, x=np.zeros((4, 2)), y=np.zeros(3)))


def test_class_labels_from_one_hot_and_indices():
    one_hot = np.eye(3)[[2, 0, 1]]
    assert list(Dataset(np.zeros((3, 1)), one_hot, "t").class_labels()) == [2, 0, 1]
    assert list(Dataset(np.zeros((2, 1)), np.array([[1], [0]]), "t").class_labels()) == [1, 0]
    assert Dataset(np.zeros((2, 1)), np.array([0.5, 1.0]), "t").class_labels() is None
    assert Dataset(np.zeros((2, 1)), None, "t").class_labels() is None


def test_unknown_image_scale():
    with pytest.raises(DataError, match="unknown image scale"):
        load_data(np.zeros((1, 2)), image_scale="0-2")


# --------------------------------------------------------------------------- image folders

@pytest.fixture
def image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="needs Pillow")
    root = tmp_path / "images"
    for label, value in (("cat", 0), ("dog", 255)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((12, 10, 3), value, np.uint8)).save(root / label / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("ignored")
    return root


@pytest.mark.parametrize("scale, low, high", [("0-1", 0.0, 1.0), ("-1-1", -1.0, 1.0),
                                              ("0-255", 0.0, 255.0)])
def test_image_folder_classes_resize_and_scale(image_folder, scale, low, high):
    d = load_data(image_folder, input_shape=(4, 5, 3), image_scale=scale)
    assert d.x.shape == (4, 4, 5, 3) and d.x.dtype == np.float32
    assert list(d.y) == [0, 0, 1, 1]            # sub-folders in sorted order: cat, dog
    np.testing.assert_allclose(d.x[0], low, atol=1e-6)
    np.testing.assert_allclose(d.x[3], high, atol=1e-5)
    assert f"scale {scale}" in d.source


def test_image_folder_grayscale(image_folder):
    d = load_data(image_folder, input_shape=(3, 3, 1))
    assert d.x.shape == (4, 3, 3, 1)


def test_image_folder_needs_image_input(image_folder):
    with pytest.raises(DataError, match="not an image"):
        load_data(image_folder, input_shape=(640,))


def test_image_folder_without_images(tmp_path):
    pytest.importorskip("PIL.Image", reason="needs Pillow")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_data(tmp_path / "empty", input_shape=(4, 4, 1))


def test_broken_image(tmp_path):
    pytest.importorskip("PIL.Image", reason="needs Pillow")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_data(tmp_path / "imgs", input_shape=(4, 4, 1))


def test_label_range_names_count_and_range():
    from tinyq.data import check_label_range

    check_label_range(np.array([0, 9, 3]), 10, "t.npz")                    # in range: fine
    check_label_range(np.eye(10)[[1, 2]], 10, "t.npz")
    with pytest.raises(DataError) as info:
        check_label_range(np.array([0, 12, -1, 3]), 10, "t.npz")
    assert str(info.value).startswith("2 of 4 labels in t.npz are outside the valid range "
                                      "0..9 (found -1..12")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="one-hot rows of width 12, but the model has 10"):
        check_label_range(np.eye(12)[[1, 2]], 10, "t.npz")
    with pytest.raises(DataError, match="no labels"):
        check_label_range(None, 10, "t.npz")
