"""The chapter's models, written once in d2lcompat, used by several scenarios."""

from __future__ import annotations

from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import Parameter, nn, ops


def assert_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(to_np(actual), to_np(expected), rtol=rtol, atol=atol)


def to_np(x: Any) -> np.ndarray:
    if isinstance(x, (np.ndarray, np.generic, list, tuple, float, int)):
        return np.asarray(x)
    return ops.to_numpy(x)


def mlp_sequential() -> nn.Sequential:
    return nn.Sequential(nn.Dense(256, activation="relu"), nn.Dense(10))


class MLP(nn.Block):
    """§5.1: a hidden layer and an output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Dense(256, activation="relu")
        self.out = nn.Dense(10)

    def forward(self, x: Any) -> Any:
        return self.out(ops.relu(self.hidden(x)))


class MySequential(nn.Block):
    """§5.1: a Sequential written by hand, registering children in a loop."""

    def __init__(self, *blocks: nn.Block) -> None:
        super().__init__()
        for block in blocks:
            self.register_child(block)

    def forward(self, x: Any) -> Any:
        for block in self._children.values():
            x = block(x)
        return x


class FixedHiddenMLP(nn.Block):
    """§5.1: a constant weight, one Dense used twice, Python control flow on a value."""

    def __init__(self) -> None:
        super().__init__()
        self.rand_weight = d2lcompat.Constant(ops.random.uniform((20, 20)))
        self.dense = nn.Dense(20, activation="relu")

    def forward(self, x: Any) -> Any:
        x = self.dense(x)
        x = ops.relu(ops.matmul(x, self.rand_weight.data()) + 1)
        x = self.dense(x)
        while ops.sum(ops.abs(x)) > 1:  # a native comparison, as in every tab of the chapter
            x = x / 2
        return ops.sum(x)


class NestMLP(nn.Block):
    """§5.1: a Sequential inside a block."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dense(64, activation="relu"), nn.Dense(32, activation="relu"))
        self.dense = nn.Dense(16, activation="relu")

    def forward(self, x: Any) -> Any:
        return self.dense(self.net(x))


class CenteredLayer(nn.Block):
    """§5.4: a layer without parameters."""

    def forward(self, x: Any) -> Any:
        return x - ops.mean(x)


class MyDense(nn.Block):
    """§5.4: a layer with parameters; ``in_units=0`` is inferred at the first call."""

    def __init__(self, units: int, in_units: int = 0) -> None:
        super().__init__()
        self.units = units
        self.weight = Parameter((in_units, units), init=d2lcompat.init.Normal(0.5))
        self.bias = Parameter((units,), init=d2lcompat.init.Normal(0.5))

    def infer_shape(self, x: Any) -> None:
        self.weight.shape = (ops.shape(x)[-1], self.units)

    def forward(self, x: Any) -> Any:
        return ops.relu(ops.matmul(x, self.weight.data()) + self.bias.data())


def block1() -> nn.Sequential:
    return nn.Sequential(nn.Dense(32, activation="relu"), nn.Dense(16, activation="relu"))


def block2() -> nn.Sequential:
    """§5.2: a Sequential of four block1, registered under the names ``block0``..``block3``."""
    net = nn.Sequential()
    for i in range(4):
        net.register_child(block1(), f"block{i}")
    return net


def rgnet() -> nn.Sequential:
    return nn.Sequential(block2(), nn.Dense(10))


# ------------------------------------------------------------------ chapters 6 to 8


def lenet() -> nn.Sequential:
    """§7.6: LeNet-5 with sigmoid activations and average pooling (28x28 inputs)."""
    return nn.Sequential(
        nn.Conv2D(6, kernel_size=5, padding=2, activation="sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5, activation="sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Flatten(),
        nn.Dense(120, activation="sigmoid"),
        nn.Dense(84, activation="sigmoid"),
        nn.Dense(10),
    )


def lenet_bn(pad: int = 0) -> nn.Sequential:
    """§8.5: LeNet with BatchNorm after every convolution and hidden Dense layer.
    ``pad=2`` keeps the chapter's 28x28 arithmetic on 8x8 digits (8 -> 8 -> 4 -> 0 would
    not fit): the first convolution pads its input."""
    return nn.Sequential(
        nn.Conv2D(6, kernel_size=5, padding=pad), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5, padding=pad), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Flatten(),
        nn.Dense(120), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.Dense(84), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.Dense(10),
    )


def vgg_block(num_convs: int, channels: int) -> nn.Sequential:
    """§8.2: ``num_convs`` 3x3 convolutions (padding 1, ReLU), then a 2x2 max pool."""
    blk = nn.Sequential()
    for _ in range(num_convs):
        blk.add(nn.Conv2D(channels, kernel_size=3, padding=1, activation="relu"))
    blk.add(nn.MaxPool2D(pool_size=2, strides=2))
    return blk


class Residual(nn.Block):
    """§8.6: the ResNet residual block (optionally a 1x1 convolution on the shortcut)."""

    def __init__(self, channels: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2D(channels, kernel_size=1, strides=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def forward(self, X: Any) -> Any:
        Y = ops.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return ops.relu(Y + X)


class CharLM(nn.Block):
    """Chapter 9's character-level language model: an embedding, a recurrent layer
    (``NTC``) and a Dense read-out. ``net(X)`` maps ``(N, T)`` indices to ``(N, T, V)``
    logits; ``SoftmaxCrossEntropyLoss`` then gives each sequence's mean loss."""

    def __init__(self, vocab_size: int, num_hiddens: int = 64, embed: int = 16,
                 num_layers: int = 1, cell: str = "lstm") -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed)
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = layer(num_hiddens, num_layers=num_layers, layout="NTC", input_size=embed)
        self.dense = nn.Dense(vocab_size, in_units=num_hiddens)

    def forward(self, X: Any) -> Any:
        Y = self.rnn(self.embedding(X))
        # The Dense read-out over the last axis (no reshape: shapes may be symbolic).
        dense = self.dense
        logits = ops.linear(Y, dense.weight.data(), dense.bias.data())
        return logits


def char_batches(text: str, num_steps: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The characters of ``text`` (sorted), and every window of ``num_steps`` (inputs,
    targets shifted by one) as int64 arrays ``(windows, num_steps)``, shuffled by ``seed``."""
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    starts = np.random.default_rng(seed).permutation(len(ids) - num_steps - 1)
    X = np.stack([ids[s : s + num_steps] for s in starts])
    Y = np.stack([ids[s + 1 : s + num_steps + 1] for s in starts])
    return chars, X, Y
