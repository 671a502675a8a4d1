"""Getting a fitted network out of this package: plain torch, ONNX, ``torch.export``.

Every exported model computes the same thing as
:meth:`ResBuilderClassifier.predict_proba` up to its last softmax, and needs
nothing from ``sklearn_resbuilder`` at inference time.

What the exported models take and give
--------------------------------------
*Input*: a ``float32`` tensor of shape ``(N, C, H, W)`` (``input_shape_`` of
the estimator, channel-first, any batch size ``N``) holding pixels in the
**raw scale** the model was fitted on:

* fitted on ``uint8`` images: values 0..255 (``uint8`` or float tensors);
  the exported model divides by 255 itself;
* fitted on float images: the same float scale as the ``X`` given to ``fit``
  (e.g. 0..16 for sklearn's digits, 0..1 for images already scaled).

The per-channel standardisation (``input_mean_``, ``input_std_``) is folded in
as buffers. ``to_torch`` modules also accept ``uint8`` tensors (cast to float
first); the ONNX model's input is typed ``float32``.

*Output*: logits of shape ``(N, n_classes)``, columns in ``classes_`` order,
or probabilities (softmax over the columns) with ``proba=True``. Map a column
index back to a label with ``classes_``; ONNX files and ``torch.export``
archives carry the labels as metadata for that (see :func:`export_onnx`,
:func:`export_program`).

Flat rows ``(N, D)`` are not accepted by the exported models: reshape them to
``(N, C, H, W)`` as :meth:`ResBuilderClassifier.preprocess` documents, or feed
the output of ``preprocess`` to ``to_torch(include_preprocessing=False)``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os

import numpy as np
import torch
from torch import nn

from .data import UINT8_SCALE

__all__ = ["inference_module", "to_torch", "export_onnx", "export_program", "export_metadata"]

#: Name of the ``torch.export`` extra file / ONNX metadata key holding :func:`export_metadata`.
METADATA_KEY = "sklearn_resbuilder"

# ONNX files over this size must keep their weights in a separate file (protobuf's 2 GB limit).
_ONNX_INLINE_LIMIT = 1 << 30


class Preprocess(nn.Module):
    """``(float(x) [/ 255] - mean) / std``, as ``inference.prepare_batch`` does it.

    ``divide`` is a plain bool decided at export time (not a tensor), so tracing
    and ``torch.export`` see one branch only.
    """

    def __init__(self, mean, std, divide: bool):
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean, np.float32))
        std = torch.as_tensor(np.asarray(std, np.float32))
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())
        self.divide = bool(divide)

    def forward(self, x):
        x = x.to(torch.float32)
        if self.divide:
            x = x / UINT8_SCALE
        return (x - self.mean) / self.std


class ResBuilderInference(nn.Module):
    """The fitted network with optional preprocessing in front and softmax behind."""

    def __init__(self, net: nn.Module, preprocess: nn.Module | None, proba: bool):
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.proba = bool(proba)

    def forward(self, x):
        if self.preprocess is not None:
            x = self.preprocess(x)
        x = self.net(x)
        if self.proba:
            x = torch.softmax(x.float(), dim=1)
        return x


def _fitted_on_uint8(clf) -> bool:
    dtype = getattr(clf, "_fit_dtype_", None)
    if dtype is None:
        raise ValueError(
            "this estimator does not record the pixel dtype it was fitted on (it was "
            "fitted by an older sklearn_resbuilder); refit it to export it with "
            "preprocessing, or use include_preprocessing=False")
    return np.dtype(dtype) == np.uint8


def inference_module(clf, *, include_preprocessing: bool = True,
                     proba: bool = False) -> ResBuilderInference:
    """An eval-mode CPU copy of ``clf.module_`` wrapped for export.

    Parameters
    ----------
    clf : ResBuilderClassifier
        A fitted estimator.
    include_preprocessing : bool, default=True
        Fold scaling and standardisation in: the module takes raw pixels (see
        the module docstring). False: it takes what ``clf.preprocess`` returns.
    proba : bool, default=False
        End with a softmax (probabilities) instead of logits.

    Returns
    -------
    ResBuilderInference
        Holds its own copy of the weights: changing it leaves ``clf`` alone.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf)
    net = copy.deepcopy(clf.module_).cpu().float().eval()
    pre = None
    if include_preprocessing:
        pre = Preprocess(clf.input_mean_, clf.input_std_, _fitted_on_uint8(clf))
    module = ResBuilderInference(net, pre, proba).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def to_torch(clf, *, include_preprocessing: bool = True, proba: bool = False):
    """A self-contained ``torch.fx.GraphModule`` of the fitted network.

    ``torch.fx.symbolic_trace`` inlines this package's module classes, so the
    result's submodules are ``torch.nn`` built-ins only (Conv2d, BatchNorm2d,
    MaxPool2d, AvgPool2d for a downsampling stem, Linear, Identity and plain
    containers; 1-D networks are the same modules with ``1 x k`` windows) and
    its ``forward`` is
    generated Python code calling ``torch``: ``torch.save`` it and load it with
    ``torch.load(path, weights_only=False)`` where this package is not
    installed.

    Parameters
    ----------
    clf : ResBuilderClassifier
        A fitted estimator.
    include_preprocessing : bool, default=True
        Take raw pixels ``(N, C, H, W)`` (see the module docstring); False takes
        the standardised tensor ``clf.preprocess(X)`` returns.
    proba : bool, default=False
        Output probabilities instead of logits.

    Returns
    -------
    torch.fx.GraphModule
        In eval mode, on CPU, parameters without gradients.
    """
    module = inference_module(clf, include_preprocessing=include_preprocessing, proba=proba)
    graph_module = torch.fx.symbolic_trace(module)
    return graph_module.eval()


def export_metadata(clf, *, include_preprocessing: bool = True, proba: bool = False) -> dict:
    """JSON-serialisable facts a serving stack needs beside the exported graph.

    Returns
    -------
    dict
        ``classes`` (labels in output-column order, as JSON values),
        ``classes_dtype``, ``input_shape`` ``[C, H, W]``, ``input`` (what the
        input holds), ``output`` ("logits" or "probabilities"), ``flops``,
        ``architecture`` (``Architecture.to_dict``) and the library version.
    """
    from . import __version__

    if include_preprocessing:
        scale = ("uint8 pixels 0..255 (uint8 or float32)" if _fitted_on_uint8(clf)
                 else "float32 pixels in the scale of the X given to fit")
    else:
        scale = "float32, already standardised (ResBuilderClassifier.preprocess)"
    classes = np.asarray(clf.classes_)
    return {
        "library": "sklearn_resbuilder",
        "version": __version__,
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes.tolist()],
        "classes_dtype": classes.dtype.str,
        "input_shape": [int(d) for d in clf.input_shape_],
        "input": f"(N, C, H, W) {scale}",
        "output": "probabilities" if proba else "logits",
        "flops": int(clf.best_architecture_.flops()),
        "architecture": clf.best_architecture_.to_dict(),
    }


def _example_input(clf) -> torch.Tensor:
    # Batch 2, not 1: torch.export specialises sizes 0 and 1 to constants.
    return torch.zeros((2, *clf.input_shape_), dtype=torch.float32)


def _batch_dim():
    return {"x": {0: torch.export.Dim("batch", min=1)}}


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' INFO/WARNING log lines out of the user's logs.

    They describe torch's internals (graph capture, decompositions), not the
    user's model; a failure still raises with its message. The ONNX
    exporter's progress prints are switched off by ``verbose=False``.
    """
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                              "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_program(clf, path, *, include_preprocessing: bool = True, proba: bool = False):
    """Export with ``torch.export`` and save it as a ``.pt2`` archive.

    ``torch.export`` is PyTorch's recommended way to capture a model for
    deployment (its docs mark TorchScript deprecated in favour of it). The
    archive holds the graph and weights, no pickled Python classes. The batch
    dimension is dynamic.

    Parameters
    ----------
    clf : ResBuilderClassifier
        A fitted estimator.
    path : str or path-like
        Where to write (conventionally ``*.pt2``).
    include_preprocessing, proba : bool
        As in :func:`to_torch`.

    Returns
    -------
    torch.export.ExportedProgram
        ``torch.export.load(path).module()`` gives a callable module.
        :func:`export_metadata` is stored as the extra file
        ``"sklearn_resbuilder"`` (JSON), read with
        ``torch.export.load(path, extra_files={"sklearn_resbuilder": ""})``.
    """
    module = inference_module(clf, include_preprocessing=include_preprocessing, proba=proba)
    meta = export_metadata(clf, include_preprocessing=include_preprocessing, proba=proba)
    with _quiet():
        program = torch.export.export(module, (_example_input(clf),),
                                      dynamic_shapes=_batch_dim())
    torch.export.save(program, os.fspath(path),
                      extra_files={METADATA_KEY: json.dumps(meta, default=str)})
    return program


def export_onnx(clf, path, *, include_preprocessing: bool = True, proba: bool = False,
                opset_version: int | None = None):
    """Export to an ONNX file with ``torch.onnx.export(..., dynamo=True)``.

    The graph has one input ``"images"`` (float32, ``(batch, C, H, W)``, batch
    dynamic) and one output, ``"logits"`` or ``"probabilities"``
    (``(batch, n_classes)``). :func:`export_metadata` is stored as JSON in the
    model's ``metadata_props`` under ``"sklearn_resbuilder"`` (onnxruntime:
    ``session.get_modelmeta().custom_metadata_map``). Weights are stored in the
    file itself unless they exceed 1 GiB (then beside it, as ``<path>.data``).

    Parameters
    ----------
    clf, include_preprocessing, proba
        As in :func:`to_torch` (``clf`` fitted).
    path : str or path-like
        Where to write (conventionally ``*.onnx``).
    opset_version : int, optional
        ONNX opset; torch's default when None.

    Returns
    -------
    torch.onnx.ONNXProgram

    Raises
    ------
    ImportError
        When ``onnx`` or ``onnxscript`` is missing (``pip install
        "sklearn-resbuilder[export]"``).
    """
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"export_onnx needs {' and '.join(missing)}: install the 'export' extra, "
            "pip install \"sklearn-resbuilder[export]\"")
    module = inference_module(clf, include_preprocessing=include_preprocessing, proba=proba)
    meta = export_metadata(clf, include_preprocessing=include_preprocessing, proba=proba)
    n_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    with _quiet():
        program = torch.onnx.export(
            module, (_example_input(clf),), None, dynamo=True, verbose=False,
            input_names=["images"], output_names=["probabilities" if proba else "logits"],
            dynamic_shapes=_batch_dim(), opset_version=opset_version)
        program.model.metadata_props[METADATA_KEY] = json.dumps(meta, default=str)
        program.save(os.fspath(path), external_data=n_bytes > _ONNX_INLINE_LIMIT)
    return program
