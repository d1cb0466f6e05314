"""Export a PyTorch model to an axiomatic model file.

The model file (docs/format.md) is a plain safetensors file: 8 bytes of little-endian
header length N, N bytes of JSON header (padded with spaces), then every tensor's bytes,
little-endian and row-major, tiling the data buffer with no gap. The network's graph is a JSON
document stored as a string in the header's `__metadata__["axiomatic.graph"]`: version 1, one
input ("input", its shape without the batch, optionally its value range), the nodes in
topological order, one output, optionally the class labels. A node's parameters are the tensors
named `<node name>.<param>`; nodes made from modules are named by their module path, so the
parameter names are exactly PyTorch's state_dict names (`layer1.0.conv1.weight`).

The model is traced with torch.fx (symbolic_trace) and each traced call becomes one node:

    nn.Conv2d -> conv2d            nn.Linear -> linear            nn.BatchNorm2d -> batchnorm2d
    nn.ReLU, F.relu, torch.relu, Tensor.relu -> relu              nn.LeakyReLU, F.leaky_relu -> leaky_relu
    nn.Sigmoid, torch.sigmoid -> sigmoid                          nn.Tanh, torch.tanh -> tanh
    nn.Hardtanh, nn.ReLU6, F.hardtanh, F.relu6 -> hardtanh        nn.SiLU, F.silu -> silu
    nn.Hardswish, F.hardswish -> hardswish                        nn.Hardsigmoid, F.hardsigmoid -> hardsigmoid
    nn.GELU, F.gelu -> gelu (approximate 'none' or 'tanh')
    nn.LayerNorm, F.layer_norm (without weight and bias) -> layer_norm (over the input's trailing dimensions)
    Tensor.permute, torch.permute, Tensor.transpose, torch.transpose -> permute (the batch stays first)
    Tensor.view, Tensor.reshape, torch.reshape, torch.flatten to an inner end_dim -> reshape: the
        first entry must be -1 or x.size(0); the per-sample shape is written resolved
    Tensor.contiguous -> identity
    nn.Identity, nn.Dropout, F.dropout (eval mode: the identity) -> identity
    nn.MaxPool2d, F.max_pool2d -> maxpool2d                       nn.AvgPool2d, F.avg_pool2d -> avgpool2d
    nn.AdaptiveAvgPool2d, F.adaptive_avg_pool2d -> adaptive_avgpool2d
    nn.Flatten, torch.flatten, Tensor.flatten -> flatten (to the last dimension; else a reshape)
    +, torch.add -> add     -, torch.sub -> sub     *, torch.mul -> mul     /, torch.div -> div
        (operands of one rank broadcast under NumPy's rules, as squeeze-excitation's [C, 1, 1] * [C, H, W])
    torch.cat -> concat
    nn.Softmax, F.softmax, nn.LogSoftmax, F.log_softmax (and the Tensor methods) -> softmax, log_softmax
    a tensor and a number (x * 0.5, 0.1 + x, x / 8) -> affine
    x[:, i], x[:, a:b] (one sample axis) -> slice (then a reshape dropping the axis for x[:, i])
    x.chunk(k, dim) -> one slice per piece        torch.unsqueeze -> reshape
    x.mean([2, 3]) of [N, C, H, W] -> adaptive_avgpool2d to 1x1 (then a reshape unless keepdim)
    a parameter used as a tensor (ViT's class token and position embedding, ConvNeXt's layer scale;
        x.expand(n, -1, ...) of it) -> constant, its per-sample shape from broadcasting
    torchvision's stochastic_depth (eval mode) -> identity
    torchvision's LayerNorm2d (ConvNeXt) -> permute, layer_norm, permute
    nn.MultiheadAttention (self-attention, batch_first, no masks, need_weights=False) -> linear
        (the packed projection), reshape, permute, slices for q, k, v, affine (1/sqrt(head dim)),
        matmul, softmax over the last axis, matmul, permute, reshape, linear (out_proj)
    x.size(), x.size(d), x.shape, x.dim(), and arithmetic on them (channel_shuffle, ViT's patch
        grid) are evaluated while exporting; the batch size stays free (no arithmetic on it)

Anything the format cannot express is refused with ExportError, one line naming the module (or
function) and the reason: string padding other than 'valid', padding modes other than zeros,
divisor_override, pool dilation, return_indices, BatchNorm without running statistics, other
modules and functions, a number divided by a tensor, broadcasting between different ranks,
axes that name the batch dimension, more than one input or output, non-float parameters;
torchvision's Swin Transformer and MaxViT are refused by name before tracing. In-place
variants (nn.ReLU(inplace=True), x += y) are exported as their out-of-place ops; a final check
runs the exported graph in PyTorch (float64) against the model, which catches the case where an
in-place update changes a tensor that is read again later. A forward torch.fx cannot trace (an
`if` on a tensor's value, ...) is refused naming the function, file and line where tracing stopped,
the module whose forward was running, and what to do. Nothing is written when a model is refused.

The model is traced and checked in eval mode (BatchNorm uses its running statistics, Dropout is
the identity); export() then puts every submodule back in the mode it found it. Parameters are written as F32 (F64 with f64=True); the rest of the state_dict, unused
by the graph (BatchNorm's num_batches_tracked as I64), is written too, so the file also loads back
into the PyTorch model with load_state_dict.

As a module:

    from export_torch import export, ExportError
    export(model, (3, 224, 224), "resnet18.safetensors",
           labels=None,                 # class names, one per output value
           input_range=(0.0, 1.0),      # the input's value range (pixel space), or None
           normalize=(mean, std),       # prepend a per-channel (x - mean) / std node, or None
           f64=False,                   # write parameters as F64
           check=True)                  # compare the exported graph with the model in float64

example_input_shape leaves out the batch dimension. export() returns the graph (a dict).

As a command (run with the Python that has torch, e.g. /usr/bin/python3 on Debian):

    export_torch.py (--lenet | --torchvision NAME) --out FILE [options]

    --lenet               the LeNet-28 (1x28x28 input, range [0, 1]): conv 1->16 3x3, relu,
                          max-pool 2, conv 16->32 3x3, relu, max-pool 2, linear 800->128, relu,
                          linear 128->10
    --torchvision NAME    a torchvision model by its constructor's name (resnet18, vgg11, ...),
                          randomly initialized (no download); input 3x224x224
    --num-classes N       torchvision: the number of classes (default 1000)
    --kwargs JSON         torchvision: more constructor arguments, e.g. '{"aux_logits": false}'
    --state-dict FILE     load weights saved with torch.save(model.state_dict(), FILE)
    --seed S              seed of the random initialization (default 0)
    --input-shape C H W   the input's shape without the batch
    --range LO HI         the input's value range
    --mean M.., --std S.. prepend a normalize node (one number, or one per channel)
    --imagenet            --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 --range 0 1
    --labels FILE         class labels, one per line
    --f64                 write parameters as F64 instead of F32
    --no-check            skip the comparison of the exported graph with the model
    --out FILE            the model file to write

Exit status 0 on success, 1 with one line on stderr when the model cannot be exported.
"""

import argparse
import dis
import inspect
import json
import math
import operator
import os
import struct
import sys
import warnings

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["export", "ExportError", "lenet28", "torchvision_model"]

INPUT_NAME = "input"
_REQUIRED = object()  # marks an argument without a default in the signatures below

# torch dtype -> safetensors dtype, for the tensors the graph does not use.
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


class ExportError(ValueError):
    """The model cannot be written as a version-1 model file; the message is one line."""


# Model classes refused by name, before tracing: what they compute that the format cannot say.
_REFUSED_MODELS = {
    "SwinTransformer": "torchvision's swin_* (Swin Transformer): shifted-window attention rolls the feature map "
                       "(torch.roll), pads it to whole windows and adds a relative position bias gathered by index, "
                       "which the format cannot express",
    "MaxVit": "torchvision's maxvit_t (MaxViT): block and grid attention over regrouped windows with a relative "
              "position bias gathered by index, which the format cannot express",
}


# ------------------------------------------------------------------------------------------------
# Small helpers


def _pair(value, what, where):
    """An int or a 2-sequence of ints as [a, b]."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], int):
        return [value[0], value[0]]
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [int(value[0]), int(value[1])]
    raise ExportError(f"{where}: {what} {value!r} is not an integer or a pair of integers")


def _shape(node):
    """The output shape ShapeProp recorded for an fx node (batch included), or None."""
    meta = node.meta.get("tensor_meta")
    return list(meta.shape) if hasattr(meta, "shape") else None


def _axis(dim, rank, what, where):
    """A PyTorch dim resolved against the rank (batch included); the batch dimension is refused."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ExportError(f"{where}: {what} must be an integer, found {dim!r}")
    if not -rank <= dim < rank:
        raise ExportError(f"{where}: {what} {dim} is out of range for a rank-{rank} tensor")
    dim %= rank
    if dim == 0:
        raise ExportError(f"{where}: {what} names the batch dimension; the format's axes name a sample's dimensions")
    return dim


def _bind(node, signature, where):
    """A call's arguments by name, defaults filled in (signature: a list of (name, default)). A last
    name "*name" takes the remaining positional arguments as a tuple (x.permute(0, 2, 1))."""
    names = [name.lstrip("*") for name, _ in signature]
    args = node.args
    if signature and signature[-1][0].startswith("*") and len(args) >= len(signature):
        args = tuple(args[:len(signature) - 1]) + (tuple(args[len(signature) - 1:]),)
    if len(args) > len(signature):
        raise ExportError(f"{where}: takes at most {len(signature)} arguments, found {len(args)}")
    values = dict(zip(names, args))
    for key, value in node.kwargs.items():
        if key not in names:
            raise ExportError(f"{where}: unexpected argument {key!r}")
        values[key] = value
    for name, default in signature:
        name = name.lstrip("*")
        if name not in values:
            if default is _REQUIRED:
                raise ExportError(f"{where}: missing argument {name!r}")
            values[name] = default
    return values


def _check_float_param(name, tensor, where):
    if not tensor.is_floating_point():
        raise ExportError(f"{where}: parameter {name!r} has dtype {tensor.dtype}; parameters must be floating point")
    if not torch.isfinite(tensor).all():
        raise ExportError(f"{where}: parameter {name!r} holds NaN or Inf")


# ------------------------------------------------------------------------------------------------
# Ops shared by modules and functions: each returns (op, attributes)


def _conv2d(m, where):
    if isinstance(m.padding, str):
        if m.padding != "valid":  # 'valid' is padding 0; 'same' depends on the input, asymmetric for even kernels
            raise ExportError(f"{where}: padding={m.padding!r} cannot be expressed; give the padding as integers")
        padding = [0, 0]
    else:
        padding = _pair(m.padding, "padding", where)
    if m.padding_mode != "zeros":
        raise ExportError(f"{where}: padding_mode={m.padding_mode!r} cannot be expressed; only 'zeros'")
    return "conv2d", {"stride": _pair(m.stride, "stride", where), "padding": padding,
                      "dilation": _pair(m.dilation, "dilation", where), "groups": int(m.groups)}


def _maxpool2d(kernel, stride, padding, dilation, ceil_mode, return_indices, where):
    if return_indices:
        raise ExportError(f"{where}: return_indices=True cannot be expressed (the output must be one tensor)")
    if _pair(dilation, "dilation", where) != [1, 1]:
        raise ExportError(f"{where}: pool dilation {dilation!r} cannot be expressed; only 1")
    kernel = _pair(kernel, "kernel_size", where)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride, "stride", where)
    return "maxpool2d", {"kernel": kernel, "stride": stride, "padding": _pair(padding, "padding", where),
                         "ceil_mode": bool(ceil_mode)}


def _avgpool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, where):
    if divisor_override is not None:
        raise ExportError(f"{where}: divisor_override={divisor_override!r} cannot be expressed")
    kernel = _pair(kernel, "kernel_size", where)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride, "stride", where)
    return "avgpool2d", {"kernel": kernel, "stride": stride, "padding": _pair(padding, "padding", where),
                         "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}


def _adaptive_avgpool2d(output_size, in_shape, where):
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise ExportError(f"{where}: output_size {output_size!r} is not an integer or a pair")
    # None keeps the input's size along that dimension.
    size = [in_shape[2 + i] if s is None else s for i, s in enumerate(output_size)]
    return "adaptive_avgpool2d", {"output_size": _pair(size, "output_size", where)}


def _flatten(start_dim, end_dim, in_shape, where):
    rank = len(in_shape)
    end = end_dim % rank if isinstance(end_dim, int) and -rank <= end_dim < rank else None
    start = _axis(start_dim, rank, "start_dim", where)
    if end is None or end < start:
        raise ExportError(f"{where}: end_dim={end_dim!r} does not fit start_dim {start_dim!r} in a rank-{rank} tensor")
    if end != rank - 1:  # the dimensions start..end joined: a reshape
        joined = 1
        for d in in_shape[start:end + 1]:
            joined *= d
        return "reshape", {"shape": [int(d) for d in in_shape[1:start]] + [joined] + [int(d) for d in in_shape[end + 1:]]}
    return "flatten", {"start_dim": start}


def _reshape(shape, in_shape, out_shape, sizes, where):
    """A reshape (view, reshape, flatten to an inner dimension) that keeps the batch first: the
    first entry is -1 or the batch size read from the input (x.size(0)); the per-sample shape is
    written as PyTorch computed it, with no -1 left."""
    shape = list(shape)
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = list(shape[0])
    first = shape[0] if shape else None
    batch = isinstance(first, torch.fx.Node) and sizes.get(first) == "batch"
    if not batch and first != -1:
        raise ExportError(f"{where}: the first entry of the shape must keep the batch (-1 or x.size(0)), found "
                          f"{first!r}; a fixed batch size cannot be expressed")
    if not batch and any(isinstance(v, int) and v == -1 for v in shape[1:]):
        raise ExportError(f"{where}: shape {shape} infers two dimensions")
    for v in shape[1:]:
        if isinstance(v, torch.fx.Node) and not isinstance(sizes.get(v), int):
            raise ExportError(f"{where}: shape entry {v.name!r} is computed at run time; only sizes of a sample can be used")
    if out_shape[0] != in_shape[0]:
        raise ExportError(f"{where}: the reshape from {in_shape} to {out_shape} moves values across samples")
    return "reshape", {"shape": [int(d) for d in out_shape[1:]]}


def _permute(dims, in_shape, where):
    dims = list(dims)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    rank = len(in_shape)
    if len(dims) != rank or not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        raise ExportError(f"{where}: dims {dims} is not a permutation of the {rank} dimensions")
    dims = [d % rank for d in dims]
    if sorted(dims) != list(range(rank)):
        raise ExportError(f"{where}: dims {dims} is not a permutation of the {rank} dimensions")
    if dims[0] != 0:
        raise ExportError(f"{where}: dims {dims} moves the batch dimension; it must stay first")
    return "permute", {"dims": dims}


def _transpose(dim0, dim1, in_shape, where):
    rank = len(in_shape)
    dims = list(range(rank))
    a, b = _axis(dim0, rank, "dim0", where), _axis(dim1, rank, "dim1", where)
    dims[a], dims[b] = dims[b], dims[a]
    return "permute", {"dims": dims}


# Some calls become several nodes: a converter returns (_CHAIN, steps). A step is a dict: the op and
# its attributes, and optionally "params" (name -> tensor), "name" (the node's name, e.g. a module
# path, so the parameters keep their state_dict names) and "inputs" (indices of earlier steps;
# -1 - i is the call's tensor operand i; by default the step before, or operand 0 for the first).
_CHAIN = "chain"


def _step(op, inputs=None, params=None, name=None, **attributes):
    step = {"op": op, "attributes": attributes}
    if inputs is not None:
        step["inputs"] = inputs
    if params:
        step["params"] = params
    if name is not None:
        step["name"] = name
    return step


def _mean(dims, keepdim, dtype, in_shape, where):
    """x.mean([2, 3]) of [N, C, H, W] (MNASNet's global pool): adaptive_avgpool2d to 1x1, then
    the 1x1 dropped unless keepdim."""
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    rank = len(in_shape)
    resolved = sorted(_axis(d, rank, "dim", where) for d in dims)
    if rank != 4 or resolved != [2, 3] or dtype is not None:
        raise ExportError(f"{where}: only the mean over dims [2, 3] of an [N, C, H, W] tensor can be expressed, "
                          f"found dims {dims} of a rank-{rank} tensor")
    pool = _step("adaptive_avgpool2d", output_size=[1, 1])
    if keepdim:
        return _CHAIN, [pool]
    return _CHAIN, [pool, _step("reshape", shape=[int(in_shape[1])])]


def _unsqueeze(dim, in_shape, out_shape, where):
    _axis(dim, len(in_shape) + 1, "dim", where)
    return "reshape", {"shape": [int(d) for d in out_shape[1:]]}


def _tensor_index(index, in_shape, out_shape, where):
    """x[:, i] or x[:, a:b] (one sample axis indexed, step 1): a slice, then a reshape when an
    integer index drops the axis."""
    index = list(index) if isinstance(index, tuple) else [index]
    if not index or index[0] != slice(None):
        raise ExportError(f"{where}: index {index!r} selects along the batch dimension; only x[:, ...] can be expressed")
    picked = [(d, v) for d, v in enumerate(index) if d > 0 and v != slice(None)]
    if len(picked) != 1 or any(v is Ellipsis or v is None for _, v in picked):
        raise ExportError(f"{where}: index {index!r} can be expressed only when it picks along one sample axis")
    axis, v = picked[0]
    size = int(in_shape[axis])
    if isinstance(v, int) and not isinstance(v, bool):
        if not -size <= v < size:
            raise ExportError(f"{where}: index {v} is out of range for size {size}")
        start, end = v % size, v % size + 1
    elif isinstance(v, slice) and v.step in (None, 1) and all(isinstance(b, (int, type(None))) for b in (v.start, v.stop)):
        start, end, _ = v.indices(size)
        if start >= end:
            raise ExportError(f"{where}: slice {v} is empty")
    else:
        raise ExportError(f"{where}: index {v!r} along axis {axis} can be expressed only as an integer or a slice with step 1")
    steps = [_step("slice", axis=axis, start=start, end=end)]
    if isinstance(v, int):
        steps.append(_step("reshape", shape=[int(d) for d in out_shape[1:]]))
    return _CHAIN, steps


def _scalar_affine(op, tensor_first, number, where):
    """A tensor with a number: x + c, c + x, x - c, c - x, x * c, c * x, x / c as affine."""
    c = float(number)
    if op == "add":
        return "affine", {"scale": 1.0, "offset": c}
    if op == "sub":
        return "affine", ({"scale": 1.0, "offset": -c} if tensor_first else {"scale": -1.0, "offset": c})
    if op == "mul":
        return "affine", {"scale": c, "offset": 0.0}
    if op == "div" and tensor_first:
        if c == 0 or not math.isfinite(1.0 / c):
            raise ExportError(f"{where}: division by {number!r} cannot be expressed")
        return "affine", {"scale": 1.0 / c, "offset": 0.0}
    raise ExportError(f"{where}: a number divided by a tensor cannot be expressed")


def _softmax(op, dim, dtype, in_shape, where):
    if dim is None:
        raise ExportError(f"{where}: dim=None (PyTorch's implicit choice) is ambiguous; give dim")
    if dtype is not None:
        raise ExportError(f"{where}: dtype={dtype!r} cannot be expressed")
    return op, {"axis": _axis(dim, len(in_shape), "dim", where)}


# ------------------------------------------------------------------------------------------------
# Modules: type -> converter(module, input shape, where) -> (op, attributes, {param: tensor})


def _module_params(module, names):
    return {name: getattr(module, name) for name in names if getattr(module, name, None) is not None}


def _from_batchnorm2d(m, in_shape, where):
    if m.running_mean is None or m.running_var is None:
        raise ExportError(f"{where}: track_running_stats=False normalizes with the batch's statistics, "
                          "which cannot be expressed; only the inference form with running statistics")
    return "batchnorm2d", {"eps": float(m.eps)}, _module_params(m, ["running_mean", "running_var", "weight", "bias"])


def _hardtanh(min_val, max_val, where):
    min_val, max_val = float(min_val), float(max_val)
    if not min_val < max_val:
        raise ExportError(f"{where}: min_val {min_val} must be below max_val {max_val}")
    return "hardtanh", {"min_val": min_val, "max_val": max_val}


def _gelu(approximate, where):
    if approximate not in ("none", "tanh"):
        raise ExportError(f"{where}: approximate={approximate!r} is not 'none' or 'tanh'")
    return "gelu", {"approximate": approximate}


def _layer_norm(normalized_shape, eps, in_shape, where):
    normalized = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    if not normalized or len(normalized) >= len(in_shape):
        raise ExportError(f"{where}: normalized_shape {normalized} must name some of a sample's trailing dimensions "
                          f"(input shape {in_shape}); the batch is never normalized over")
    if normalized != list(in_shape[len(in_shape) - len(normalized):]):
        raise ExportError(f"{where}: normalized_shape {normalized} is not the input's trailing shape {in_shape}")
    return "layer_norm", {"normalized_ndim": len(normalized), "eps": float(eps)}


def _from_layer_norm(m, in_shape, where):
    return (*_layer_norm(m.normalized_shape, m.eps, in_shape, where), _module_params(m, ["weight", "bias"]))


def _from_layer_norm2d(m, in_shape, where, path):
    """torchvision's LayerNorm2d (ConvNeXt): a LayerNorm over the channels of [N, C, H, W], as
    permute to channels-last, layer_norm, permute back."""
    if len(in_shape) != 4:
        raise ExportError(f"{where}: expected an [N, C, H, W] input, found shape {in_shape}")
    op, attributes = _layer_norm(m.normalized_shape, m.eps, [in_shape[0], in_shape[2], in_shape[3], in_shape[1]], where)
    return _CHAIN, [_step("permute", dims=[0, 2, 3, 1]),
                    _step(op, params=_module_params(m, ["weight", "bias"]), name=path, **attributes),
                    _step("permute", dims=[0, 3, 1, 2])], {}


def _from_attention(m, in_shape, where, path):
    """nn.MultiheadAttention as self-attention (query, key and value one tensor [N, S, E],
    batch_first, no masks), in eval mode: the packed projection, the heads split, softmax(q k^T /
    sqrt(d)) v, the heads joined, the output projection. Steps: see the indices below."""
    if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise ExportError(f"{where}: only batch_first self-attention with one packed projection, without bias_k, "
                          "bias_v or add_zero_attn, can be expressed")
    if len(in_shape) != 3:
        raise ExportError(f"{where}: expected an [N, S, E] input, found shape {in_shape}")
    S, E, H = int(in_shape[1]), int(m.embed_dim), int(m.num_heads)
    d = E // H
    in_proj = {"weight": m.in_proj_weight}
    if m.in_proj_bias is not None:
        in_proj["bias"] = m.in_proj_bias
    out_proj = _module_params(m.out_proj, ["weight", "bias"])
    heads = lambda k, source: [_step("slice", inputs=[source], axis=1, start=k, end=k + 1),  # [N, 1, H, S, d]
                               _step("reshape", shape=[H, S, d])]                           # [N, H, S, d]
    steps = [_step("linear", params=in_proj, name=f"{path}.in_proj"),    # 0: [N, S, 3E]
             _step("reshape", shape=[S, 3, H, d]),                        # 1
             _step("permute", dims=[0, 2, 3, 1, 4])]                      # 2: [N, 3, H, S, d]
    steps += heads(0, 2) + heads(1, 2) + heads(2, 2)                      # 3-4 q, 5-6 k, 7-8 v
    steps += [_step("permute", inputs=[6], dims=[0, 1, 3, 2]),            # 9: k^T [N, H, d, S]
              _step("affine", inputs=[4], scale=1.0 / math.sqrt(d), offset=0.0),  # 10: q / sqrt(d)
              _step("matmul", inputs=[10, 9]),                            # 11: [N, H, S, S]
              _step("softmax", axis=-1),                                  # 12
              _step("matmul", inputs=[12, 8]),                            # 13: [N, H, S, d]
              _step("permute", dims=[0, 2, 1, 3]),                        # 14: [N, S, H, d]
              _step("reshape", shape=[S, E]),                             # 15
              _step("linear", params=out_proj, name=f"{path}.out_proj")]  # 16: [N, S, E]
    return _CHAIN, steps, {}


def _chain_modules():
    """Modules written as several nodes: type -> converter(module, input shape, where, path).
    torch.fx keeps them whole (leaves); torchvision's are added when torchvision is there."""
    table = {nn.MultiheadAttention: _from_attention}
    try:
        from torchvision.models.convnext import LayerNorm2d
        table[LayerNorm2d] = _from_layer_norm2d
    except ImportError:
        pass
    return table


_CHAIN_MODULES = _chain_modules()

_MODULES = {
    nn.Conv2d: lambda m, s, w: (*_conv2d(m, w), _module_params(m, ["weight", "bias"])),
    nn.Linear: lambda m, s, w: ("linear", {}, _module_params(m, ["weight", "bias"])),
    nn.BatchNorm2d: _from_batchnorm2d,
    nn.ReLU: lambda m, s, w: ("relu", {}, {}),
    nn.LeakyReLU: lambda m, s, w: ("leaky_relu", {"negative_slope": float(m.negative_slope)}, {}),
    nn.Sigmoid: lambda m, s, w: ("sigmoid", {}, {}),
    nn.Tanh: lambda m, s, w: ("tanh", {}, {}),
    nn.Hardtanh: lambda m, s, w: (*_hardtanh(m.min_val, m.max_val, w), {}),
    nn.ReLU6: lambda m, s, w: (*_hardtanh(m.min_val, m.max_val, w), {}),
    nn.SiLU: lambda m, s, w: ("silu", {}, {}),
    nn.Hardswish: lambda m, s, w: ("hardswish", {}, {}),
    nn.Hardsigmoid: lambda m, s, w: ("hardsigmoid", {}, {}),
    nn.GELU: lambda m, s, w: (*_gelu(m.approximate, w), {}),
    nn.LayerNorm: _from_layer_norm,
    nn.Identity: lambda m, s, w: ("identity", {}, {}),
    nn.Dropout: lambda m, s, w: ("identity", {}, {}),  # eval mode
    nn.Dropout2d: lambda m, s, w: ("identity", {}, {}),
    nn.MaxPool2d: lambda m, s, w: (*_maxpool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                               m.return_indices, w), {}),
    nn.AvgPool2d: lambda m, s, w: (*_avgpool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                               m.count_include_pad, m.divisor_override, w), {}),
    nn.AdaptiveAvgPool2d: lambda m, s, w: (*_adaptive_avgpool2d(m.output_size, s, w), {}),
    nn.Flatten: lambda m, s, w: (*_flatten(m.start_dim, m.end_dim, s, w), {}),
    nn.Softmax: lambda m, s, w: (*_softmax("softmax", m.dim, None, s, w), {}),
    nn.LogSoftmax: lambda m, s, w: (*_softmax("log_softmax", m.dim, None, s, w), {}),
}

# ------------------------------------------------------------------------------------------------
# Functions and Tensor methods: (signature, converter(arguments, input shape, where) -> (op, attributes),
# names of the arguments that are the node's inputs). Methods take the tensor as "input".

_X = [("input", _REQUIRED)]
_SOFTMAX_SIG = _X + [("dim", None), ("_stacklevel", 3), ("dtype", None)]
_FLATTEN_SIG = _X + [("start_dim", 0), ("end_dim", -1)]
_BINARY_SIG = _X + [("other", _REQUIRED), ("alpha", 1)]


def _binary(op):
    def convert(a, s, w):
        if a["alpha"] != 1:
            raise ExportError(f"{w}: alpha={a['alpha']!r} cannot be expressed")
        return op, {}
    return convert


def _dropout(a, s, w):
    if a["training"]:  # F.dropout(x, p, self.training) was traced in eval mode: training is False
        raise ExportError(f"{w}: training=True drops values at random; only eval-mode dropout (the identity)")
    return "identity", {}


def _div(a, s, w):
    if a["rounding_mode"] is not None:
        raise ExportError(f"{w}: rounding_mode={a['rounding_mode']!r} cannot be expressed; only true division")
    return "div", {}


def _stochastic_depth(a, s, w):
    if a["training"] and a["p"] > 0:  # StochasticDepth passes self.training: False in eval mode
        raise ExportError(f"{w}: training=True drops rows at random; only eval-mode stochastic depth (the identity)")
    return "identity", {}


def _functional_layer_norm(a, s, w):
    if a["weight"] is not None or a["bias"] is not None:
        raise ExportError(f"{w}: weight and bias passed to F.layer_norm cannot be expressed; use nn.LayerNorm")
    return _layer_norm(a["normalized_shape"], a["eps"], s, w)


def _function_table():
    unary = lambda op: (_X + [("inplace", False)], lambda a, s, w: (op, {}), ["input"])
    leaky = (_X + [("negative_slope", 0.01), ("inplace", False)],
             lambda a, s, w: ("leaky_relu", {"negative_slope": float(a["negative_slope"])}), ["input"])
    maxpool = (_X + [("kernel_size", _REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1),
                     ("ceil_mode", False), ("return_indices", False)],
               lambda a, s, w: _maxpool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                                          a["ceil_mode"], a["return_indices"], w), ["input"])
    avgpool = (_X + [("kernel_size", _REQUIRED), ("stride", None), ("padding", 0), ("ceil_mode", False),
                     ("count_include_pad", True), ("divisor_override", None)],
               lambda a, s, w: _avgpool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                          a["count_include_pad"], a["divisor_override"], w), ["input"])
    adaptive = (_X + [("output_size", _REQUIRED)],
                lambda a, s, w: _adaptive_avgpool2d(a["output_size"], s, w), ["input"])
    flatten = (_FLATTEN_SIG, lambda a, s, w: _flatten(a["start_dim"], a["end_dim"], s, w), ["input"])
    softmax = lambda op: (_SOFTMAX_SIG, lambda a, s, w: _softmax(op, a["dim"], a["dtype"], s, w), ["input"])
    binary = lambda op: (_BINARY_SIG, _binary(op), ["input", "other"])
    mul = (_X + [("other", _REQUIRED)], lambda a, s, w: ("mul", {}), ["input", "other"])
    div = (_X + [("other", _REQUIRED), ("rounding_mode", None)], _div, ["input", "other"])
    operator_binary = lambda op: ([("input", _REQUIRED), ("other", _REQUIRED)], lambda a, s, w: (op, {}),
                                  ["input", "other"])
    dropout = (_X + [("p", 0.5), ("training", True), ("inplace", False)], _dropout, ["input"])
    cat = ([("tensors", _REQUIRED), ("dim", 0)],
           lambda a, s, w: ("concat", {"axis": _axis(a["dim"], len(s), "dim", w)}), ["tensors"])
    hardtanh = (_X + [("min_val", -1.0), ("max_val", 1.0), ("inplace", False)],
                lambda a, s, w: _hardtanh(a["min_val"], a["max_val"], w), ["input"])
    relu6 = (_X + [("inplace", False)], lambda a, s, w: _hardtanh(0.0, 6.0, w), ["input"])
    gelu = (_X + [("approximate", "none")], lambda a, s, w: _gelu(a["approximate"], w), ["input"])
    layer_norm = (_X + [("normalized_shape", _REQUIRED), ("weight", None), ("bias", None), ("eps", 1e-5)],
                  _functional_layer_norm, ["input"])
    # Shapes: the converters also see the call's output shape and the size nodes (_graph_nodes).
    reshape = lambda name: (_X + [(name, _REQUIRED)],
                            lambda a, s, w: _reshape(a[name.lstrip("*")], s, a["_out_shape"], a["_sizes"], w),
                            ["input"])
    permute = lambda name: (_X + [(name, _REQUIRED)], lambda a, s, w: _permute(a[name.lstrip("*")], s, w), ["input"])
    transpose = (_X + [("dim0", _REQUIRED), ("dim1", _REQUIRED)],
                 lambda a, s, w: _transpose(a["dim0"], a["dim1"], s, w), ["input"])
    contiguous = (_X + [("memory_format", torch.contiguous_format)], lambda a, s, w: ("identity", {}), ["input"])
    mean = (_X + [("dim", None), ("keepdim", False), ("dtype", None)],
            lambda a, s, w: _mean(a["dim"], a["keepdim"], a["dtype"], s, w), ["input"])
    unsqueeze = (_X + [("dim", _REQUIRED)], lambda a, s, w: _unsqueeze(a["dim"], s, a["_out_shape"], w), ["input"])
    getitem = ([("input", _REQUIRED), ("index", _REQUIRED)],
               lambda a, s, w: _tensor_index(a["index"], s, a["_out_shape"], w), ["input"])

    by_name = [
        ("F.relu torch.relu torch.relu_", unary("relu")), ("F.leaky_relu", leaky),
        ("torch.sigmoid F.sigmoid", unary("sigmoid")), ("torch.tanh F.tanh", unary("tanh")),
        ("F.max_pool2d", maxpool), ("F.avg_pool2d", avgpool), ("F.adaptive_avg_pool2d", adaptive),
        ("torch.flatten", flatten),
        ("F.softmax torch.softmax", softmax("softmax")), ("F.log_softmax torch.log_softmax", softmax("log_softmax")),
        ("operator.add operator.iadd", operator_binary("add")), ("torch.add", binary("add")),
        ("operator.sub operator.isub", operator_binary("sub")), ("torch.sub", binary("sub")),
        ("operator.mul operator.imul", operator_binary("mul")), ("torch.mul", mul),
        ("operator.truediv operator.itruediv", operator_binary("div")), ("torch.div torch.true_divide", div),
        ("torch.cat torch.concat", cat), ("F.dropout F.dropout2d", dropout),
        ("F.hardtanh", hardtanh), ("F.relu6", relu6), ("F.silu", unary("silu")),
        ("F.hardswish", unary("hardswish")), ("F.hardsigmoid", unary("hardsigmoid")), ("F.gelu", gelu),
        ("F.layer_norm", layer_norm), ("torch.reshape", reshape("shape")), ("torch.permute", permute("dims")),
        ("torch.transpose", transpose), ("torch.mean", mean), ("torch.unsqueeze", unsqueeze),
        ("operator.getitem", getitem),
    ]
    namespaces = {"torch": torch, "F": F, "operator": operator}
    functions = {}
    for names, entry in by_name:
        for qualified in names.split():
            prefix, attribute = qualified.split(".")
            if hasattr(namespaces[prefix], attribute):  # torch.concat is newer than torch.cat
                functions.setdefault(getattr(namespaces[prefix], attribute), (qualified, entry))
    try:  # torchvision's StochasticDepth calls this function (torch.fx keeps it whole)
        from torchvision.ops import stochastic_depth
        functions[stochastic_depth] = ("torchvision.ops.stochastic_depth",
                                       (_X + [("p", _REQUIRED), ("mode", _REQUIRED), ("training", True)],
                                        _stochastic_depth, ["input"]))
    except ImportError:
        pass
    methods = {
        "relu": unary("relu"), "relu_": unary("relu"), "sigmoid": unary("sigmoid"), "sigmoid_": unary("sigmoid"),
        "tanh": unary("tanh"), "tanh_": unary("tanh"), "flatten": flatten,
        "softmax": softmax("softmax"), "log_softmax": softmax("log_softmax"),
        "add": binary("add"), "add_": binary("add"), "sub": binary("sub"), "sub_": binary("sub"),
        "mul": mul, "mul_": mul, "div": div, "div_": div,
        "view": reshape("*shape"), "reshape": reshape("*shape"), "permute": permute("*dims"), "transpose": transpose,
        "contiguous": contiguous, "mean": mean, "unsqueeze": unsqueeze,
    }
    methods = {name: (f"Tensor.{name}", entry) for name, entry in methods.items()}
    return functions, methods


_FUNCTIONS, _METHODS = _function_table()


# ------------------------------------------------------------------------------------------------
# From the fx graph to the format's graph


class _Names:
    """Unique node names: module paths as they are, a second call of a module or a function call
    gets a suffix. Every module path is reserved up front, so no function takes one."""

    def __init__(self, reserved):
        self.reserved = set(reserved) | {INPUT_NAME}
        self.used = {INPUT_NAME}

    def take(self, wanted, is_module_path):
        name = wanted
        if name in self.used or (not is_module_path and name in self.reserved):
            k = 1
            while f"{wanted}_{k}" in self.used or f"{wanted}_{k}" in self.reserved:
                k += 1
            name = f"{wanted}_{k}"
        self.used.add(name)
        return name


def _unpacked(proxy, frame):
    """`a, b, c, d = x.size()` traced on Python 3.11 too: torch 1.13 finds the unpacking
    instruction by an index that 3.11's inline caches shifted; here by its offset."""
    inst = next((i for i in dis.get_instructions(frame.f_code) if i.offset == frame.f_lasti), None)
    if inst is not None and inst.opname == "UNPACK_SEQUENCE":
        return iter([proxy[i] for i in range(inst.argval)])
    return proxy.tracer.iter(proxy)


class _Proxy(torch.fx.Proxy):
    def __iter__(self):
        return _unpacked(self, inspect.currentframe().f_back)

    def __getattr__(self, k):
        return _Attribute(self, k)


class _Attribute(torch.fx.proxy.Attribute):  # x.shape
    def __iter__(self):
        return _unpacked(self, inspect.currentframe().f_back)


class _Tracer(torch.fx.Tracer):
    """symbolic_trace's tracer, with the modules written as several nodes kept whole."""

    def proxy(self, node):
        return _Proxy(node, self)

    def is_leaf_module(self, m, qualified_name):
        return type(m) in _CHAIN_MODULES or super().is_leaf_module(m, qualified_name)


BATCH = "batch"  # a static value: the batch size, which the file leaves free

# Python arithmetic on sizes (channel_shuffle's num_channels // groups, ViT's h // p, n_h * n_w).
_STATIC_OPERATORS = {operator.floordiv: "//", operator.mul: "*", operator.add: "+", operator.sub: "-",
                     operator.eq: "==", operator.ne: "!=", operator.mod: "%", operator.truediv: "/"}


def _static(node, statics, produced):
    """The value of a node that computes on sizes, not tensors: x.size(), x.size(d), x.shape,
    x.dim(), indexing and arithmetic on those, torch._assert of such a condition. BATCH stands for
    the batch size. Returns (True, value), or (False, None) for a node that is not static."""
    where = f"{node.op} {getattr(node.target, '__name__', node.target)} (node {node.name!r})"
    value = lambda v: statics[v] if isinstance(v, torch.fx.Node) and v in statics else v
    is_static = lambda v: not isinstance(v, torch.fx.Node) or v in statics
    tensor_shape = lambda v: (BATCH,) + tuple(int(d) for d in _shape(v)[1:])
    if node.op == "call_method" and node.target in ("size", "dim") and node.args and node.args[0] in produced:
        shape = tensor_shape(node.args[0])
        if node.target == "dim":
            return True, len(shape)
        if len(node.args) == 1 and not node.kwargs:
            return True, shape
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if not isinstance(dim, int) or not -len(shape) <= dim < len(shape):
            raise ExportError(f"method Tensor.size (node {node.name!r}): dim {dim!r} is out of range for a "
                              f"rank-{len(shape)} tensor")
        return True, shape[dim]
    if node.op != "call_function":
        return False, None
    if node.target is getattr and node.args[0] in produced and node.args[1] == "shape":
        return True, tensor_shape(node.args[0])
    if not all(is_static(a) for a in node.args) or node.kwargs:
        return False, None
    args = [value(a) for a in node.args]
    if node.target is operator.getitem and isinstance(args[0], tuple):
        return True, args[0][args[1]]
    if node.target in _STATIC_OPERATORS and any(isinstance(a, torch.fx.Node) for a in node.args):
        if any(a == BATCH for a in args):
            raise ExportError(f"{where}: arithmetic on the batch size cannot be expressed (the file leaves it free)")
        return True, node.target(*args)
    if node.target is torch._assert:
        if args[0] is not True:
            raise ExportError(f"{where}: the model asserts something false of the example input: {args[1]}")
        return True, None
    return False, None


def _per_sample(tensor, rank, where):
    """The per-sample shape of a parameter used as an operand of a rank-`rank` tensor (batch
    included), under broadcasting: its shape padded with leading ones, the first (the batch) 1."""
    shape = [1] * (rank - tensor.dim()) + list(tensor.shape)
    if len(shape) != rank or shape[0] != 1:
        raise ExportError(f"{where}: a parameter of shape {list(tensor.shape)} against rank-{rank} operands would "
                          "differ across the batch")
    return [int(d) for d in shape[1:]]


def _graph_nodes(gm, model, names, first_input):
    """The format's nodes and the parameters they use, in the fx graph's (topological) order."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]  # one: export() checked
    modules = dict(model.named_modules())
    nodes, params = [], {}
    produced = {placeholders[0]: first_input}  # fx node -> name of the value in the format's graph
    statics = {}    # fx node computing on sizes -> its value (BATCH for the batch size)
    attributes_used = {}  # fx get_attr node (or its expand) -> the parameter tensor
    constants = {}  # (fx node, per-sample shape) -> name of its constant node
    output = None

    def emit(op, attributes, node_params, inputs, name, where):
        for pname, tensor in node_params.items():
            _check_float_param(f"{name}.{pname}", tensor, where)
            params[f"{name}.{pname}"] = tensor
        nodes.append({"name": name, "op": op, "inputs": inputs, **attributes})

    def constant(v, rank, where):
        """A parameter used as an operand: a constant node, repeated for every sample."""
        tensor = attributes_used[v]
        shape = _per_sample(tensor, rank, where)
        key = (v, tuple(shape))
        if key not in constants:
            target = v.target if v.op == "get_attr" else v.args[0].target
            name = names.take(target, is_module_path=False)
            emit("constant", {"shape": shape}, {"value": tensor.detach().reshape(shape)}, [first_input], name, where)
            constants[key] = name
        return constants[key]

    def inputs_of(values, where, rank=None):
        out = []
        for v in values:
            if isinstance(v, torch.fx.Node) and v in attributes_used and rank is not None:
                out.append(constant(v, rank, where))
                continue
            if not isinstance(v, torch.fx.Node) or v in statics:
                raise ExportError(f"{where}: operand {statics.get(v, v)!r} is a constant; the format's ops take "
                                  "tensors only")
            if v not in produced or isinstance(produced[v], tuple):
                raise ExportError(f"{where}: operand {v.name!r} is not a tensor this exporter produced")
            out.append(produced[v])
        return out

    def emit_chain(steps, sources, base, is_module_path, where):
        outputs = []
        for k, step in enumerate(steps):
            refs = step.get("inputs", [k - 1] if k else [-1])
            inputs = [sources[-1 - r] if r < 0 else outputs[r] for r in refs]
            if "name" in step:
                name = names.take(step["name"], is_module_path=step["name"] in names.reserved)
            elif k == len(steps) - 1 and not any("name" in s for s in steps):
                name = names.take(base, is_module_path=is_module_path)
            else:
                name = names.take(f"{base}.{step['op']}", is_module_path=False)
            emit(step["op"], step["attributes"], step.get("params", {}), inputs, name, where)
            outputs.append(name)
        return outputs[-1]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            result = node.args[0]
            if not isinstance(result, torch.fx.Node):
                raise ExportError(f"forward returns a {type(result).__name__}; a version-1 model file has exactly "
                                  "one output tensor")
            output = result
            continue
        if node.op == "get_attr":  # a parameter used as a tensor: a constant node where it is used
            tensor = _attribute(model, node.target)
            if not isinstance(tensor, torch.Tensor):
                raise ExportError(f"attribute {node.target!r} is not a tensor")
            attributes_used[node] = tensor
            continue
        if (node.op == "call_method" and node.target == "expand" and node.args and node.args[0] in attributes_used
                and attributes_used[node.args[0]].shape[0] == 1
                and [statics.get(a, a) for a in node.args[1:2]] == [BATCH]
                and all(a == -1 for a in node.args[2:])):  # ViT's class_token.expand(n, -1, -1)
            attributes_used[node] = attributes_used[node.args[0]]
            continue
        is_static, value = _static(node, statics, produced)
        if is_static:
            statics[node] = value
            continue
        if (node.op == "call_function" and node.target is operator.getitem and node.args[0] in produced
                and isinstance(produced[node.args[0]], tuple)):  # (output, weights) of an attention
            picked = produced[node.args[0]][node.args[1]]
            if picked is None:
                statics[node] = None  # the weights, not computed (need_weights=False)
            else:
                produced[node] = picked
            continue
        if node.op in ("call_method", "call_function") and node.target in ("chunk", torch.chunk):
            produced[node] = _chunks(node, inputs_of([node.args[0]], f"chunk (node {node.name!r})")[0], emit, names)
            continue
        if node.op == "call_module":
            module = modules[node.target]
            where = f"module {node.target!r} ({type(module).__name__})"
            if type(module) is nn.MultiheadAttention:
                _check_attention_call(node, where)
                sources = inputs_of([node.kwargs.get("query", node.args[0] if node.args else None)], where)
                _, steps, _ = _from_attention(module, _shape(node.kwargs.get("query", node.args[0] if node.args else None)),
                                              where, node.target)
                name = emit_chain(steps, sources, node.target, True, where)
                produced[node] = (name, None)
                continue
            convert = _MODULES.get(type(module)) or _CHAIN_MODULES.get(type(module))  # exact type: a subclass may compute something else
            if convert is None:
                raise ExportError(f"{where}: unsupported module")
            if node.kwargs or len(node.args) != 1:
                raise ExportError(f"{where}: expected one tensor argument")
            sources = inputs_of(node.args, where)
            if type(module) in _CHAIN_MODULES:
                op, attributes, module_params = convert(module, _shape(node.args[0]), where, node.target)
            else:
                op, attributes, module_params = convert(module, _shape(node.args[0]), where)
            base, is_module_path = node.target, True
        elif node.op in ("call_function", "call_method"):
            table = _FUNCTIONS if node.op == "call_function" else _METHODS
            if node.target not in table:
                what = (f"Tensor.{node.target}" if node.op == "call_method"
                        else torch.fx.node._get_qualified_name(node.target))
                raise ExportError(f"function {what} (node {node.name!r}): unsupported function")
            qualified, (signature, convert, tensor_args) = table[node.target]
            where = f"function {qualified} (node {node.name!r})"
            arguments = _bind(node, signature, where)
            values = []
            for arg in tensor_args:
                value = arguments[arg]
                values.extend(value if isinstance(value, (list, tuple)) else [value])
            rank = len(_shape(node) or [])
            scalar = _scalar_operand(qualified, values, statics, produced, attributes_used)
            if scalar is not None:  # a tensor and a number: affine
                tensor_first, number = scalar
                if arguments.get("alpha", 1) != 1 or arguments.get("rounding_mode") is not None:
                    raise ExportError(f"{where}: alpha or rounding_mode with a number cannot be expressed")
                sources = inputs_of([values[0] if tensor_first else values[1]], where)
                op, attributes = _scalar_affine(_ARITHMETIC[qualified.split(".")[-1]], tensor_first, number, where)
            else:
                sources = inputs_of(values, where, rank)
                if node.target is operator.getitem:
                    arguments["index"] = _static_index(arguments["index"], statics)
                arguments.update(_out_shape=_shape(node), _sizes=statics)
                first = next(v for v in values if isinstance(v, torch.fx.Node))
                op, attributes = convert(arguments, _shape(first), where)
            module_params = {}
            base, is_module_path = node.name, False
        else:
            raise ExportError(f"unsupported fx node {node.op} {node.target!r}")

        if op == _CHAIN:
            produced[node] = emit_chain(attributes, sources, base, is_module_path, where)
            continue
        if op in ("add", "sub", "mul", "div"):
            shapes = [_shape(s) for s in node.all_input_nodes if s not in statics]
            if any(len(s) != len(shapes[0]) for s in shapes if s is not None) and not any(
                    s in attributes_used for s in node.all_input_nodes):
                raise ExportError(f"{where}: operands of shapes {shapes} differ in rank; the format broadcasts "
                                  "between tensors of one rank only (the batch dimensions stay aligned)")
        if op == "concat" and len(sources) < 2:
            op, attributes = "identity", {}  # cat of one tensor is that tensor
        name = names.take(base, is_module_path=is_module_path)
        emit(op, attributes, module_params, sources, name, where)
        produced[node] = name

    if output not in produced or isinstance(produced[output], tuple):
        raise ExportError("forward returns no tensor computed from its input")
    out_name = produced[output]
    if out_name == first_input:  # the model returns its input (or the normalized input): one node needed
        name = names.take("output", is_module_path=False)
        nodes.append({"name": name, "op": "identity", "inputs": [out_name]})
        out_name = name
    return nodes, params, out_name, output


_ARITHMETIC = {"add": "add", "iadd": "add", "sub": "sub", "isub": "sub", "mul": "mul", "imul": "mul",
               "truediv": "div", "itruediv": "div", "div": "div", "true_divide": "div"}


def _scalar_operand(qualified, values, statics, produced, attributes_used):
    """(tensor first, the number) when a binary arithmetic call has one tensor and one number."""
    if qualified.split(".")[-1] not in _ARITHMETIC or len(values) != 2:
        return None
    is_tensor = [isinstance(v, torch.fx.Node) and (v in produced or v in attributes_used) for v in values]
    if is_tensor[0] == is_tensor[1]:
        return None
    number = values[1] if is_tensor[0] else values[0]
    number = statics.get(number, number) if isinstance(number, torch.fx.Node) else number
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    return is_tensor[0], number


def _chunks(node, source, emit, names):
    """x.chunk(k, dim) (ShuffleNet's split in two): one slice node per piece, as a tuple."""
    where = f"chunk (node {node.name!r})"
    arguments = dict(zip(["input", "chunks", "dim"], node.args))
    arguments.update(node.kwargs)
    shape = _shape(node.args[0])
    axis = _axis(arguments.get("dim", 0), len(shape), "dim", where)
    size, chunks = int(shape[axis]), arguments["chunks"]
    if not isinstance(chunks, int) or chunks < 1:
        raise ExportError(f"{where}: chunks {chunks!r} must be a positive integer")
    step = -(-size // chunks)  # PyTorch's: pieces of ceil(size / chunks), the last one smaller
    pieces = []
    for start in range(0, size, step):
        name = names.take(f"{node.name}.slice", is_module_path=False)
        emit("slice", {"axis": axis, "start": start, "end": min(start + step, size)}, {}, [source], name, where)
        pieces.append(name)
    return tuple(pieces)


def _static_index(index, statics):
    """An index with static values (sizes) put in."""
    if isinstance(index, tuple):
        return tuple(_static_index(i, statics) for i in index)
    if isinstance(index, slice):
        return slice(*(_static_index(v, statics) for v in (index.start, index.stop, index.step)))
    return statics.get(index, index) if isinstance(index, torch.fx.Node) else index


def _attribute(model, target):
    """The tensor at a get_attr target (a dotted path)."""
    value = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _check_attention_call(node, where):
    """An attention called as self-attention, without masks, in PyTorch's argument names."""
    names = ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights"]
    arguments = dict(zip(names, node.args))
    arguments.update(node.kwargs)
    query = arguments.get("query")
    if arguments.get("key") is not query or arguments.get("value") is not query:
        raise ExportError(f"{where}: only self-attention (query, key and value one tensor) can be expressed")
    if arguments.get("key_padding_mask") is not None or arguments.get("attn_mask") is not None:
        raise ExportError(f"{where}: masks cannot be expressed")
    if arguments.get("need_weights", True):
        raise ExportError(f"{where}: need_weights=True returns the weights too; only need_weights=False")


# ------------------------------------------------------------------------------------------------
# The format's graph, run in PyTorch: the exporter's final check


def _evaluate(graph, tensors, x):
    """Runs a graph of the format on x (batch included) with out-of-place PyTorch ops."""
    values = {graph["inputs"][0]["name"]: x}
    for node in graph["nodes"]:
        a = [values[i] for i in node["inputs"]]
        p = lambda k: tensors.get(f"{node['name']}.{k}")
        op = node["op"]
        if op == "conv2d":
            y = F.conv2d(a[0], p("weight"), p("bias"), node["stride"], node["padding"], node["dilation"], node["groups"])
        elif op == "linear":
            y = F.linear(a[0], p("weight"), p("bias"))
        elif op == "batchnorm2d":
            y = F.batch_norm(a[0], p("running_mean"), p("running_var"), p("weight"), p("bias"), False, 0.0, node["eps"])
        elif op == "normalize":
            shape = (1, -1) + (1,) * (a[0].dim() - 2)
            mean = torch.tensor(node["mean"], dtype=x.dtype).view(shape)
            std = torch.tensor(node["std"], dtype=x.dtype).view(shape)
            y = (a[0] - mean) / std
        elif op in ("relu", "sigmoid", "tanh"):
            y = getattr(torch, op)(a[0])
        elif op == "identity":
            y = a[0]
        elif op == "leaky_relu":
            y = F.leaky_relu(a[0], node["negative_slope"])
        elif op == "maxpool2d":
            y = F.max_pool2d(a[0], node["kernel"], node["stride"], node["padding"], 1, node["ceil_mode"])
        elif op == "avgpool2d":
            y = F.avg_pool2d(a[0], node["kernel"], node["stride"], node["padding"], node["ceil_mode"],
                             node["count_include_pad"])
        elif op == "adaptive_avgpool2d":
            y = F.adaptive_avg_pool2d(a[0], node["output_size"])
        elif op == "flatten":
            y = torch.flatten(a[0], node["start_dim"])
        elif op == "add":
            y = sum(a[1:], a[0])
        elif op == "sub":
            y = a[0] - a[1]
        elif op == "mul":
            y = a[0] * a[1]
        elif op == "div":
            y = a[0] / a[1]
        elif op == "concat":
            y = torch.cat(a, node["axis"])
        elif op == "hardtanh":
            y = F.hardtanh(a[0], node["min_val"], node["max_val"])
        elif op in ("silu", "hardswish", "hardsigmoid"):
            y = getattr(F, op)(a[0])
        elif op == "gelu":
            y = F.gelu(a[0], approximate=node["approximate"])
        elif op == "layer_norm":
            y = F.layer_norm(a[0], a[0].shape[a[0].dim() - node["normalized_ndim"]:], p("weight"), p("bias"), node["eps"])
        elif op == "permute":
            y = a[0].permute(node["dims"])
        elif op == "reshape":
            y = a[0].reshape([a[0].shape[0]] + node["shape"])
        elif op == "affine":
            y = a[0] * node["scale"] + node["offset"]
        elif op == "slice":
            y = a[0].narrow(node["axis"], node["start"], node["end"] - node["start"])
        elif op == "constant":
            y = p("value").expand([a[0].shape[0]] + node["shape"])
        elif op == "matmul":
            y = torch.matmul(a[0], a[1])
        else:  # softmax, log_softmax
            y = getattr(torch, op)(a[0], node["axis"])
        values[node["name"]] = y
    return values[graph["outputs"][0]]


# ------------------------------------------------------------------------------------------------
# The container


def _write_safetensors(path, tensors, metadata):
    """tensors: name -> (safetensors dtype, CPU tensor of the matching torch dtype)."""
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in sorted(tensors):  # any order tiles; sorted makes the file reproducible
        dtype, tensor = tensors[name]
        tensor = tensor.contiguous()
        array = (tensor.view(torch.int16) if dtype == "BF16" else tensor).numpy()  # numpy has no bfloat16
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-aligned, as safetensors' own writer does
    # written beside the target, then renamed over it: a process that has the old file mapped
    # (axiomatic uses parameters in place from the mapping) keeps reading the old bytes
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "wb") as out:
            out.write(struct.pack("<Q", len(text)))
            out.write(text)
            for data in chunks:
                out.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


# ------------------------------------------------------------------------------------------------
# The public function


def export(model, example_input_shape, path, labels=None, input_range=None, normalize=None, f64=False, check=True):
    """Writes `model` (a torch.nn.Module) as an axiomatic model file at `path`.

    example_input_shape: the input's shape without the batch, e.g. (3, 224, 224).
    labels: optional class names, as many as the output has values per sample.
    input_range: optional (lo, hi), the range of every input value (pixel space).
    normalize: optional (mean, std), each a number or one per channel: a normalize node
        (x - mean) / std runs before the model, so the file's input is in pixel space.
    f64: write the parameters as F64 instead of F32.
    check: run the exported graph in PyTorch (float64) on a random input and compare it with
        the model's output; a mismatch is an ExportError.

    Traces and checks the model in eval mode, then puts every submodule back in the mode it was
    in (train or eval). Returns the graph written (a dict). Raises ExportError, with one line
    naming the module or function and the reason, for what the format cannot express; nothing
    is written then.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        return _export(model, example_input_shape, path, labels, input_range, normalize, f64, check)
    finally:
        for m, training in modes:
            m.training = training


def _export(model, example_input_shape, path, labels, input_range, normalize, f64, check):
    shape = [int(d) for d in example_input_shape]
    if not shape or any(d < 1 for d in shape):
        raise ExportError(f"input shape {shape} must list at least one dimension, each at least 1")
    if input_range is not None:
        lo, hi = (float(v) for v in input_range)
        if not lo < hi:
            raise ExportError(f"input range [{lo}, {hi}] must have lo < hi")
    if normalize is not None:
        mean, std = _normalize_numbers(normalize, shape)
    refused = _REFUSED_MODELS.get(type(model).__name__)
    if refused is not None:
        raise ExportError(f"model {type(model).__name__}: {refused}")
    model.eval()

    try:
        gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # control flow on tensors, unsupported Python, ...
        raise ExportError(_trace_failure(model, e)) from e
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"forward takes {len(placeholders)} inputs ({', '.join(placeholders)}); "
                          "a version-1 model file has exactly one")

    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    # A batch of 2 with a local generator: the global random state is left alone.
    generator = torch.Generator().manual_seed(0)
    x = torch.rand([2] + shape, generator=generator, dtype=torch.float64)
    if input_range is not None:
        x = lo + (hi - lo) * x
    else:
        x = 2 * x - 1
    model_input = x
    if normalize is not None:  # the model sees the normalized input; the file's input is x
        view = (1, -1) + (1,) * (len(shape) - 1)
        model_input = (x - torch.tensor(mean, dtype=x.dtype).view(view)) / torch.tensor(std, dtype=x.dtype).view(view)
    model_input = model_input.to(dtype=dtype, device=device)
    # The model itself first: its error says what is wrong. Clones: an in-place op may write to
    # its input.
    try:
        with torch.no_grad():
            expected = model(model_input.clone())
    except Exception as e:
        raise ExportError(f"the model does not run on an input of shape {[2] + shape}: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(model_input.clone())
    except Exception as e:
        raise ExportError(f"the traced model does not run: {type(e).__name__}: {str(e).splitlines()[0]}") from e

    names = _Names(name for name, _ in model.named_modules() if name)
    nodes = []
    first_input = INPUT_NAME
    if normalize is not None:
        first_input = names.take("normalize", is_module_path=False)
        nodes.append({"name": first_input, "op": "normalize", "inputs": [INPUT_NAME], "mean": mean, "std": std})
    model_nodes, params, output, output_fx = _graph_nodes(gm, model, names, first_input)
    nodes += model_nodes

    out_shape = _shape(output_fx) or []
    per_sample = 1
    for d in out_shape[1:]:
        per_sample *= d
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != per_sample:
            raise ExportError(f"{len(labels)} labels for an output of {per_sample} values")

    graph_input = {"name": INPUT_NAME, "shape": shape}
    if input_range is not None:
        graph_input["range"] = [lo, hi]
    graph = {"version": 1, "inputs": [graph_input], "nodes": nodes, "outputs": [output]}
    if labels is not None:
        graph["labels"] = labels

    float_dtype, float_name = (torch.float64, "F64") if f64 else (torch.float32, "F32")
    tensors = {}
    # The rest of the state_dict first (unused by the graph, but it makes the file a complete
    # state_dict); the graph's parameters then take their names.
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensors[name] = (float_name, tensor.to(float_dtype))
        elif tensor.dtype in _SAFETENSORS_DTYPES:  # e.g. num_batches_tracked: I64, never used by a node
            tensors[name] = (_SAFETENSORS_DTYPES[tensor.dtype], tensor)
    for name, tensor in params.items():
        tensors[name] = (float_name, tensor.detach().cpu().to(float_dtype))

    if check:
        _check(expected, graph, tensors, x)
    _write_safetensors(path, tensors, {"axiomatic.graph": json.dumps(graph, allow_nan=False)})
    return graph


def _trace_failure(model, error):
    """One line for a model torch.fx cannot trace: the module whose forward was running, the
    function and line of the model's own code where tracing stopped, the reason, what to do."""
    torch_dir = os.path.dirname(torch.__file__)
    paths = {id(m): name for name, m in model.named_modules()}
    module, place = None, None
    tb = error.__traceback__
    while tb is not None:  # outermost frame first: the innermost one found wins
        frame = tb.tb_frame
        if not frame.f_code.co_filename.startswith(torch_dir) and frame.f_code.co_filename != __file__:
            place = f"{frame.f_code.co_name}() at {os.path.basename(frame.f_code.co_filename)}:{tb.tb_lineno}"
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in paths:
                path = paths[id(owner)]
                module = f"module {path!r} ({type(owner).__name__})" if path else f"the top module ({type(owner).__name__})"
        tb = tb.tb_next
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    stopped = ", ".join(w for w in (f"in {place}" if place else "", f"inside {module}" if module else "") if w)
    advice = ("write the forward without Python control flow on tensor values (if/while/bool() on a tensor; "
              "torch.where computes both branches)" if "control flow" in reason
              else "write the forward with tensor operations torch.fx can record")
    return f"torch.fx cannot trace the model{': tracing stopped ' + stopped if stopped else ''}: {reason}; {advice}"


def _normalize_numbers(normalize, shape):
    if len(shape) < 2:
        raise ExportError(f"normalize needs channels on dimension 1 of a sample; the input shape is {shape}")
    mean, std = normalize
    mean = [float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean])]
    std = [float(v) for v in (std if isinstance(std, (list, tuple)) else [std])]
    for what, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, shape[0]):
            raise ExportError(f"normalize: {what} has {len(values)} numbers for {shape[0]} channels")
    if any(not s > 0 for s in std):
        raise ExportError(f"normalize: std {std} must be positive")
    return mean, std


def _check(expected, graph, tensors, x):
    """The exported graph, in float64, against the model's output `expected` on the input x."""
    used = {name: t.to(torch.float64) for name, (dtype, t) in tensors.items() if t.is_floating_point()}
    with torch.no_grad():
        found = _evaluate(graph, used, x)
    expected = expected.detach().cpu().to(torch.float64)
    if expected.shape != found.shape:
        raise ExportError(f"the exported graph's output has shape {list(found.shape)}, the model's "
                          f"{list(expected.shape)}")
    scale = expected.abs().max().item()
    error = (expected - found).abs().max().item()
    # The model may compute in float32: allow its rounding, not a different function.
    if not error <= 1e-3 * scale:
        raise ExportError(f"the exported graph computes a different function than the model (max difference "
                          f"{error:.3g}, output scale {scale:.3g}): an in-place update of a tensor that is read "
                          "again, or Python code torch.fx does not see")


# ------------------------------------------------------------------------------------------------
# Models and the command line


def lenet28():
    """The LeNet-28 of the project's benchmarks: 1x28x28 -> 10."""
    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def torchvision_model(name, num_classes=1000, kwargs=None):
    """A randomly initialized torchvision model by its constructor's name (no download);
    kwargs: more constructor arguments, e.g. {"aux_logits": False}."""
    import torchvision
    constructor = getattr(torchvision.models, name, None)
    if not callable(constructor) or name.startswith("_"):
        raise ExportError(f"torchvision.models has no model {name!r}")
    arguments = {"weights": None, "num_classes": num_classes, **(kwargs or {})}
    try:
        with warnings.catch_warnings():  # torchvision's own deprecation notes (maxvit_t's meshgrid)
            warnings.simplefilter("ignore", UserWarning)
            return constructor(**arguments)
    except (TypeError, ValueError) as e:  # an unknown or invalid argument
        raise ExportError(f"torchvision.models.{name}({', '.join(arguments)}): {str(e).splitlines()[0]}") from e


def _json_object(parser, text):
    try:
        value = json.loads(text)
    except ValueError as e:
        parser.error(f"--kwargs: not JSON: {e}")
    if not isinstance(value, dict):
        parser.error(f"--kwargs: expected a JSON object of constructor arguments, found {text!r}")
    return value


def _main(argv=None):
    parser = argparse.ArgumentParser(description="Export a PyTorch model to an axiomatic model file.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--lenet", action="store_true", help="the LeNet-28 (1x28x28, range [0, 1])")
    which.add_argument("--torchvision", metavar="NAME", help="a torchvision model, e.g. resnet18 (3x224x224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="torchvision: classes (default 1000)")
    parser.add_argument("--kwargs", metavar="JSON", help='torchvision: constructor arguments, e.g. \'{"aux_logits": false}\'')
    parser.add_argument("--state-dict", metavar="FILE", help="weights saved with torch.save(model.state_dict())")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialization (default 0)")
    parser.add_argument("--input-shape", type=int, nargs="+", metavar="D", help="input shape without the batch")
    parser.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), help="the input's value range")
    parser.add_argument("--mean", type=float, nargs="+", help="prepend a normalize node: its mean")
    parser.add_argument("--std", type=float, nargs="+", help="prepend a normalize node: its std")
    parser.add_argument("--imagenet", action="store_true", help="ImageNet's mean and std, range [0, 1]")
    parser.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    parser.add_argument("--f64", action="store_true", help="write parameters as F64 (default F32)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing the exported graph with the model")
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write")
    args = parser.parse_args(argv)

    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    if args.imagenet and args.mean is not None:
        parser.error("--imagenet sets --mean and --std")
    kwargs = _json_object(parser, args.kwargs) if args.kwargs is not None else None
    if kwargs is not None and not args.torchvision:
        parser.error("--kwargs goes with --torchvision")
    try:
        torch.manual_seed(args.seed)
        if args.lenet:
            model, shape, input_range = lenet28(), [1, 28, 28], (0.0, 1.0)
        else:
            model, shape, input_range = torchvision_model(args.torchvision, args.num_classes, kwargs), [3, 224, 224], None
        if args.state_dict:
            model.load_state_dict(torch.load(args.state_dict, map_location="cpu"))
        normalize = (args.mean, args.std) if args.mean is not None else None
        if args.imagenet:
            normalize, input_range = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), (0.0, 1.0)
        if args.range:
            input_range = tuple(args.range)
        labels = None
        if args.labels:
            with open(args.labels, encoding="utf-8") as f:
                labels = [line.rstrip("\r\n") for line in f if line.strip()]
        graph = export(model, args.input_shape or shape, args.out, labels=labels, input_range=input_range,
                       normalize=normalize, f64=args.f64, check=not args.no_check)
    except (ExportError, OSError, RuntimeError) as e:
        print(f"export_torch: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    params = sum(p.numel() for p in model.parameters())
    print(f"export_torch: wrote {args.out}: {len(graph['nodes'])} nodes, {params} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
