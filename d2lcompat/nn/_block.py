"""`Block`: registration, structural names, deferred initialization, sharing, devices.

Where is deferred initialization decided? `Block._prepare` (first call) and
`Parameter._finish_deferred`.
"""

from __future__ import annotations

import re
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .. import _device, _state
from .. import init as _init
from .._errors import BlockAttributeError, D2LCompatError, D2LCompatWarning, ShapeError
from .._parameter import FIRST_CALL_LOCK, Parameter
from .._registry import active as _active
from .._semantics import item_assignment_error

# True only where the backend needs the outermost forward pass run inside a device scope
# (TensorFlow with several devices, see Backend.forward_scope): fixed once the backend is
# loaded, so every other process pays one global read per call.
_SCOPED = _device.needs_forward_scope(_active())
_FORWARD = threading.local()  # .inside: a forward pass of this thread is already scoped

__all__ = ["Block", "ParameterDict"]


class Block:
    """Base class of every layer and model (Gluon's ``Block``, PyTorch's ``Module``).

    Subclass it, create children and parameters in ``__init__`` after
    ``super().__init__()``, and write ``forward(self, *args)``. Calling the block
    runs ``forward``. Attribute assignment registers children and parameters in
    definition order; a plain Python list of blocks is not registered (use
    `BlockList`).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> class MLP(nn.Block):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = nn.Dense(256, activation="relu")
    ...         self.out = nn.Dense(10)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x))
    >>> net = MLP(); net.initialize()
    >>> ops.shape(net(ops.random.uniform((2, 20))))
    (2, 10)
    """

    _children: dict[str, Block]
    _params: dict[str, Parameter]
    _parent: weakref.ref[Block] | None
    _key: str
    _ready: bool
    _version: int
    _seq: tuple[int, tuple[Block, ...]]

    def __init__(self) -> None:
        object.__setattr__(self, "_children", _Children(self))
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_parent", None)
        object.__setattr__(self, "_key", "")
        # True once every own parameter exists; checked on every call, so it is a plain bool.
        object.__setattr__(self, "_ready", False)
        # Bumped on this block and its ancestors whenever the tree below changes (a child
        # or parameter added, replaced or removed): a hybridized block builds again.
        object.__setattr__(self, "_version", 0)
        object.__setattr__(self, "_seq", (-1, ()))  # (version, children): `_sequence`

    # ----------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_children" not in self.__dict__:
            raise D2LCompatError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning attributes (while setting {name!r})."
            )
        existing: Any = self._params.get(name)
        if existing is None:
            existing = self._children.get(name)
        if existing is not None and not isinstance(value, type(existing)):
            # Gluon's rule (block.py, Block.__setattr__): a child or parameter is never
            # silently unregistered by assigning something else over it.
            raise BlockAttributeError(
                f"Changing attribute type for {name!r} of {self._describe()} from "
                f"{type(existing).__name__} to {type(value).__name__} is not allowed (Gluon's "
                f"rule). Delete it first (del block.{name}) to replace it by a plain value."
            )
        self._assign(name, value)

    def _assign(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._children.pop(name, None)
            self._register_param(name, value)
        elif isinstance(value, Block):
            self._params.pop(name, None)
            self._register(name, value)
        else:
            if name in self._params:
                del self._params[name]
                _changed(self)
            if name in self._children:
                del self._children[name]
                _changed(self)
            if name == "forward":
                # A replaced forward (a spy, a hybridized one): a `Sequential` above
                # plans its layout chains again (d2lcompat.nn._layout).
                _changed(self)
            if _state._SCOPES and _active().is_tensor(value):
                # A tensor attribute written inside a traced or differentiated forward
                # pass (the book's BatchNorm moving_mean): state, recorded and applied
                # by the caller (d2lcompat._state).
                _state.write_attr(self, name, value)
                return
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._params or name in self._children or name == "forward":
            _changed(self)
        self._params.pop(name, None)
        self._children.pop(name, None)
        object.__delattr__(self, name)

    def _register_param(self, name: str, param: Parameter) -> None:
        self._params[name] = param
        param._attach(self, name)
        object.__setattr__(self, "_ready", False)
        _changed(self)

    def _register(self, name: str, block: Block) -> None:
        if block is self or _is_ancestor(block, self):
            raise D2LCompatError(
                f"Cannot register {block._describe()} as child {name!r} of "
                f"{self._describe()}: a block cannot contain itself (the tree would be a "
                "cycle). Use two blocks, or one block twice in a Sequential to share it."
            )
        dict.__setitem__(self._children, name, block)
        if block._parent is None or block._parent() is None:
            # A block is named after its first parent: a shared block keeps its first name.
            object.__setattr__(block, "_parent", weakref.ref(self))
            object.__setattr__(block, "_key", name)
        _changed(self)

    def register_child(self, block: Block, name: str | None = None) -> Block:
        """Register ``block`` as a child under ``name`` (default: its position, ``'0'``...).

        Examples
        --------
        >>> from d2lcompat import nn
        >>> class MySequential(nn.Block):
        ...     def __init__(self, *blocks):
        ...         super().__init__()
        ...         for b in blocks:
        ...             self.register_child(b)
        >>> list(MySequential(nn.Dense(3), nn.Dense(2)).collect_params())
        ['0.weight', '0.bias', '1.weight', '1.bias']
        """
        if not isinstance(block, Block):
            raise D2LCompatError(
                f"register_child expects a Block, got {type(block).__name__}. "
                "Wrap functions in nn.Lambda."
            )
        key = str(len(self._children)) if name is None else str(name)
        if key.isidentifier():
            self._assign(key, block)  # replacing a child by another block is allowed here
        else:
            self._register(key, block)
        return block

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: Gluon names get a hint (docs/gluon-porting.md).
        from .._gluon import hint

        raise hint(self, name)

    def _sequence(self) -> tuple[Block, ...]:
        """The direct children as a plain tuple, rebuilt only when the tree changed: what a
        forward pass iterates (Paddle's SOT cannot iterate the `_Children` dict subclass
        without a graph break)."""
        seq = self._seq
        if seq[0] != self._version:
            seq = (self._version, tuple(dict.values(self._children)))
            object.__setattr__(self, "_seq", seq)
        return seq[1]  # type: ignore[no-any-return]

    def children(self) -> Iterator[Block]:
        """The direct children, in registration order (PyTorch's ``children()``).

        Examples
        --------
        >>> from d2lcompat import nn
        >>> [type(b).__name__ for b in nn.Sequential(nn.Dense(2), nn.Dense(1)).children()]
        ['Dense', 'Dense']
        """
        return iter(list(self._children.values()))

    def named_children(self) -> Iterator[tuple[str, Block]]:
        """``(key, child)`` pairs of the direct children, in registration order.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> [k for k, _ in nn.Sequential(nn.Dense(2), nn.Dense(1)).named_children()]
        ['0', '1']
        """
        return iter(list(self._children.items()))

    @property
    def params(self) -> ParameterDict:
        """This block's own parameters (not its children's): Gluon's ``block.params``.

        ``self.params.get(name, shape=...)`` creates and registers a parameter as Gluon's
        does, ``self.params.get_constant(name, value)`` a constant; ``Dense(...,
        params=other.params)`` shares them. `collect_params` gives the whole tree.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> class MyDense(nn.Block):
        ...     def __init__(self, units, in_units):
        ...         super().__init__()
        ...         self.weight = self.params.get("weight", shape=(in_units, units))
        >>> list(MyDense(3, 2).params), nn.Sequential(MyDense(3, 2))[0].weight.shape
        (['weight'], (2, 3))
        """
        assigned = self.__dict__.get("params")
        if assigned is not None:
            return assigned
        return _OwnParams._bound(self)

    @params.setter
    def params(self, value: Any) -> None:
        # ``self.params = nn.ParameterList([...])`` (the chapter-5 course notes'
        # MyListDense): Block.__setattr__ registered it as the child ``params``.
        self.__dict__["params"] = value

    @params.deleter
    def params(self) -> None:
        self.__dict__.pop("params", None)

    def setattr(self, name: str, value: Any) -> None:
        """Set an attribute on every parameter of the tree (Gluon's
        ``net.setattr('grad_req', 'null')``).

        Examples
        --------
        >>> from d2lcompat import nn
        >>> net = nn.Dense(2, in_units=3); net.setattr("grad_req", "null"); net.weight.grad_req
        'null'
        """
        self.collect_params().setattr(name, value)

    def zero_grad(self) -> None:
        """Zero every parameter's gradient in the tree (Gluon 2's ``block.zero_grad()``):
        ``grad()`` reads zeros of each parameter's shape afterwards.

        Examples
        --------
        >>> from d2lcompat import nn, ops
        >>> net = nn.Dense(2, in_units=3); net.initialize(); net.zero_grad()
        >>> ops.to_numpy(net.weight.grad()).sum()
        np.float32(0.0)
        """
        self.collect_params().zero_grad()

    def name_scope(self) -> Any:
        """Gluon 1.x's ``with self.name_scope():``; names are structural here, so it does
        nothing.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> with nn.Sequential().name_scope():
        ...     pass
        """
        import contextlib

        return contextlib.nullcontext()

    def reset_ctx(self, ctx: Any) -> Block:
        """Gluon's name for `to` (move every parameter to ``ctx``); returns self."""
        return self.to(ctx)

    def _path(self) -> str:
        parts: list[str] = []
        block: Block = self
        for _ in range(10_000):  # guards against a block that is its own ancestor
            ref = block._parent
            parent = ref() if ref is not None else None
            if parent is None:
                break
            parts.append(block._key)
            block = parent
        return ".".join(reversed(parts))

    @property
    def name(self) -> str:
        """The block's structural name from its outermost parent (``''`` for a root)."""
        return self._path()

    def _describe(self) -> str:
        path = self._path()
        return f"{type(self).__name__} '{path}'" if path else type(self).__name__

    # ---------------------------------------------------------------- forward
    def forward(self, *args: Any) -> Any:
        """The computation; override it in a subclass."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(self, *args)")

    def __call__(self, *args: Any) -> Any:
        if not self._ready:
            with FIRST_CALL_LOCK:  # several threads' first calls create parameters once
                if not self._ready:
                    self._prepare(*args)
        try:  # free on the happy path (zero-cost exceptions)
            if _SCOPED:
                return _scoped_forward(self, args)
            return self.forward(*args)
        except TypeError as exc:
            # `Y[i, j] = v` on a TensorFlow/JAX tensor: say what to write instead.
            err = item_assignment_error(exc, f"{self._describe()}.forward")
            if err is None:
                raise
            raise err from exc

    def infer_shape(self, *args: Any) -> None:
        """Fill in the unknown (0) dimensions of this block's own parameters from the
        inputs of the first call. `Dense` does it; a custom layer with a deferred
        dimension overrides it (Gluon's ``infer_shape``).

        Examples
        --------
        >>> from d2lcompat import nn, Parameter, ops
        >>> class MyDense(nn.Block):
        ...     def __init__(self, units, in_units=0):
        ...         super().__init__()
        ...         self.weight = Parameter((in_units, units))
        ...     def infer_shape(self, x):
        ...         self.weight.shape = (ops.shape(x)[-1], self.weight.shape[1])
        ...     def forward(self, x):
        ...         return ops.matmul(x, self.weight.data())
        >>> ops.shape(MyDense(3)(ops.ones((2, 5))))
        (2, 3)
        """

    def _own_params(self) -> Iterator[Parameter]:
        yield from self._params.values()
        for child in self._children.values():
            if isinstance(child, _ParamContainer):
                yield from child._params.values()

    def _prepare(self, *args: Any) -> None:
        """First call: infer unknown shapes, then create every own parameter still missing
        (scheduled by ``initialize()`` or never initialized: the defaults apply)."""
        params = list(self._own_params())
        if any(not p._known for p in params):
            self.infer_shape(*args)
        for p in params:
            if p._var is None:
                p._finish_deferred()
        object.__setattr__(self, "_ready", True)

    # ------------------------------------------------------------- parameters
    def _walk(self, prefix: str, out: dict[str, Parameter], seen: set[int]) -> None:
        for key, p in self._params.items():
            if id(p) not in seen:
                seen.add(id(p))
                out[prefix + key] = p
        for key, child in self._children.items():
            child._walk(f"{prefix}{key}.", out, seen)

    def collect_params(self, select: str | Iterable[str] | None = None) -> ParameterDict:
        """Every parameter of the tree, each once (a shared one under its first name),
        keyed by structural names (``0.weight``, ``hidden.bias``).

        ``select`` is a regular expression, or a list of them, matched from the start of
        each name (``re.match``, as Gluon): ``'.*weight'``.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(1))
        >>> list(net.collect_params(".*weight"))
        ['0.weight', '1.weight']
        """
        found: dict[str, Parameter] = {}
        self._walk("", found, set())
        if select is not None:
            patterns = [select] if isinstance(select, str) else list(select)
            compiled = [re.compile(p) for p in patterns]
            found = {k: v for k, v in found.items() if any(c.match(k) for c in compiled)}
        return ParameterDict._of(found)

    def initialize(
        self,
        init: _init.InitSpec = None,
        device: Any = None,
        force_reinit: bool = False,
        ctx: Any = None,
    ) -> None:
        """Initialize every parameter of the tree.

        ``init`` is the default: a parameter's own ``init`` wins over it. A parameter
        with an unknown dimension is only scheduled; the first forward pass creates it.
        Parameters that already have values are kept (with one warning) unless
        ``force_reinit=True``. ``ctx=`` is Gluon's name for ``device=``.

        Examples
        --------
        >>> from d2lcompat import nn, init, ops
        >>> net = nn.Sequential(nn.Dense(4, in_units=3)); net.initialize(init.One())
        >>> float(ops.to_numpy(net[0].weight.data()).sum()), float(ops.to_numpy(net[0].bias.data()).sum())
        (12.0, 0.0)
        """
        from .._gluon import ctx_alias

        device = ctx_alias(device, ctx, "initialize")
        params = self.collect_params()
        default = _init.create(init)
        kept = [
            name for name, p in params.items() if not p._initialize(None, default, device, force_reinit)
        ]
        if kept:
            shown = ", ".join(kept[:4]) + (", ..." if len(kept) > 4 else "")
            warnings.warn(
                f"{len(kept)} parameter(s) of {self._describe()} are already initialized "
                f"({shown}) and keep their values. Pass force_reinit=True to re-initialize.",
                D2LCompatWarning,
                stacklevel=2,
            )

    def apply(self, fn: Callable[[Block], Any]) -> Block:
        """Call ``fn(block)`` on every block of the tree, children first; return self.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> seen = []
        >>> _ = nn.Sequential(nn.Dense(2), nn.Dense(1)).apply(lambda b: seen.append(type(b).__name__))
        >>> seen
        ['Dense', 'Dense', 'Sequential']
        """
        visited: set[int] = set()

        def visit(block: Block) -> None:
            if id(block) in visited:
                return
            visited.add(id(block))
            for child in block._children.values():
                visit(child)
            fn(block)

        visit(self)
        return self

    def share_parameters(self, params: Mapping[str, Parameter]) -> Block:
        """Use the given parameters in place of this block's own, matched by structural
        name relative to this block (``weight``, ``bias``, ``0.weight``); return self.

        Examples
        --------
        >>> from d2lcompat import nn
        >>> a = nn.Dense(4, in_units=3); b = nn.Dense(4, in_units=3).share_parameters(a.collect_params())
        >>> b.weight is a.weight
        True
        """
        given = dict(params.items())
        owners: dict[str, tuple[Block, str]] = {}
        self._param_owners("", owners, set())
        for name, (owner, local) in owners.items():
            if name not in given:
                continue
            new = given[name]
            old = owner._params[local]
            if not isinstance(new, Parameter):
                raise D2LCompatError(f"share_parameters: {name!r} maps to {type(new).__name__}, not a Parameter.")
            if old._known and new._known and old.shape != new.shape:
                raise ShapeError(
                    f"share_parameters: {owner._describe()} has '{local}' of shape {old.shape}, "
                    f"the shared parameter has {new.shape}."
                )
            setattr(owner, local, new) if local.isidentifier() else owner._register_param(local, new)
        return self

    def _param_owners(self, prefix: str, out: dict[str, tuple[Block, str]], seen: set[int]) -> None:
        if id(self) in seen:
            return
        seen.add(id(self))
        for key in self._params:
            out.setdefault(prefix + key, (self, key))
        for key, child in self._children.items():
            child._param_owners(f"{prefix}{key}.", out, seen)

    def hybridize(self, active: bool = True) -> Block:
        """Compile this block's forward pass with the framework's own compiler
        (``torch.compile``, ``tf.function``, ``paddle.jit.to_static``, ``jax.jit``);
        ``hybridize(False)`` returns to eager. Returns self.

        The results equal eager ones. The first call after ``hybridize()`` runs eagerly
        (it finishes deferred initialization); later calls run compiled, with the
        parameters passed as inputs, so changed values need no re-tracing. New input
        shapes re-trace as the framework does. In training mode (``autograd.record()``)
        the block runs eagerly. Python control flow that depends on tensor values and
        that the compiler cannot handle falls back to eager with one
        `CompileFallbackWarning` naming the block. Compile the outermost block only;
        after a change of the tree below it (adding blocks, sharing parameters) its
        next call runs eagerly and traces again. Tensor attributes that ``forward``
        reassigns are state: inputs and outputs of the compiled function.

        Examples
        --------
        >>> from d2lcompat import nn, ops
        >>> net = nn.Sequential(nn.Dense(4, activation="relu"), nn.Dense(2)).hybridize()
        >>> net.initialize(); ops.shape(net(ops.ones((3, 5))))
        (3, 2)
        >>> _ = net.hybridize(False)
        """
        from ._hybrid import hybridize

        hybridize(self, active)
        return self

    def functional_call(self, values: Mapping[str, Any], *args: Any) -> Any:
        """Run the forward pass with ``values`` ({structural name: native tensor}) in place
        of the stored parameter values, without changing them. Names not given keep their
        stored values. What ``jax.jit``/``jax.grad`` and ``torch.func`` need.

        Examples
        --------
        >>> from d2lcompat import nn, ops, init
        >>> net = nn.Dense(1, in_units=2, use_bias=False); net.initialize(init.One())
        >>> x = ops.ones((1, 2))
        >>> ops.item(net.functional_call({"weight": ops.full((1, 2), 3.0)}, x)), ops.item(net(x))
        (6.0, 2.0)
        """
        from ..autograd import substituted

        params = self.collect_params()
        unknown = [k for k in values if k not in params]
        if unknown:
            raise D2LCompatError(
                f"functional_call: {self._describe()} has no parameter(s) {', '.join(unknown)}; "
                f"its parameters are: {', '.join(params.keys())}."
            )
        chosen = [params[k] for k in values]
        with substituted(chosen, list(values.values())):
            return self(*args)

    # ------------------------------------------------------------------ files
    def save_parameters(self, path: Any, max_shard_size: int | str | None = None) -> None:
        """Save every parameter (constants included) to ``path``: safetensors with the
        structural names, written atomically, loadable under every backend. With
        ``max_shard_size`` (``"2GB"``), ``path`` is a folder that gets Hugging Face's
        sharded layout (``model-00001-of-0000N.safetensors`` and
        ``model.safetensors.index.json``), atomic as a whole.

        Examples
        --------
        >>> import os, tempfile
        >>> from d2lcompat import nn
        >>> net = nn.Dense(2, in_units=3); net.initialize()
        >>> net.save_parameters(os.path.join(tempfile.mkdtemp(), "net.safetensors"))
        """
        from .._io import save_parameters

        save_parameters(self, path, max_shard_size)

    def load_parameters(
        self,
        path: Any,
        device: Any = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        trusted: bool = False,
        ctx: Any = None,
    ) -> None:
        """Load parameters from ``path`` (written by ``save_parameters`` on any backend,
        or the running framework's own checkpoint), all or nothing: on any missing,
        unexpected, mis-shaped or mis-typed tensor, or an unreadable file, raise
        `CheckpointError` listing every problem and change nothing. Deferred parameters
        take their shapes from the file; ``device`` puts every value there;
        ``trusted=True`` allows pickle-based formats (Paddle ``.pdparams``).

        Examples
        --------
        >>> import os, tempfile
        >>> from d2lcompat import nn
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> net = nn.Dense(2, in_units=3); net.initialize(); net.save_parameters(path)
        >>> clone = nn.Dense(2); clone.load_parameters(path); clone.weight.shape
        (2, 3)
        """
        from .._gluon import ctx_alias
        from .._io import load_parameters

        device = ctx_alias(device, ctx, "load_parameters")
        load_parameters(self, path, device, allow_missing, ignore_extra, trusted)

    # ---------------------------------------------------------------- devices
    def to(self, device: Any) -> Block:
        """Move every parameter (constants included) to ``device``; return self.

        Examples
        --------
        >>> from d2lcompat import nn, cpu
        >>> net = nn.Dense(2, in_units=3); net.initialize()
        >>> net.to(cpu()).weight.list_devices()
        [cpu(0)]
        """
        dev = _device.resolve(device)
        assert dev is not None
        for p in self.collect_params().values():
            p._move_to(dev)
        return self

    # ------------------------------------------------------------------- repr
    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({k}): {_indent(repr(v))}" for k, v in self._params.items()]
        lines += [f"({k}): {_indent(repr(v))}" for k, v in self._children.items()]
        head = f"{type(self).__name__}({self._extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join("  " + line for line in lines) + "\n)"


def _scoped_forward(block: Block, args: tuple[Any, ...]) -> Any:
    """``block.forward(*args)``, the outermost call of a thread inside the backend's
    `forward_scope` for the inputs, so native operators run on the inputs' device too."""
    state = _FORWARD
    if getattr(state, "inside", False):
        return block.forward(*args)
    scope = _active().forward_scope(args)
    state.inside = True
    try:
        if scope is None:
            return block.forward(*args)
        with scope:
            return block.forward(*args)
    finally:
        state.inside = False


def _changed(block: Block) -> None:
    """Note a change of the tree below ``block`` on it and on its ancestors."""
    for _ in range(10_000):  # bounded: guards against a block that is its own ancestor
        object.__setattr__(block, "_version", block.__dict__.get("_version", 0) + 1)
        ref = block._parent
        parent = ref() if ref is not None else None
        if parent is None:
            return
        block = parent


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


class _ParamContainer(Block):
    """A block that only holds parameters for its parent's forward (never called itself)."""

    def __call__(self, *args: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} holds parameters and cannot be called; use its "
            "parameters' data() in the parent block's forward."
        )

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]
        from .._gluon import _HINTS, hint

        if name in _HINTS:
            raise hint(self, name)
        raise AttributeError(f"{type(self).__name__} has no attribute or parameter {name!r}")

    def __len__(self) -> int:
        return len(self._params)

    def _repr_items(self) -> list[str]:
        return [f"({k}): {v!r}" for k, v in self._params.items()]

    def __repr__(self) -> str:
        items = self._repr_items()
        if not items:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n" + "\n".join("  " + i for i in items) + "\n)"


class ParameterDict(_ParamContainer):
    """A dict of parameters: what `Block.collect_params` returns, and a container that
    registers parameters of a custom layer (PyTorch's ``nn.ParameterDict``).

    Examples
    --------
    >>> from d2lcompat import nn, Parameter
    >>> class Two(nn.Block):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.ws = nn.ParameterDict({"a": Parameter((2,)), "b": Parameter((3,))})
    >>> list(Two().collect_params())
    ['ws.a', 'ws.b']
    """

    def __init__(self, params: Mapping[str, Parameter] | None = None) -> None:
        super().__init__()
        if params:
            self.update(params)

    @classmethod
    def _of(cls, params: dict[str, Parameter]) -> ParameterDict:
        # A view: never becomes the owner or parent of anything it lists.
        view = cls()
        view._params.update(params)
        return view

    def __getitem__(self, key: str) -> Parameter:
        try:
            return self._params[key]
        except KeyError:
            raise KeyError(
                f"No parameter {key!r}; the names are: {', '.join(self._params) or '(none)'}"
            ) from None

    def __setitem__(self, key: str, param: Parameter) -> None:
        if not isinstance(param, Parameter):
            raise D2LCompatError(f"ParameterDict values must be Parameters, got {type(param).__name__}")
        self._register_param(str(key), param)

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def keys(self) -> Any:
        """The names."""
        return self._params.keys()

    def values(self) -> Any:
        """The parameters."""
        return self._params.values()

    def items(self) -> Any:
        """``(name, parameter)`` pairs."""
        return self._params.items()

    def get(self, key: str, default: Any = None) -> Any:
        """The parameter called ``key``, or ``default``."""
        return self._params.get(key, default)

    def update(self, other: Mapping[str, Parameter]) -> None:
        """Add every ``(name, parameter)`` of ``other``."""
        for k, v in other.items():
            self[k] = v

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self._params.values():
            p.zero_grad()

    def reset_device(self, device: Any) -> ParameterDict:
        """Move every parameter to ``device`` (Gluon: ``collect_params().reset_ctx(ctx)``);
        return self.

        Examples
        --------
        >>> from d2lcompat import nn, cpu
        >>> net = nn.Dense(2, in_units=3); net.initialize()
        >>> _ = net.collect_params().reset_ctx(cpu()); net.weight.list_devices()
        [cpu(0)]
        """
        dev = _device.resolve(device)
        assert dev is not None
        for p in self._params.values():
            p._move_to(dev)
        return self

    def reset_ctx(self, ctx: Any) -> ParameterDict:
        """Gluon's name for `reset_device`."""
        return self.reset_device(ctx)

    def setattr(self, name: str, value: Any) -> None:
        """Set an attribute on every parameter (Gluon: ``params.setattr('grad_req', 'null')``)."""
        for p in self._params.values():
            setattr(p, name, value)

    def _walk(self, prefix: str, out: dict[str, Parameter], seen: set[int]) -> None:
        for key, p in self._params.items():
            if id(p) not in seen:
                seen.add(id(p))
                out[prefix + key] = p

    def _repr_items(self) -> list[str]:
        return [f"Parameter {k} (shape={v.shape}, dtype={v.dtype})" for k, v in self._params.items()]


def _is_ancestor(candidate: Block, block: Block) -> bool:
    """Whether ``candidate`` is ``block``'s parent, grandparent, ... (a cycle in the making)."""
    seen: set[int] = set()
    stack = [candidate]
    while stack:
        b = stack.pop()
        if id(b) in seen:
            continue
        seen.add(id(b))
        for child in b._children.values():
            if child is block:
                return True
            stack.append(child)
    return False


class _Children(dict):  # type: ignore[type-arg]
    """``Block._children``: a dict that registers what Gluon code assigns into it.

    The literal Gluon ``self._children[block.name] = block`` works: a block not yet
    registered has the name ``''``, so it gets its position (``'0'``, ``'1'``...) as
    key, as `Block.register_child` would give it.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Block) -> None:
        super().__init__()
        self._owner = owner

    def __setitem__(self, key: str, block: Block) -> None:
        if not isinstance(block, Block):
            raise D2LCompatError(
                f"_children values must be Blocks, got {type(block).__name__}; use "
                "register_child(block) (functions: nn.Lambda)."
            )
        key = str(key) or str(len(self))
        self._owner._register(key, block)

    def __reduce__(self) -> Any:
        return (_Children._rebuild, (self._owner, dict(self)))

    @staticmethod
    def _rebuild(owner: Block, items: dict[str, Block]) -> _Children:
        out = _Children(owner)
        dict.update(out, items)
        return out


class _OwnParams(ParameterDict):
    """`Block.params`: a view of one block's own parameters whose ``get``/``get_constant``
    create and register parameters on that block, as Gluon's ``self.params`` does."""

    _owner_block: Block

    @classmethod
    def _bound(cls, owner: Block) -> _OwnParams:
        view = cls()
        view._params.update(owner._params)
        object.__setattr__(view, "_owner_block", owner)
        return view

    def get(self, key: str, default: Any = None, **kwargs: Any) -> Any:
        """The parameter ``key``; with Gluon's keywords (``shape``, ``init``, ``dtype``,
        ``grad_req``) a missing one is created and registered on the block."""
        if key in self._params or not kwargs:
            return self._params.get(key, default)
        allowed = {"shape", "init", "dtype", "grad_req"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise TypeError(
                f"params.get({key!r}): d2lcompat's Parameter takes {', '.join(sorted(allowed))}; "
                f"not {', '.join(sorted(unknown))}."
            )
        param = Parameter(**kwargs)
        self._add(key, param)
        return param

    def get_constant(self, key: str, value: Any = None) -> Any:
        """The constant ``key``, created from ``value`` and registered when missing."""
        from .._parameter import Constant

        if key in self._params:
            return self._params[key]
        if value is None:
            raise KeyError(f"No constant {key!r}; pass its value: params.get_constant({key!r}, value).")
        const = Constant(value)
        self._add(key, const)
        return const

    def __setitem__(self, key: str, param: Parameter) -> None:
        if not isinstance(param, Parameter):
            raise D2LCompatError(f"params values must be Parameters, got {type(param).__name__}")
        self._add(str(key), param)

    def _add(self, key: str, param: Parameter) -> None:
        owner = self._owner_block
        if key.isidentifier():
            setattr(owner, key, param)
        else:
            owner._register_param(key, param)
        self._params[key] = param
