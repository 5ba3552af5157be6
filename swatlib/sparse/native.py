"""Native CPU kernels for :class:`~swatlib.sparse.SparseLinear` and inverted dropout, compiled on first use.

``csr_kernels.c`` (next to this file) holds a CSR × dense product (SpMM), its transpose computed on the
same CSR structure (a scatter, so that a layer keeps no transposed index set) and the sampled
dense-dense product (SDDMM), which keep a block of the batch in vector registers and prefetch the
randomly visited rows; a fused inverted-dropout pass and a fused All-ReLU + dropout pass that packs its
two masks into bits; and an O(n) sort of random connection keys for the Erdős–Rényi sampler
(:func:`sort_unique`). Row pointers are int64, column indices int32 (4 bytes per connection). A
1000→1000 layer at ε = 20, batch 128, one thread (``benchmarks/csr_kernels.py``, quiet machine) took
0.31 ms forward and 0.44 ms for the weight gradient, against 0.67 and 0.57 ms with torch 2.13's CPU
kernels (MKL CSR ``addmm``, ``sparse_sampled_addmm``); scipy's CSR × dense, the other candidate already
installed, took 0.76 ms for the forward. Hence about two hundred lines of C. The input gradient was
0.37 ms as a gather over a transposed CSR copy (0.71 ms with torch's ``sparse.mm``); the scatter that
replaced it to save that copy's 16 B per connection is about 1.25× slower on its own (read-modify-write
of the output rows; 0.44–0.48 against 0.36–0.39 ms side by side on a loaded machine) and gives the same
bits. The layers of Table 4's models (millions of neurons, about two connections each, micro-batches of
16–32) are a different regime — every connection waits on main memory — which the kernels meet with
narrower register passes and a deeper prefetch across rows (``benchmarks/wide_layer.py``).

The source is compiled once per machine with the system C compiler (``$CC``, default ``cc``;
``-O3 -march=native -fopenmp``, about a second) into ``$SWATLIB_KERNEL_CACHE`` (default
``~/.cache/swatlib/kernels``), under a name that hashes the source, the flags and the CPU, written to a
temporary file and moved into place so concurrent processes never load a half-written library. The
library is loaded with :mod:`ctypes`, which releases the GIL during each call.

If no compiler is found or compiling fails, one warning says so and every caller falls back to torch's
kernels, which compute the same products (to rounding; the tests compare the two paths).
``SWATLIB_NATIVE=0`` selects the fallback for a whole process, :func:`disabled` for a block of code
(the benchmark times both side by side; the tests compare them).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from swatlib import machine
from swatlib.atomic import atomic_path

__all__ = ["available", "disabled", "usable", "spmm", "spmm_t", "sddmm", "dropout", "dropout_backward",
           "relu_dropout", "relu_dropout_backward", "sort_unique"]

SOURCE = Path(__file__).with_name("csr_kernels.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {
    "spmm": [_P, _P, _P, _P, _P, _P, _I, _I, ctypes.c_int],
    "spmm_t": [_P, _P, _P, _P, _P, _I, _I, ctypes.c_int],
    "sddmm": [_P, _P, _P, _P, _P, _I, _I, ctypes.c_int],
    "dropout": [_P, _P, ctypes.c_int16, None, _P, _P, _I],
    "dropout_backward": [_P, _P, None, _P, _I],
    "relu_dropout": [_P, _P, ctypes.c_int16, None, None, _P, _P, _P, _I, ctypes.c_int],
    "relu_dropout_backward": [_P, _P, _P, None, None, _P, _I, ctypes.c_int],
}


def _cache_dir() -> Path:
    explicit = os.environ.get("SWATLIB_KERNEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "swatlib" / "kernels"


def _cpu_identity() -> str:
    """Model and feature flags of this CPU: ``-march=native`` code is only valid on an equal one."""
    wanted = machine.cpuinfo_lines("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted(set(wanted))) + platform.machine() + platform.processor()


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    with atomic_path(target) as tmp:
        subprocess.run([compiler, *flags, "-o", str(tmp), str(SOURCE)], check=True,
                       capture_output=True, text=True, timeout=300)


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` (after one warning) if they cannot be built or are disabled."""
    if os.environ.get("SWATLIB_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        warnings.warn(f"swatlib: no C compiler '{compiler}' found, so SparseLinear uses torch's slower CSR "
                      f"kernels; install one (e.g. apt-get install gcc) or set CC", RuntimeWarning, stacklevel=3)
        return None
    source = SOURCE.read_bytes()
    errors = []
    for flags in (FLAGS + ("-fopenmp",), FLAGS):  # without OpenMP the kernels run on one thread
        digest = hashlib.sha256(source + repr((compiler, flags)).encode() + _cpu_identity().encode())
        target = _cache_dir() / f"csr_kernels-{digest.hexdigest()[:16]}.so"
        try:
            if not target.exists():
                _compile(compiler, flags, target)
            library = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", None) or str(error)
            errors.append(detail.strip().splitlines()[-1] if detail.strip() else type(error).__name__)
            continue
        for name, argtypes in _SIGNATURES.items():
            for dtype, suffix in _SUFFIX.items():
                function = getattr(library, f"{name}_{suffix}")
                scalar = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
                function.argtypes = [scalar if a is None else a for a in argtypes]
                function.restype = None
        library.sort_unique_keys.argtypes = [_P, _I, _I, _P]
        library.sort_unique_keys.restype = _I
        return library
    warnings.warn(f"swatlib: compiling {SOURCE.name} failed ({errors[-1]}), so SparseLinear uses torch's "
                  f"slower CSR kernels; set SWATLIB_NATIVE=0 to silence this", RuntimeWarning, stacklevel=3)
    return None


def available() -> bool:
    """Whether the native kernels are compiled and enabled on this machine."""
    return _library() is not None


_disabled_depth = 0


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block every caller uses torch's kernels instead of the native ones (not thread-local)."""
    global _disabled_depth
    _disabled_depth += 1
    try:
        yield
    finally:
        _disabled_depth -= 1


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the native kernels are enabled and can take these tensors: CPU, one float32/float64
    dtype, contiguous."""
    if _disabled_depth:
        return False
    first = tensors[0]
    if first.dtype not in _SUFFIX or first.device.type != "cpu":
        return False
    if any(t.dtype != first.dtype or t.device.type != "cpu" or not t.is_contiguous() for t in tensors):
        return False
    return available()


def _function(name: str, dtype: torch.dtype):
    return getattr(_library(), f"{name}_{_SUFFIX[dtype]}")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _index(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype and t.is_contiguous() else t.to(dtype).contiguous()


def _indices(crow: torch.Tensor, col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernels' index types: int64 row pointers, int32 column indices (converted if need be)."""
    return _index(crow, torch.int64), _index(col, torch.int32)


def spmm(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
         bias: torch.Tensor | None = None) -> torch.Tensor:
    """``out = bias[:, None] + W @ x`` for the CSR matrix ``W = (crow, col, values)``.

    Parameters
    ----------
    crow, col
        CSR row pointers (``n_rows + 1``) and column indices of ``W`` (any integer dtype; copied to
        int64 / int32 unless they are already).
    values
        Values of ``W`` in the order of ``col``.
    x
        Dense ``(n_cols, batch)``, contiguous.
    bias
        Optional ``(n_rows,)``, added to every column.
    """
    n_rows, batch = crow.numel() - 1, x.shape[1]
    out = torch.empty(n_rows, batch, dtype=x.dtype)
    # bound to names so that converted index tensors stay alive during the call
    crow, col = _indices(crow, col)
    _function("spmm", x.dtype)(_ptr(crow), _ptr(col), _ptr(values), _ptr(bias), _ptr(x), _ptr(out),
                               n_rows, batch, torch.get_num_threads())
    return out


def spmm_t(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, g: torch.Tensor,
           n_cols: int) -> torch.Tensor:
    """``out = Wᵀ @ g`` for the CSR matrix ``W = (crow, col, values)`` with ``n_cols`` columns.

    Computed on ``W``'s own structure (no transposed index set): ``g`` is ``(n_rows, batch)``,
    contiguous, and the result ``(n_cols, batch)`` — the input gradient ``dXᵀ = Wᵀ dYᵀ`` of
    ``Yᵀ = W Xᵀ``. Each element sums its terms in ascending row order, as a gather over the
    transposed CSR structure would, so both give the same bits.
    """
    n_rows, batch = crow.numel() - 1, g.shape[1]
    out = torch.zeros(n_cols, batch, dtype=g.dtype)
    crow, col = _indices(crow, col)
    _function("spmm_t", g.dtype)(_ptr(crow), _ptr(col), _ptr(values), _ptr(g), _ptr(out), n_rows, batch,
                                 torch.get_num_threads())
    return out


def sddmm(crow: torch.Tensor, col: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out[k] = g[row_k] · x[col_k]`` for every connection ``k`` of the CSR pattern ``(crow, col)``.

    ``g`` is ``(n_rows, batch)`` and ``x`` is ``(n_cols, batch)``, both contiguous: the weight gradient
    of ``Y = W X`` at the existing connections when ``g = dYᵀ`` and ``x = Xᵀ``.
    """
    n_rows, batch = crow.numel() - 1, x.shape[1]
    out = torch.empty(col.numel(), dtype=x.dtype)
    crow, col = _indices(crow, col)
    _function("sddmm", x.dtype)(_ptr(crow), _ptr(col), _ptr(g), _ptr(x), _ptr(out), n_rows, batch,
                                torch.get_num_threads())
    return out


def dropout(x: torch.Tensor, bits: torch.Tensor, threshold: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x · (scale if bits ≥ threshold else 0), keep flags as uint8)`` for contiguous ``x``, int16 ``bits``."""
    out = torch.empty_like(x)
    keep = torch.empty(x.shape, dtype=torch.uint8)
    _function("dropout", x.dtype)(_ptr(x), _ptr(bits), threshold, scale, _ptr(out), _ptr(keep), x.numel())
    return out, keep


def dropout_backward(grad: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """``grad · (scale if keep else 0)`` for contiguous ``grad`` and uint8 ``keep``."""
    out = torch.empty_like(grad)
    _function("dropout_backward", grad.dtype)(_ptr(grad), _ptr(keep), scale, _ptr(out), grad.numel())
    return out


def relu_dropout(z: torch.Tensor, bits: torch.Tensor, threshold: int, slope: float,
                 scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leaky ReLU (``slope``) then inverted dropout of contiguous ``z``: ``(out, positive, keep)``, the
    two masks packed eight elements per byte (bit ``i % 8`` of byte ``i // 8``)."""
    out = torch.empty_like(z)
    positive = torch.empty((z.numel() + 7) // 8, dtype=torch.uint8)
    keep = torch.empty_like(positive)
    _function("relu_dropout", z.dtype)(_ptr(z), _ptr(bits), threshold, slope, scale, _ptr(out), _ptr(positive),
                                       _ptr(keep), z.numel(), torch.get_num_threads())
    return out, positive, keep


def relu_dropout_backward(grad: torch.Tensor, positive: torch.Tensor, keep: torch.Tensor, slope: float,
                          scale: float) -> torch.Tensor:
    """Gradient of :func:`relu_dropout` for contiguous ``grad``, from the two packed masks."""
    out = torch.empty_like(grad)
    _function("relu_dropout_backward", grad.dtype)(_ptr(grad), _ptr(positive), _ptr(keep), slope, scale, _ptr(out),
                                                   grad.numel(), torch.get_num_threads())
    return out


def sort_unique(keys: torch.Tensor, total: int) -> torch.Tensor:
    """``torch.unique(keys)`` (sorted) for int64 ``keys`` spread evenly over ``[0, total)``, in O(n).

    The Erdős–Rényi sampler's random keys: a counting sort into key ranges of about 4096 keys, then
    within each range (in cache) into ranges of about two keys and an insertion sort, where
    ``torch.unique`` sorts in O(n log n). Memory: the result, plus workspace freed on return. Falls
    back to ``torch.unique`` (the same result) when the native kernels are off or the keys are not
    int64 on the CPU.
    """
    if _disabled_depth or keys.dtype != torch.int64 or keys.device.type != "cpu" or not available():
        return torch.unique(keys)
    keys = keys.contiguous()
    out = torch.empty_like(keys)
    kept = _library().sort_unique_keys(_ptr(keys), keys.numel(), total, _ptr(out))
    if kept < 0:
        raise MemoryError(f"sort_unique: no memory for the workspace of {keys.numel()} keys")
    return out[:kept]  # a view: the few repeats dropped are not worth a copy
