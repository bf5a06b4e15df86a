"""Built-in blocks: Sequential, Dense, Activation, Flatten, Dropout, Lambda and containers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, overload

import numpy as np

from .. import _device
from .. import autograd as _autograd
from .. import ops as _ops
from .._errors import D2LCompatError, DeviceError, DTypeError, ShapeError
from .._parameter import Parameter
from .._random import generator
from .._registry import active
from . import _layout
from ._block import Block, _ParamContainer
from ._shapes import flatten_batch

# Fixed once the backend is loaded: only a channels-last backend (TensorFlow) plans
# layout chains; every other one runs `Sequential.forward`'s plain loop.
_CHAINS = active().LAYOUT_CHAINS

__all__ = [
    "Activation",
    "BlockDict",
    "BlockList",
    "Dense",
    "Dropout",
    "Flatten",
    "Lambda",
    "ParameterList",
    "Sequential",
]


def _softrelu(x: Any) -> Any:
    """Gluon's ``'softrelu'`` (softplus), ``log(1 + exp(x))``, computed without overflow
    as ``relu(x) + log(1 + exp(-|x|))``."""
    return _ops.relu(x) + _ops.log(1.0 + _ops.exp(-_ops.abs(x)))


def _softsign(x: Any) -> Any:
    """Gluon's ``'softsign'``, ``x / (1 + |x|)``."""
    return x / (1.0 + _ops.abs(x))


def _activation(name: str | None) -> Callable[[Any], Any] | None:
    if name is None:
        return None
    table: dict[str, Callable[[Any], Any]] = {
        "relu": _ops.relu,
        "sigmoid": _ops.sigmoid,
        "tanh": _ops.tanh,
        "softrelu": _softrelu,
        "softsign": _softsign,
        "softmax": _ops.softmax,
        "log_softmax": _ops.log_softmax,
    }
    try:
        return table[name]
    except KeyError:
        raise D2LCompatError(
            f"Unknown activation {name!r}; use one of {', '.join(table)} or nn.Lambda(fn)."
        ) from None


class Sequential(Block):
    """Children run one after the other.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> net = nn.Sequential(nn.Dense(256, activation="relu"), nn.Dense(10))
    >>> net.initialize(); ops.shape(net(ops.random.uniform((2, 20))))
    (2, 10)
    >>> len(net), type(net[0]).__name__, len(net[0:1])
    (2, 'Dense', 1)
    """

    def __init__(self, *blocks: Block) -> None:
        super().__init__()
        self.add(*blocks)

    def add(self, *blocks: Block) -> Sequential:
        """Append blocks; return self."""
        for block in blocks:
            self.register_child(block)
        return self

    # (version, steps): the layout plan of `_layout.plan`; steps None means no chain.
    _plan: tuple[int, tuple[Any, ...] | None] = (-1, None)

    def forward(self, x: Any, *args: Any) -> Any:
        if _CHAINS and not args:
            # Runs of conv / pool / BatchNorm layers stay in the adapter's preferred
            # layout (d2lcompat.nn._layout); the plan is made once per structure.
            plan = self._plan
            steps = plan[1] if plan[0] == self._version else _layout.plan(self)
            if steps is not None:
                for step in steps:
                    x = step(x)
                return x
        for block in self._sequence():
            x = block(x, *args)
            args = ()
        return x

    @overload
    def __getitem__(self, index: int) -> Block: ...
    @overload
    def __getitem__(self, index: slice) -> Sequential: ...
    def __getitem__(self, index: int | slice) -> Block:
        children = list(self._children.values())
        if isinstance(index, slice):
            # A new Sequential holding the very same children (and so the same parameters).
            return Sequential(*children[index])
        try:
            return children[index]
        except IndexError:
            raise IndexError(
                f"Sequential index {index} out of range for {len(children)} children"
            ) from None

    def __len__(self) -> int:
        return len(self._sequence())

    def __iter__(self) -> Iterator[Block]:
        return iter(list(self._children.values()))


def _check_input_dtype(block: str, x: Any, weight: Any) -> None:
    """Integer or boolean features into a float layer: one named error on every backend
    (torch, TensorFlow and Paddle raise their own, JAX would promote and train)."""
    b = active()
    got, want = b.dtype(x), b.dtype(weight)
    if not got.startswith(("float", "bfloat", "complex")):
        raise DTypeError(
            f"{block}: the input has dtype {got}, the layer's weight {want}. Feed float "
            f"features: ops.cast(X, {want!r}) (or X.astype({want!r}) for a NumPy array); "
            "integer class indices go into an Embedding."
        )


class Dense(Block):
    """A fully connected layer: ``y = activation(x · Wᵀ + b)``.

    As Gluon's, with ``flatten=True`` (the default) an input of rank > 2 is first
    flattened to ``(batch, -1)``, so ``Dense`` may follow a convolution directly (the
    book's MXNet cells); with ``flatten=False`` the layer maps the last axis and keeps
    the others (``(N, T, C)`` sequences; PyTorch's ``nn.Linear``). On a 2-D input both
    are the same. ``weight`` has shape ``(units, in_units)``; ``in_units=0`` means
    "inferred at the first call" (the flattened size with ``flatten=True``).
    ``params=other.params`` (Gluon) shares ``other``'s weight and bias.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> layer = nn.Dense(3); layer.initialize()
    >>> layer.weight.shape
    (3, 0)
    >>> _ = layer(ops.ones((2, 5))); layer.weight.shape
    (3, 5)
    >>> ops.shape(nn.Dense(3)(ops.ones((2, 4, 5)))), ops.shape(nn.Dense(3, flatten=False)(ops.ones((2, 4, 5))))
    ((2, 3), (2, 4, 3))
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        flatten: bool = True,
        dtype: str = "float32",
        weight_initializer: Any = None,
        bias_initializer: Any = "zeros",
        in_units: int = 0,
        params: Any = None,
    ) -> None:
        super().__init__()
        self._units = int(units)
        # Gluon's flatten: True reshapes a rank > 2 input to (batch, -1) first.
        self._flatten = bool(flatten)
        self._act_name = activation
        self._act = _activation(activation)
        # An adapter's fused `linear_<activation>` (one dispatch instead of two), if any.
        self._fused = getattr(active().ops, f"linear_{activation}", None) if activation else None
        self.weight = Parameter((units, in_units), dtype=dtype, init=weight_initializer)
        self.bias: Parameter | None = (
            Parameter((units,), dtype=dtype, init=bias_initializer) if use_bias else None
        )
        if params is not None:  # Gluon's Dense(..., params=shared.params): share them
            self.share_parameters(params)

    def infer_shape(self, x: Any) -> None:
        shape = active().shape(x)
        n = int(np.prod(shape[1:])) if self._flatten and len(shape) > 2 else int(shape[-1])
        self.weight.shape = (self._units, n)

    def forward(self, x: Any) -> Any:
        shape = x.shape
        if self._flatten and len(shape) > 2:
            x = flatten_batch(x)
            shape = x.shape
        weight = self.weight
        n = shape[-1]
        if n != weight._shape[1] and n is not None:
            self._wrong_features(x)
        bias = self.bias
        fused = self._fused
        w = weight.data()
        if x.dtype != w.dtype:  # one comparison on the happy path
            _check_input_dtype(f"Dense '{self.name or 'net'}'", x, w)
        try:  # free on the happy path (zero-cost exceptions); see _devices_differ
            if fused is not None:
                return fused(x, w, None if bias is None else bias.data())
            y = _ops.linear(x, w, None if bias is None else bias.data())
        except DeviceError as exc:
            named = self._devices_differ(x)
            if named is None:
                raise
            raise named from exc
        act = self._act
        return y if act is None else act(y)

    def _devices_differ(self, x: Any) -> DeviceError | None:
        """The error naming this block's parameter device and the input's device, after
        ``ops.linear`` raised `DeviceError`; None when those two agree (then the op's own
        message, e.g. weight and bias apart, is the right one)."""
        try:
            params = _device.device_of(self.weight.native())
            inputs = _device.device_of(x)
        except D2LCompatError:
            return None
        if params == inputs:
            return None
        return _device.block_input_device_error(f"Dense '{self.name or 'net'}'", params, inputs)

    def _wrong_features(self, x: Any) -> None:
        want = self.weight.shape[1]
        raise ShapeError(
            f"Dense '{self.name or 'net'}' expects inputs with {want} features; received shape "
            f"{tuple(active().shape(x))}. Re-create the layer or feed {want} features."
        )

    def _extra_repr(self) -> str:
        n_in = self.weight.shape[1] or None
        act = f"Activation({self._act_name})" if self._act_name else "linear"
        flat = "" if self._flatten else ", flatten=False"
        return f"{n_in} -> {self._units}, {act}{flat}"

    def __repr__(self) -> str:
        return f"Dense({self._extra_repr()})"


class Activation(Block):
    """An activation function as a block: ``'relu'``, ``'sigmoid'``, ``'tanh'``,
    ``'softrelu'`` (``log(1 + exp(x))``), ``'softsign'`` (``x / (1 + |x|)``),
    ``'softmax'``, ``'log_softmax'`` (Gluon's names; also ``Dense(activation=...)``).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ops.to_numpy(nn.Activation("relu")(ops.tensor([-1.0, 2.0]))).tolist()
    [0.0, 2.0]
    >>> ops.to_numpy(nn.Activation("softsign")(ops.tensor([-1.0, 3.0]))).tolist()
    [-0.5, 0.75]
    """

    def __init__(self, activation: str) -> None:
        super().__init__()
        self._name = activation
        act = _activation(activation)
        assert act is not None
        self._fn = act

    def forward(self, x: Any) -> Any:
        return self._fn(x)

    def _forward_nhwc(self, x: Any) -> Any:
        # Inside a layout chain (d2lcompat.nn._layout) only for elementwise functions.
        return self._fn(x)

    def _extra_repr(self) -> str:
        return self._name


class Flatten(Block):
    """Flattens every axis but the first.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ops.shape(nn.Flatten()(ops.ones((2, 3, 4))))
    (2, 12)
    """

    def forward(self, x: Any) -> Any:
        return flatten_batch(x)


class Dropout(Block):
    """Zeroes each element with probability ``rate`` while training (inside
    ``autograd.record()`` or ``autograd.train_mode()``) and scales the rest by
    ``1/(1-rate)``; the identity otherwise. ``rate=1`` zeroes everything (Gluon). The
    mask comes from d2lcompat's seeded generator, so it is the same on every backend.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> x = ops.ones((2, 3)); bool((ops.to_numpy(nn.Dropout(0.5)(x)) == 1).all())
    True
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise D2LCompatError(f"Dropout rate must be in [0, 1], got {rate}")
        self._rate = float(rate)

    def forward(self, x: Any) -> Any:
        if not _autograd.is_training() or self._rate == 0.0:
            return x
        if self._rate == 1.0:  # everything dropped; the gradient is zero, not NaN
            return x * 0.0
        b = active()
        keep = generator().random(b.shape(x)) >= self._rate
        mask = b.from_numpy(keep.astype(np.float32) / (1.0 - self._rate), b.dtype(x), b.device_of(x))
        return x * mask

    def _extra_repr(self) -> str:
        return f"p={self._rate}"


class Lambda(Block):
    """Wraps a function of native tensors as a block; a string names an op of
    `d2lcompat.ops` (Gluon's ``nn.Lambda('tanh')``, an operator name).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ops.to_numpy(nn.Lambda(lambda x: x * 2)(ops.ones((2,)))).tolist()
    [2.0, 2.0]
    >>> ops.to_numpy(nn.Lambda("relu")(ops.tensor([-1.0, 2.0]))).tolist()
    [0.0, 2.0]
    """

    def __init__(self, fn: Callable[..., Any] | str) -> None:
        super().__init__()
        if isinstance(fn, str):
            op = getattr(_ops, fn, None) if not fn.startswith("_") else None
            if not callable(op):
                raise D2LCompatError(
                    f"Lambda({fn!r}): d2lcompat.ops has no op {fn!r}; pass a function "
                    "(nn.Lambda(lambda x: ...)) or an op name such as 'tanh', 'relu', 'exp'."
                )
            fn = op
        if not callable(fn):
            raise D2LCompatError(f"Lambda needs a callable or an op name, got {type(fn).__name__}")
        self._fn = fn

    def forward(self, *args: Any) -> Any:
        return self._fn(*args)

    def _extra_repr(self) -> str:
        return getattr(self._fn, "__name__", type(self._fn).__name__)


class BlockList(Block):
    """A list of blocks whose parameters are registered (PyTorch's ``ModuleList``).
    It is a container: iterate over it in a parent's forward; calling it raises.

    Examples
    --------
    >>> from d2lcompat import nn
    >>> layers = nn.BlockList([nn.Dense(2), nn.Dense(3)]); layers.append(nn.Dense(4))
    >>> len(layers), list(layers.collect_params())[-1]
    (3, '2.bias')
    """

    def __init__(self, blocks: Iterable[Block] = ()) -> None:
        super().__init__()
        self.extend(blocks)

    def append(self, block: Block) -> BlockList:
        """Add a block at the end; return self."""
        self.register_child(block)
        return self

    def extend(self, blocks: Iterable[Block]) -> BlockList:
        """Add blocks at the end; return self."""
        for block in blocks:
            self.append(block)
        return self

    def __getitem__(self, index: int) -> Block:
        return self._sequence()[index]

    def __len__(self) -> int:
        return len(self._sequence())

    def __iter__(self) -> Iterator[Block]:
        return iter(self._sequence())

    def __call__(self, *args: Any) -> Any:
        raise NotImplementedError(
            "BlockList is a container and cannot be called; iterate over it in forward()."
        )

    forward = __call__


class BlockDict(Block):
    """A dict of blocks whose parameters are registered (PyTorch's ``ModuleDict``).
    Blocks are reachable by key and, for identifier keys, as attributes.

    Examples
    --------
    >>> from d2lcompat import nn
    >>> d = nn.BlockDict({"enc": nn.Dense(2)}); d["dec"] = nn.Dense(3)
    >>> d.dec is d["dec"], list(d.keys())
    (True, ['enc', 'dec'])
    """

    def __init__(self, blocks: Mapping[str, Block] | None = None) -> None:
        super().__init__()
        for key, block in (blocks or {}).items():
            self[key] = block

    def __setitem__(self, key: str, block: Block) -> None:
        self.register_child(block, str(key))

    def __getitem__(self, key: str) -> Block:
        try:
            return self._children[key]
        except KeyError:
            raise KeyError(f"No block {key!r}; keys: {', '.join(self._children) or '(none)'}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._children

    def __len__(self) -> int:
        return len(self._sequence())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._children))

    def keys(self) -> Any:
        """The keys."""
        return self._children.keys()

    def values(self) -> Any:
        """The blocks."""
        return self._children.values()

    def items(self) -> Any:
        """``(key, block)`` pairs."""
        return self._children.items()

    def __call__(self, *args: Any) -> Any:
        raise NotImplementedError(
            "BlockDict is a container and cannot be called; pick a block by key in forward()."
        )

    forward = __call__


class ParameterList(_ParamContainer):
    """A list of parameters registered for a custom layer (PyTorch's ``ParameterList``).

    Examples
    --------
    >>> from d2lcompat import nn, Parameter
    >>> ps = nn.ParameterList([Parameter((2,)), Parameter((3,))])
    >>> len(ps), ps[1].shape
    (2, (3,))
    """

    def __init__(self, params: Iterable[Parameter] = ()) -> None:
        super().__init__()
        for p in params:
            self.append(p)

    def append(self, param: Parameter) -> ParameterList:
        """Add a parameter at the end; return self."""
        if not isinstance(param, Parameter):
            raise D2LCompatError(f"ParameterList holds Parameters, got {type(param).__name__}")
        self._register_param(str(len(self._params)), param)
        return self

    def __getitem__(self, index: int) -> Parameter:
        return list(self._params.values())[index]

    def __iter__(self) -> Iterator[Parameter]:
        return iter(list(self._params.values()))
