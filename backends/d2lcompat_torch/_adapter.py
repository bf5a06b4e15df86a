"""PyTorch adapter: answers *how* for each primitive of `d2lcompat.Backend`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from d2lcompat._backend import Backend, DeviceTuple, Ops
from d2lcompat._errors import DeviceError, InPlaceUpdateError, TracedValueError

_mse_loss = torch._C._nn.mse_loss
_RNN_KERNELS = {"gru": torch._VF.gru, "rnn_tanh": torch._VF.rnn_tanh, "rnn_relu": torch._VF.rnn_relu}

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


class TorchOps(Ops):
    """Native torch ops with NumPy semantics."""

    matmul = staticmethod(torch.matmul)
    add = staticmethod(torch.add)
    subtract = staticmethod(torch.subtract)
    multiply = staticmethod(torch.multiply)
    divide = staticmethod(torch.divide)
    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    abs = staticmethod(torch.abs)
    sqrt = staticmethod(torch.sqrt)
    square = staticmethod(torch.square)
    where = staticmethod(torch.where)
    equal = staticmethod(torch.eq)
    not_equal = staticmethod(torch.ne)
    less = staticmethod(torch.lt)
    less_equal = staticmethod(torch.le)
    greater = staticmethod(torch.gt)
    greater_equal = staticmethod(torch.ge)
    relu = staticmethod(torch.relu)
    sigmoid = staticmethod(torch.sigmoid)
    tanh = staticmethod(torch.tanh)
    linear = staticmethod(F.linear)

    @staticmethod
    def maximum(a: Any, b: Any) -> torch.Tensor:
        # torch.maximum takes tensors only; NumPy (and the other backends) take scalars.
        if not isinstance(b, torch.Tensor):
            b = torch.full((), b, dtype=a.dtype, device=a.device)
        elif not isinstance(a, torch.Tensor):
            a = torch.full((), a, dtype=b.dtype, device=b.device)
        return torch.maximum(a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> torch.Tensor:
        if not isinstance(b, torch.Tensor):
            b = torch.full((), b, dtype=a.dtype, device=a.device)
        elif not isinstance(a, torch.Tensor):
            a = torch.full((), a, dtype=b.dtype, device=b.device)
        return torch.minimum(a, b)

    @staticmethod
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() == 1 and b.dim() == 1:
            return torch.dot(a, b)
        return torch.matmul(a, b)

    @staticmethod
    def sum(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            return torch.sum(x).reshape((1,) * x.dim()) if keepdims else torch.sum(x)
        return torch.sum(x, dim=_axis(axis), keepdim=keepdims)

    @staticmethod
    def mean(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            return torch.mean(x).reshape((1,) * x.dim()) if keepdims else torch.mean(x)
        return torch.mean(x, dim=_axis(axis), keepdim=keepdims)

    @staticmethod
    def max(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            return torch.amax(x).reshape((1,) * x.dim()) if keepdims else torch.amax(x)
        return torch.amax(x, dim=_axis(axis), keepdim=keepdims)

    @staticmethod
    def min(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            return torch.amin(x).reshape((1,) * x.dim()) if keepdims else torch.amin(x)
        return torch.amin(x, dim=_axis(axis), keepdim=keepdims)

    @staticmethod
    def norm(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            out = torch.linalg.vector_norm(x)
            return out.reshape((1,) * x.dim()) if keepdims else out
        return torch.linalg.vector_norm(x, dim=_axis(axis), keepdim=keepdims)

    @staticmethod
    def reshape(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return torch.reshape(x, tuple(shape))

    @staticmethod
    def transpose(x: torch.Tensor, axes: Sequence[int] | None = None) -> torch.Tensor:
        if axes is None:
            axes = tuple(range(x.dim() - 1, -1, -1))
        return torch.permute(x, tuple(axes))

    @staticmethod
    def concat(xs: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(list(xs), dim=axis)

    @staticmethod
    def stack(xs: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.stack(list(xs), dim=axis)

    @staticmethod
    def split(x: torch.Tensor, indices_or_sections: Any, axis: int = 0) -> list[torch.Tensor]:
        # tensor_split is NumPy's array_split: for the core's checked arguments, np.split.
        if isinstance(indices_or_sections, int):
            return list(torch.tensor_split(x, indices_or_sections, dim=axis))
        return list(torch.tensor_split(x, list(indices_or_sections), dim=axis))

    @staticmethod
    def expand_dims(x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.unsqueeze(x, axis)

    @staticmethod
    def squeeze(x: torch.Tensor, axis: Any = None) -> torch.Tensor:
        if axis is None:
            return torch.squeeze(x)
        return torch.squeeze(x, dim=_axis(axis))

    @staticmethod
    def softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
        return torch.softmax(x, dim=axis)

    @staticmethod
    def log_softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
        return torch.log_softmax(x, dim=axis)

    @staticmethod
    def index_update(x: torch.Tensor, index: Any, value: Any) -> torch.Tensor:
        y = x.clone()  # differentiable: autograd records the copy and the write
        y[index] = value
        return y


class TorchBackend(Backend):
    """The PyTorch backend."""

    name: ClassVar[str] = "torch"
    SUPPORTS_MUTABLE_VARIABLES: ClassVar[bool] = True
    SUPPORTS_CPU_DEVICES: ClassVar[bool] = False  # torch has one CPU device
    #: What torch raises for an op on two devices ("Expected all tensors to be on the same
    #: device"); the core turns it into DeviceError (only where a GPU makes two devices).
    DEVICE_MISMATCH_ERRORS: ClassVar[tuple[type[Exception], ...]] = (RuntimeError,)
    SUPPORTS_COMPILE: ClassVar[bool] = True

    def __init__(self) -> None:
        self.ops = TorchOps()
        self._ones: dict[Any, Any] = {}  # a 1.0 per device (`nonfinite_mean`)

    @property
    def version(self) -> str:
        return str(torch.__version__)

    # ---------------------------------------------------------------- devices
    def device_count(self, kind: str) -> int:
        if kind == "cpu":
            return 1
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    def native_device(self, device: DeviceTuple) -> torch.device:
        kind, index = device
        return torch.device("cpu") if kind == "cpu" else torch.device("cuda", index)

    def device_of(self, x: Any) -> DeviceTuple:
        dev = x.device
        if dev.type == "cuda":
            return ("gpu", dev.index or 0)
        if dev.type == "cpu":
            return ("cpu", 0)
        raise DeviceError(f"d2lcompat does not know the torch device {dev}.")

    def move(self, x: Any, device: DeviceTuple, copy: bool) -> Any:
        return x.to(self.native_device(device), copy=copy)

    # ---------------------------------------------------------------- tensors
    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def _dev(self, device: DeviceTuple | None) -> torch.device | None:
        return None if device is None else self.native_device(device)

    def from_numpy(self, array: np.ndarray, dtype: str | None, device: DeviceTuple | None) -> Any:
        arr = np.asarray(array)
        if arr.dtype.name == "bfloat16":  # ml_dtypes bfloat16: go through float32
            t = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32))).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.array(arr, copy=True, order="C"))
        return t.to(device=self._dev(device), dtype=_DTYPES[dtype] if dtype else None)

    def to_numpy(self, x: Any) -> np.ndarray:
        t = x.detach()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.to(torch.float32).cpu().numpy().astype(ml_dtypes.bfloat16)
        if t.device.type == "cpu":
            # .numpy() of a CPU tensor shares its memory (a parameter's too): a write to the
            # result would change the tensor (issue 13). host_view is the zero-copy path.
            return t.numpy().copy()
        return t.cpu().numpy()

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Any) -> str:
        return _NAMES[x.dtype]

    def cast(self, x: Any, dtype: str) -> Any:
        return x.to(_DTYPES[dtype])

    def full(self, shape: tuple[int, ...], value: Any, dtype: str, device: DeviceTuple | None) -> Any:
        return torch.full(shape, value, dtype=_DTYPES[dtype], device=self._dev(device))

    def arange(
        self, start: Any, stop: Any, step: Any, dtype: str | None, device: DeviceTuple | None
    ) -> Any:
        if dtype is None:
            ints = all(isinstance(v, int) for v in (start, stop, step))
            dtype = "int64" if ints else "float32"
        return torch.arange(start, stop, step, dtype=_DTYPES[dtype], device=self._dev(device))

    # -------------------------------------------------------------- variables
    def new_variable(
        self, value: np.ndarray, dtype: str, device: DeviceTuple | None, trainable: bool
    ) -> Any:
        t = self.from_numpy(value, dtype, device)
        return torch.nn.Parameter(t, requires_grad=trainable and t.is_floating_point())

    def read(self, var: Any) -> Any:
        return var

    def assign(self, var: Any, value: Any) -> Any:
        with torch.no_grad():
            var.copy_(value)
        return var

    def host_view(self, x: Any) -> np.ndarray:
        t = x.detach()
        if t.device.type == "cpu" and t.dtype != torch.bfloat16 and t.is_contiguous():
            return t.numpy()  # shares the tensor's memory: no copy
        return self.to_numpy(x)

    def assign_host(self, var: Any, array: np.ndarray, dtype: str) -> Any:
        src = torch.from_numpy(array) if array.flags.writeable else torch.from_numpy(array.copy())
        with torch.no_grad():
            var.copy_(src)  # one copy; host to device once on a GPU
        return var

    def fill_variable(self, var: Any, fill: Callable[[np.ndarray], None]) -> Any | None:
        if var.device.type != "cpu" or var.dtype == torch.bfloat16 or not var.is_contiguous():
            return None
        with torch.no_grad():
            fill(var.detach().numpy())
        torch.autograd.graph.increment_version(var)  # as copy_ would: stale graphs notice
        return var

    @staticmethod
    def _swap_in(var: Any, new: Any) -> tuple[Any, Any]:
        # set_: var (the same Parameter object, which optimizers and compiled graphs
        # hold) takes new's storage; the old storage lives on in a detached alias (the
        # undo) and set_ bumps var's version, as copy_ would, so stale graphs notice.
        old = var.detach()
        with torch.no_grad():
            var.set_(new)
        return var, old

    def replace_host(self, var: Any, array: np.ndarray, dtype: str) -> tuple[Any, Any] | None:
        if var.device.type != "cpu" or not var.is_contiguous():
            return None  # a GPU's memory is not the host's: the undo file instead
        if var.dtype == torch.bfloat16 or array.dtype != np.dtype(_NAMES[var.dtype]):
            return None
        # One copy of the file's values into a fresh buffer from NumPy, which asks the
        # kernel for huge pages for a large array and reuses freed memory (glibc):
        # torch's allocator maps new 4 KiB pages for every large tensor and unmaps them
        # when it is freed, so a fresh torch.empty filled from the file took 43 ms per
        # 100 MB here against 9-10 ms for NumPy's (8.5 ms into a parameter's own memory).
        return self._swap_in(var, torch.from_numpy(np.array(array, copy=True, order="C")))

    def restore_buffer(self, var: Any, undo: Any) -> Any:
        with torch.no_grad():
            var.set_(undo)
        return var

    def native_grad(self, var: Any) -> Any | None:
        return getattr(var, "grad", None)

    def clear_native_grad(self, var: Any) -> None:
        if isinstance(var, torch.Tensor):
            var.grad = None

    # --------------------------------------------------------------- autodiff
    def value_and_grad(
        self, fn: Callable[[Sequence[Any]], Any], values: Sequence[Any]
    ) -> tuple[Any, list[Any]]:
        leaves = [v.detach().requires_grad_(True) for v in values]
        with torch.enable_grad():
            out = fn(leaves)
            grads = torch.autograd.grad(out, leaves, allow_unused=True)
        return out.detach(), [
            torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)
        ]

    def value_and_grad_step(
        self,
        fn: Callable[[Sequence[Any]], tuple[Any, Any]],
        values: Sequence[Any],
        held: Sequence[Any],
        inputs: Sequence[Any],
        plan: dict[str, Any],
    ) -> tuple[Any, list[Any], Any]:
        # The eager train step's values are the parameters' own variables: leaves that
        # require grad are differentiated as they are (torch.autograd.grad with them as
        # inputs accumulates nothing into .grad), without a detached copy of each. Two
        # entries holding one tensor keep the copies (each gets its own gradient).
        if not all(v.is_leaf and v.requires_grad for v in values) or (
            len({id(v) for v in values}) != len(values)
        ):
            return self.value_and_grad_aux(fn, values)
        leaves = list(values)
        if torch.is_grad_enabled():
            out, aux = fn(leaves)
            grads = torch.autograd.grad(out, leaves, allow_unused=True)
        else:
            with torch.enable_grad():
                out, aux = fn(leaves)
                grads = torch.autograd.grad(out, leaves, allow_unused=True)
        return out.detach(), [
            torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)
        ], aux

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    # ------------------------------------------------------- layer primitives
    def conv(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> Any:
        fn = F.conv2d if len(strides) == 2 else F.conv1d
        return fn(x, w, b, strides, padding, dilation, groups)

    def pool(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        two = len(window) == 2
        if kind == "max":
            return (F.max_pool2d if two else F.max_pool1d)(x, window, strides, padding)
        return (F.avg_pool2d if two else F.avg_pool1d)(
            x, window, strides, padding, count_include_pad=True
        )

    def take(self, weight: Any, indices: Any) -> Any:
        return F.embedding(indices, weight)

    def squared_difference(self, a: Any, b: Any) -> Any:
        # One kernel forward (mse_loss) and one backward, instead of sub, mul and the
        # mul's two-product backward: the same values ((a - b) * (a - b)).
        # The ATen op itself: F.mse_loss adds a broadcast_tensors and argument checks
        # (the core passes one shape). 0: reduction "none".
        return _mse_loss(a, b, 0)

    def squared_difference_sum(self, a: Any, b: Any) -> Any:
        return _mse_loss(a, b, 2)  # 2: reduction "sum", one kernel each way

    def sparse_softmax_cross_entropy(self, pred: Any, label: Any, axis: int, from_logits: bool) -> Any:
        # torch's fused kernels (log_softmax + nll_loss, reduction='none'); classes on
        # axis 1 of an (M, C, ...) input: the common last axis is flattened to (M, C).
        if label.dtype != torch.int64:
            label = label.long()
        nd = pred.dim()
        if axis == nd - 1:
            shape = label.shape
            flat = pred.reshape(label.numel(), pred.shape[-1])
            loss = (F.nll_loss if from_logits else F.cross_entropy)(
                flat, label.reshape(-1), reduction="none"
            )
            return loss.reshape(shape)
        if axis != 1:  # the other axes keep their order: the label's shape
            pred = pred.movedim(axis, 1)
        return (F.nll_loss if from_logits else F.cross_entropy)(pred, label, reduction="none")

    def attention(self, q: Any, k: Any, v: Any, keep: Any | None) -> Any:
        # (B, T, H, D) -> torch's (B, H, T, D); a boolean attn_mask: True takes part.
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keep
        )
        return out.transpose(1, 2)

    def rnn(
        self,
        mode: str,
        x: Any,
        states: Sequence[Any],
        weights: Sequence[Any],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Any, list[Any]]:
        # torch's own fused kernels (cuDNN on a GPU): the same flat weight order
        # (w_ih, w_hh, b_ih, b_hh per layer and direction) and gate order (LSTM i, f, g, o;
        # GRU r, z, n with r applied to W_hn h + b_hn) as Gluon's.
        ws = list(weights)
        if x.is_cuda:  # cuDNN wants one flat buffer; torch copies and warns otherwise
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*contiguous chunk of memory")
                return _rnn_kernel()(mode, x, states, ws, num_layers, bidirectional)
        return _rnn_kernel()(mode, x, states, ws, num_layers, bidirectional)

    @staticmethod
    def _rnn(mode: str, x: Any, states: Sequence[Any], ws: list[Any], num_layers: int,
             bidirectional: bool) -> tuple[Any, list[Any]]:
        # (Inductor's lowering of these ops fails for stacked/bidirectional layers:
        # "expected Tensor() for op: aten.mkldnn_rnn_layer".)
        if mode == "lstm":
            y, h, c = torch._VF.lstm(x, (states[0], states[1]), ws, True, num_layers, 0.0,
                                     False, bidirectional, False)
            return y, [h, c]
        fn = _RNN_KERNELS[mode]
        y, h = fn(x, states[0], ws, True, num_layers, 0.0, False, bidirectional, False)
        return y, [h]

    # ------------------------------------------------------------- optimizers
    def fused_update(
        self,
        optimizer: Any,
        variables: Sequence[Any],
        grads: Sequence[Any],
        slots: Sequence[list[Any]],
        t: int,
        scale: float,
    ) -> bool:
        # PyTorch's own multi-tensor (foreach) implementations of the same rules: one
        # kernel per operation over every parameter instead of several Python-dispatched
        # ops per parameter, updating in place. OP01 checks them against the formulas.
        kind = optimizer.name
        if kind not in ("sgd", "adam", "adamw"):
            return False
        hp = optimizer.hyper_parameters()
        params = list(variables)
        if not all(isinstance(p, torch.Tensor) and p.dtype.is_floating_point for p in params):
            return False
        with torch.no_grad():
            gs = list(grads)  # under no_grad: nothing is recorded, no detach needed
            if kind == "sgd" and not hp["momentum"] and not hp["weight_decay"]:
                # w -= lr·(scale·g): fold the batch scale into the step, no scaled copy.
                torch._foreach_add_(params, gs, alpha=-hp["lr"] * scale)
                return True
            gs = torch._foreach_mul(gs, scale) if scale != 1.0 else gs
            if kind == "sgd":
                from torch.optim.sgd import sgd

                bufs: list[Any] = [s[0] for s in slots] if hp["momentum"] else [None] * len(params)
                sgd(params, gs, bufs, foreach=True, weight_decay=hp["weight_decay"],
                    momentum=hp["momentum"], lr=hp["lr"], dampening=0.0,
                    nesterov=bool(hp["nesterov"]), maximize=False)
                return True
            from torch.optim.adam import adam

            steps = [torch.tensor(float(t - 1)) for _ in params]  # adam adds 1 to each
            adam(params, gs, [s[0] for s in slots], [s[1] for s in slots], [], steps,
                 foreach=True, decoupled_weight_decay=kind == "adamw", amsgrad=False,
                 beta1=hp["beta1"], beta2=hp["beta2"], lr=hp["lr"],
                 weight_decay=hp["weight_decay"], eps=hp["eps"], maximize=False)
        return True

    def nonfinite_mean(self, total: Any, scale: float, grads: Sequence[Any]) -> Any | None:
        # GradScaler's own check: one multi-tensor kernel sets `found` to 1 where any
        # element is NaN or infinite (it also multiplies each gradient in place by
        # `one`, 1.0, which leaves every value as it is). sqrt(-found) is -0 where found
        # is 0 and sqrt(-1) = NaN where it is 1; add_(total, alpha=scale) makes it
        # total * scale + probe. In place on the fresh 0-d `found`: three small
        # kernels after the check, no new tensor (xlogy and add cost twice that).
        g0 = grads[0]
        dt = g0.dtype
        if not dt.is_floating_point or any(g.dtype != dt for g in grads):
            return None
        dev = g0.device
        one = self._ones.get(dev)
        if one is None:
            one = self._ones[dev] = torch.ones((), device=dev)
        try:
            # No no_grad scope needed: gradients and the loss sum carry no graph.
            found = one.new_zeros(())
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
            probe = found.neg_().sqrt_()
            if dt != torch.float32 or total.dtype != torch.float32:
                return torch.add(probe.to(dt), total, alpha=scale)
            return probe.add_(total, alpha=scale)
        except RuntimeError:  # an expanded gradient (stride 0), several devices
            return None

    def clip_by_global_norm(
        self, grads: Sequence[Any], max_norm: float, scale: float
    ) -> tuple[Any, list[Any]] | None:
        # torch's foreach kernels, as clip_grad_norm_(foreach=True): one norm kernel over
        # every gradient, one multiply; Gluon's formula (1e-8, `max_norm` as the floor).
        g0 = grads[0]
        dev = g0.device
        if any(g.dtype != torch.float32 or g.device != dev for g in grads):
            return None
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads), 2.0)))
            if scale != 1.0:
                norm = norm * scale
            clip = max_norm / torch.clamp(norm + 1e-8, min=max_norm)
            return norm, list(torch._foreach_mul(list(grads), clip))

    def translate_grad_error(self, exc: BaseException) -> BaseException | None:
        # torch's in-place checks: a tensor the backward pass needs changed after it was
        # saved ("modified by an inplace operation"), or an in-place op on a leaf or a view.
        msg = str(exc)
        if isinstance(exc, RuntimeError) and (
            "modified by an inplace operation" in msg
            or "used in an in-place operation" in msg
            or "is being modified inplace" in msg
        ):
            return InPlaceUpdateError(
                "The closure given to autograd.grad changed a tensor in place (X /= 2, "
                "X += 1, X[...] = v, X.relu_()) that torch needs for the gradient. In-place "
                "operators on native tensors belong to the framework: write X = X / 2 (a new "
                "tensor) instead, which works on every backend. See docs/divergences.md. "
                f"torch said: {msg.splitlines()[0]}"
            )
        if isinstance(exc, RuntimeError) and "numpy() on Tensor that requires grad" in msg:
            return TracedValueError(
                "The closure given to autograd.grad converted a tensor that needs a "
                "gradient to NumPy (np.asarray(x), x.numpy()). Use ops.to_numpy(x) (a "
                "detached copy) or ops.item(x), which work on every backend."
            )
        return None

    # ---------------------------------------------------------------- compile
    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        _rnn_outside_graph()  # made before Dynamo traces a forward that calls it
        return torch.compile(fn)

    # ----------------------------------------------------- native checkpoints
    NATIVE_CHECKPOINT_FORMATS: ClassVar[tuple[str, ...]] = (".pt", ".pth")

    def read_native_checkpoint(self, path: str, trusted: bool) -> tuple[str, dict[str, Any]] | None:
        from ._native_io import read_state_dict

        return read_state_dict(path)

    # ------------------------------------------------------------ distributed
    DISTRIBUTED_ENGINE: ClassVar[str] = "torch.distributed (gloo on CPU, NCCL on GPU)"

    def dist_init(self, cluster: Any) -> tuple[int, int, int]:
        import datetime
        import os

        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        if cluster is not None:
            rank, world, local = cluster.rank, cluster.world_size, cluster.rank
            init_method, timeout = f"tcp://{cluster.coordinator}", cluster.timeout
        elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
            init_method, timeout = "env://", 300.0
        else:
            return (0, 1, 0)
        if world == 1:
            return (0, 1, 0)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        engine = "nccl" if gpus and dist.is_nccl_available() else "gloo"
        if engine == "nccl":
            torch.cuda.set_device(local % gpus)
        dist.init_process_group(
            engine, init_method=init_method, rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=timeout),
        )
        return rank, world, local

    def dist_all_reduce_mean(self, tensors: Sequence[Any]) -> list[Any]:
        import torch.distributed as dist

        world = dist.get_world_size()
        out: list[Any] = [None] * len(tensors)
        # One collective per dtype over a flat buffer, as DDP's gradient buckets do.
        groups: dict[Any, list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault((t.dtype, t.device), []).append(i)
        with torch.no_grad():
            for idx in groups.values():
                flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                flat.div_(world)
                start = 0
                for i in idx:
                    n = tensors[i].numel()
                    out[i] = flat[start:start + n].view_as(tensors[i])
                    start += n
        return out

    def dist_broadcast(self, tensors: Sequence[Any], root: int) -> list[Any]:
        import torch.distributed as dist

        out = []
        with torch.no_grad():
            for t in tensors:
                c = t.detach().clone()
                dist.broadcast(c, src=root)
                out.append(c)
        return out

    def dist_shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


_RNN_OUTSIDE_GRAPH: list[Callable[..., Any]] = []


def _rnn_outside_graph() -> Callable[..., Any]:
    """`TorchBackend._rnn` behind ``torch.compiler.disable``: under torch.compile the fused
    kernel runs eagerly, as ``torch.nn.LSTM``'s does. Made at first need, not at import:
    ``torch.compiler.disable`` imports ``torch._dynamo`` (about a second)."""
    if not _RNN_OUTSIDE_GRAPH:
        _RNN_OUTSIDE_GRAPH.append(torch.compiler.disable(TorchBackend._rnn))
    return _RNN_OUTSIDE_GRAPH[0]


def _rnn_kernel() -> Callable[..., Any]:
    """The fused recurrent kernel to call: `TorchBackend._rnn` itself eagerly (no
    ``torch._dynamo`` import, no wrapper), `_rnn_outside_graph` while Dynamo traces."""
    if torch.compiler.is_compiling():
        return _rnn_outside_graph()
    return TorchBackend._rnn
