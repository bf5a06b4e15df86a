"""The native equivalent of each benchmarked d2lcompat model, one class per framework.

Each is what a user of the framework would write by hand: the same layers with the
same weights (copied from the d2lcompat net), the framework's own compiler, and its
own save/load. Imported only inside a benchmark worker, which runs one backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: One Dense layer as (weight ``(out, in)``, bias ``(out,)``, relu?).
Layer = tuple[np.ndarray, np.ndarray, bool]


class Native:
    """What the benchmark needs from a framework (subclassed once per framework)."""

    #: The module ``import <name>`` that the import benchmark times.
    module: str

    def mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        """An eager MLP with these weights: ``f(x) -> y``."""
        raise NotImplementedError

    def compiled_mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        """The same MLP compiled by the framework's own compiler."""
        raise NotImplementedError

    def sync(self, y: Any) -> None:
        """Wait until ``y`` is computed (asynchronous dispatch)."""

    def save(self, variables: Mapping[str, Any], path: str) -> None:
        """Write ``variables`` (name -> the native variables of the net) natively."""
        raise NotImplementedError

    def load(self, variables: Mapping[str, Any], path: str) -> Any:
        """Read ``path`` back into ``variables`` (as ``load_state_dict`` would)."""
        raise NotImplementedError

    def save_fsync(self, variables: Mapping[str, Any], path: str) -> None:
        """`save`, then fsync every file it wrote: the durable native save, the honest
        reference for d2lcompat's atomic (fsynced) save."""
        self.save(variables, path)
        _fsync_written(path)

    #: The ``safetensors.<module>`` with this framework's ``save_file``/``load_file``.
    st_module: str = ""

    def st_save(self, variables: Mapping[str, Any], path: str) -> None:
        """safetensors' own framework API: ``save_file`` then an fsync."""
        import importlib

        importlib.import_module(self.st_module).save_file(self._st_tensors(variables), path)
        _fsync_written(path)

    def st_load(self, variables: Mapping[str, Any], path: str) -> Any:
        """safetensors' own framework API: ``load_file`` plus copying into ``variables``."""
        import importlib

        return self._assign(variables, importlib.import_module(self.st_module).load_file(path))

    def _st_tensors(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return dict(variables)

    def _assign(self, variables: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        raise NotImplementedError


def _fsync_written(path: str) -> None:
    import glob
    import os

    for name in [path, *glob.glob(glob.escape(path) + ".*")]:
        if os.path.isfile(name):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class TorchNative(Native):
    module = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        nn = self.torch.nn
        mods: list[Any] = []
        for w, b, relu in layers:
            lin = nn.Linear(w.shape[1], w.shape[0])
            with self.torch.no_grad():
                lin.weight.copy_(self.torch.from_numpy(w))
                lin.bias.copy_(self.torch.from_numpy(b))
            mods.append(lin)
            if relu:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)

    def compiled_mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        return self.torch.compile(self.mlp(layers))

    def save(self, variables: Mapping[str, Any], path: str) -> None:
        self.torch.save(dict(variables), path)

    st_module = "safetensors.torch"

    def load(self, variables: Mapping[str, Any], path: str) -> Any:
        self._assign(variables, self.torch.load(path, weights_only=True))

    def _st_tensors(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v.detach() for k, v in variables.items()}

    def _assign(self, variables: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        with self.torch.no_grad():
            for k, v in variables.items():
                v.copy_(state[k])


class TensorFlowNative(Native):
    module = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf

    def mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        tf = self.tf

        class MLP(tf.Module):  # plain tf ops on tf.Variables, kernels (in, out) as in Keras
            def __init__(self) -> None:
                super().__init__()
                self.ws = [tf.Variable(w.T.copy()) for w, _, _ in layers]
                self.bs = [tf.Variable(b) for _, b, _ in layers]
                self.relu = [r for _, _, r in layers]

            def __call__(self, x: Any) -> Any:
                for w, b, relu in zip(self.ws, self.bs, self.relu):
                    x = tf.matmul(x, w) + b
                    if relu:
                        x = tf.nn.relu(x)
                return x

        return MLP()

    def compiled_mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        module = self.mlp(layers)
        return self.tf.function(module.__call__)

    def save(self, variables: Mapping[str, Any], path: str) -> None:
        self._checkpoint(variables).write(path)

    def load(self, variables: Mapping[str, Any], path: str) -> Any:
        self._checkpoint(variables).read(path).assert_consumed()

    st_module = "safetensors.tensorflow"

    def _st_tensors(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.tf.convert_to_tensor(v) for k, v in variables.items()}

    def _assign(self, variables: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        for k, v in variables.items():
            v.assign(state[k], read_value=False)

    def _checkpoint(self, variables: Mapping[str, Any]) -> Any:
        return self.tf.train.Checkpoint(**{k.replace(".", "_"): v for k, v in variables.items()})


class PaddleNative(Native):
    module = "paddle"

    def __init__(self) -> None:
        import paddle

        self.paddle = paddle

    def mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        nn = self.paddle.nn
        mods: list[Any] = []
        for w, b, relu in layers:
            lin = nn.Linear(w.shape[1], w.shape[0])  # paddle weights are (in, out)
            lin.weight.set_value(w.T.copy())
            lin.bias.set_value(b)
            mods.append(lin)
            if relu:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)

    def compiled_mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        return self.paddle.jit.to_static(self.mlp(layers))

    def save(self, variables: Mapping[str, Any], path: str) -> None:
        self.paddle.save(dict(variables), path)

    st_module = "safetensors.paddle"

    def load(self, variables: Mapping[str, Any], path: str) -> Any:
        self._assign(variables, self.paddle.load(path))

    def _assign(self, variables: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        for k, v in variables.items():
            v.set_value(state[k])


class JaxNative(Native):
    module = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def _params(self, layers: list[Layer]) -> tuple[list[tuple[Any, Any]], tuple[bool, ...]]:
        params = [(self.jnp.asarray(w), self.jnp.asarray(b)) for w, b, _ in layers]
        return params, tuple(r for _, _, r in layers)

    def mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        params, relus = self._params(layers)
        relu = self.jax.nn.relu

        def f(x: Any) -> Any:  # a plain JAX function, run op by op
            for (w, b), r in zip(params, relus):
                x = x @ w.T + b
                if r:
                    x = relu(x)
            return x

        return f

    def compiled_mlp(self, layers: list[Layer]) -> Callable[[Any], Any]:
        params, relus = self._params(layers)
        relu = self.jax.nn.relu

        @self.jax.jit
        def f(ps: list[tuple[Any, Any]], x: Any) -> Any:
            for (w, b), r in zip(ps, relus):
                x = x @ w.T + b
                if r:
                    x = relu(x)
            return x

        return lambda x: f(params, x)

    def sync(self, y: Any) -> None:
        self.jax.block_until_ready(y)

    def save(self, variables: Mapping[str, Any], path: str) -> None:
        from flax import serialization

        with open(path, "wb") as f:
            f.write(serialization.msgpack_serialize(dict(variables)))

    def load(self, variables: Mapping[str, Any], path: str) -> Any:
        from flax import serialization

        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
        return self._assign(variables, state)

    st_module = "safetensors.flax"

    def _assign(self, variables: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
        # Arrays on the device, as the d2lcompat loader leaves them.
        return self.jax.block_until_ready({k: self.jnp.asarray(state[k]) for k in variables})


NATIVE: dict[str, type[Native]] = {
    "torch": TorchNative,
    "tensorflow": TensorFlowNative,
    "paddle": PaddleNative,
    "jax": JaxNative,
}
