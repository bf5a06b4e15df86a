"""Chapters 6–8 (CNNs, modern CNNs) as the book's MXNet tab writes them, ported line by
line to d2lcompat: ``np``/``npx`` become ``ops``, ``Y[i, j] = ...`` becomes
``Y = ops.index_update(Y, (i, j), ...)`` (TensorFlow and JAX tensors refuse writes),
and ``Dense`` follows a convolution without ``Flatten`` as in the book (Gluon's
``flatten=True``). The asserted values and shapes are the ones the book prints; the
large networks run the book's shape-check loop on the book's input size where that is
cheap on a CPU, on a smaller input otherwise (said at each test). Training runs are left
out (the book's from-scratch BatchNorm training is GL07)."""

from __future__ import annotations

from typing import Any

import numpy as onp

import d2lcompat
from d2lcompat import autograd, nn, ops


def _np(x: Any) -> onp.ndarray:
    return ops.to_numpy(x)


def shapes(net: Any, X: Any) -> list[tuple[int, ...]]:
    """The book's loop: ``for layer in net: X = layer(X); print(..., X.shape)``."""
    out = []
    for layer in net:
        X = layer(X)
        out.append(ops.shape(X))
    return out


# ------------------------------------------------------------- 6.2 conv-layer
def corr2d(X: Any, K: Any) -> Any:
    """Compute 2D cross-correlation."""
    h, w = ops.shape(K)
    Y = ops.zeros((ops.shape(X)[0] - h + 1, ops.shape(X)[1] - w + 1))
    for i in range(ops.shape(Y)[0]):
        for j in range(ops.shape(Y)[1]):
            Y = ops.index_update(Y, (i, j), ops.sum(X[i:i + h, j:j + w] * K))  # Y[i, j] = ...
    return Y


def test_conv_layer() -> None:
    X = ops.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = ops.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert _np(corr2d(X, K)).tolist() == [[19.0, 25.0], [37.0, 43.0]]

    class Conv2D(nn.Block):
        def __init__(self, kernel_size: Any) -> None:
            super().__init__()
            self.weight = self.params.get("weight", shape=kernel_size)
            self.bias = self.params.get("bias", shape=(1,))

        def forward(self, x: Any) -> Any:
            return corr2d(x, self.weight.data()) + self.bias.data()

    X = ops.ones((6, 8))
    X = ops.index_update(X, (slice(None), slice(2, 6)), 0)  # X[:, 2:6] = 0
    assert _np(X)[0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    K = ops.tensor([[1.0, -1.0]])
    Y = corr2d(X, K)
    assert _np(Y)[0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    assert _np(corr2d(ops.transpose(X), K)).sum() == 0  # corr2d(X.T, K): all zeros

    # Construct a two-dimensional convolutional layer with 1 output channel and a
    # kernel of shape (1, 2). For the sake of simplicity, we ignore the bias here
    conv2d = nn.Conv2D(1, kernel_size=(1, 2), use_bias=False)
    conv2d.initialize()
    # The two-dimensional convolutional layer uses four-dimensional input and
    # output in the format of (example, channel, height, width), where the batch
    # size (number of examples in the batch) and the number of channels are both 1
    X = ops.reshape(X, (1, 1, 6, 8))
    Y = ops.reshape(Y, (1, 1, 6, 7))
    lr = 3e-2  # Learning rate
    for i in range(10):
        with autograd.record():
            l, _ = autograd.grad(lambda: ops.sum((conv2d(X) - Y) ** 2), conv2d.collect_params())  # noqa: E741
        # Update the kernel: conv2d.weight.data()[:] -= lr * conv2d.weight.grad()
        conv2d.weight.set_data(conv2d.weight.data() - lr * conv2d.weight.grad())
        if (i + 1) % 2 == 0:
            loss = float(ops.item(l))
    assert loss < 0.1  # the book prints ~0.009 after 10 epochs
    onp.testing.assert_allclose(_np(conv2d.weight.data()).reshape(1, 2), [[1.0, -1.0]], atol=0.1)


# ------------------------------------------------------------- 6.3 padding-and-strides
def comp_conv2d(conv2d: Any, X: Any) -> Any:
    conv2d.initialize()
    # (1, 1) indicates that batch size and the number of channels are both 1
    X = ops.reshape(X, (1, 1) + ops.shape(X))
    Y = conv2d(X)
    # Strip the first two dimensions: examples and channels
    return ops.reshape(Y, ops.shape(Y)[2:])


def test_padding_and_strides() -> None:
    X = ops.random.uniform((8, 8))
    assert ops.shape(comp_conv2d(nn.Conv2D(1, kernel_size=3, padding=1), X)) == (8, 8)
    assert ops.shape(comp_conv2d(nn.Conv2D(1, kernel_size=(5, 3), padding=(2, 1)), X)) == (8, 8)
    assert ops.shape(comp_conv2d(nn.Conv2D(1, kernel_size=3, padding=1, strides=2), X)) == (4, 4)
    conv2d = nn.Conv2D(1, kernel_size=(3, 5), padding=(0, 1), strides=(3, 4))
    assert ops.shape(comp_conv2d(conv2d, X)) == (2, 2)


# ------------------------------------------------------------- 6.4 channels
def corr2d_multi_in(X: Any, K: Any) -> Any:
    # First, iterate through the 0th dimension (channel dimension) of `X` and
    # `K`. Then, add them together
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X: Any, K: Any) -> Any:
    # Iterate through the 0th dimension of `K`, and each time, perform
    # cross-correlation operations with input `X`. All of the results are
    # stacked together
    return ops.stack([corr2d_multi_in(X, k) for k in K], 0)


def corr2d_multi_in_out_1x1(X: Any, K: Any) -> Any:
    c_i, h, w = ops.shape(X)
    c_o = ops.shape(K)[0]
    X = ops.reshape(X, (c_i, h * w))
    K = ops.reshape(K, (c_o, c_i))
    # Matrix multiplication in the fully connected layer
    Y = ops.dot(K, X)
    return ops.reshape(Y, (c_o, h, w))


def test_channels() -> None:
    X = ops.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
                    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    K = ops.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert _np(corr2d_multi_in(X, K)).tolist() == [[56.0, 72.0], [104.0, 120.0]]
    K = ops.stack((K, K + 1, K + 2), 0)
    assert ops.shape(K) == (3, 2, 2, 2)
    assert _np(corr2d_multi_in_out(X, K)).tolist() == [
        [[56.0, 72.0], [104.0, 120.0]], [[76.0, 100.0], [148.0, 172.0]],
        [[96.0, 128.0], [192.0, 224.0]]]
    X = ops.random.normal((3, 3, 3), mean=0, std=1)
    K = ops.random.normal((2, 3, 1, 1), mean=0, std=1)
    Y1 = corr2d_multi_in_out_1x1(X, K)
    Y2 = corr2d_multi_in_out(X, K)
    assert float(onp.abs(_np(Y1) - _np(Y2)).sum()) < 1e-6 * 18 * 10


# ------------------------------------------------------------- 6.5 pooling
def pool2d(X: Any, pool_size: tuple[int, int], mode: str = "max") -> Any:
    p_h, p_w = pool_size
    Y = ops.zeros((ops.shape(X)[0] - p_h + 1, ops.shape(X)[1] - p_w + 1))
    for i in range(ops.shape(Y)[0]):
        for j in range(ops.shape(Y)[1]):
            if mode == "max":
                Y = ops.index_update(Y, (i, j), ops.max(X[i: i + p_h, j: j + p_w]))
            elif mode == "avg":
                Y = ops.index_update(Y, (i, j), ops.mean(X[i: i + p_h, j: j + p_w]))
    return Y


def test_pooling() -> None:
    X = ops.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert _np(pool2d(X, (2, 2))).tolist() == [[4.0, 5.0], [7.0, 8.0]]
    assert _np(pool2d(X, (2, 2), "avg")).tolist() == [[2.0, 3.0], [5.0, 6.0]]
    X = ops.reshape(ops.arange(16, dtype="float32"), (1, 1, 4, 4))
    pool2d_ = nn.MaxPool2D(3)
    # Pooling has no model parameters, hence it needs no initialization
    assert _np(pool2d_(X)).tolist() == [[[[10.0]]]]
    pool2d_ = nn.MaxPool2D(3, padding=1, strides=2)
    assert _np(pool2d_(X)).tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    pool2d_ = nn.MaxPool2D((2, 3), padding=(0, 1), strides=(2, 3))
    assert _np(pool2d_(X)).tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    X = ops.concat((X, X + 1), 1)
    pool2d_ = nn.MaxPool2D(3, padding=1, strides=2)
    assert _np(pool2d_(X)).tolist() == [[[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]]


# ------------------------------------------------------------- 6.6 LeNet
def test_lenet() -> None:
    net = nn.Sequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, padding=2, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=5, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            # `Dense` will transform an input of the shape (batch size, number of
            # channels, height, width) into an input of the shape (batch size,
            # number of channels * height * width) automatically by default
            nn.Dense(120, activation="sigmoid"),
            nn.Dense(84, activation="sigmoid"),
            nn.Dense(10))
    X = ops.random.uniform((1, 1, 28, 28))
    net.initialize()
    assert shapes(net, X) == [(1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 5, 5),
                              (1, 120), (1, 84), (1, 10)]
    assert net[4].weight.shape == (120, 400)


# ------------------------------------------------------------- 7.1 AlexNet
def test_alexnet() -> None:
    net = nn.Sequential()
    # Here, we use a larger 11 x 11 window to capture objects. At the same time,
    # we use a stride of 4 to greatly reduce the height and width of the output.
    # Here, the number of output channels is much larger than that in LeNet
    net.add(nn.Conv2D(96, kernel_size=11, strides=4, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            # Make the convolution window smaller, set padding to 2 for consistent
            # height and width across the input and output, and increase the
            # number of output channels
            nn.Conv2D(256, kernel_size=5, padding=2, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            # Use three successive convolutional layers and a smaller convolution
            # window. Except for the final convolutional layer, the number of
            # output channels is further increased. Pooling layers are not used to
            # reduce the height and width of input after the first two
            # convolutional layers
            nn.Conv2D(384, kernel_size=3, padding=1, activation="relu"),
            nn.Conv2D(384, kernel_size=3, padding=1, activation="relu"),
            nn.Conv2D(256, kernel_size=3, padding=1, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            # Here, the number of outputs of the fully-connected layer is several
            # times larger than that in LeNet. Use the dropout layer to mitigate
            # overfitting
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            # Output layer. Since we are using Fashion-MNIST, the number of
            # classes is 10, instead of 1000 as in the paper
            nn.Dense(10))
    X = ops.random.uniform((1, 1, 224, 224))  # the book's input
    net.initialize()
    assert shapes(net, X) == [
        (1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12),
        (1, 384, 12, 12), (1, 384, 12, 12), (1, 256, 12, 12), (1, 256, 5, 5),
        (1, 4096), (1, 4096), (1, 4096), (1, 4096), (1, 10)]


# ------------------------------------------------------------- 7.2 VGG
def vgg_block(num_convs: int, num_channels: int) -> Any:
    blk = nn.Sequential()
    for _ in range(num_convs):
        blk.add(nn.Conv2D(num_channels, kernel_size=3, padding=1, activation="relu"))
    blk.add(nn.MaxPool2D(pool_size=2, strides=2))
    return blk


def vgg(conv_arch: Any) -> Any:
    net = nn.Sequential()
    # The convolutional part
    for (num_convs, num_channels) in conv_arch:
        net.add(vgg_block(num_convs, num_channels))
    # The fully-connected part
    net.add(nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(10))
    return net


def test_vgg() -> None:
    conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    # The book checks the full VGG-11 on 224 x 224; its training cell uses this
    # narrower network (a quarter of the channels), cheap enough on a CPU:
    ratio = 4
    small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
    net = vgg(small_conv_arch)
    net.initialize()
    X = ops.random.uniform((1, 1, 224, 224))
    assert shapes(net, X) == [(1, 16, 112, 112), (1, 32, 56, 56), (1, 64, 28, 28),
                              (1, 128, 14, 14), (1, 128, 7, 7), (1, 4096), (1, 4096),
                              (1, 4096), (1, 4096), (1, 10)]
    assert net[5].weight.shape == (4096, 128 * 7 * 7)  # the book's (1, 512, 7, 4096) bug is gone


# ------------------------------------------------------------- 7.3 NiN
def nin_block(num_channels: int, kernel_size: int, strides: int, padding: int) -> Any:
    blk = nn.Sequential()
    blk.add(nn.Conv2D(num_channels, kernel_size, strides, padding, activation="relu"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu"))
    return blk


def test_nin() -> None:
    net = nn.Sequential()
    net.add(nin_block(96, kernel_size=11, strides=4, padding=0),
            nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(256, kernel_size=5, strides=1, padding=2),
            nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(384, kernel_size=3, strides=1, padding=1),
            nn.MaxPool2D(pool_size=3, strides=2),
            nn.Dropout(0.5),
            # There are 10 label classes
            nin_block(10, kernel_size=3, strides=1, padding=1),
            # The global average pooling layer automatically sets the window shape
            # to the height and width of the input
            nn.GlobalAvgPool2D(),
            # Transform the four-dimensional output into two-dimensional output
            # with a shape of (batch size, 10)
            nn.Flatten())
    X = ops.random.uniform((1, 1, 224, 224))  # the book's input
    net.initialize()
    assert shapes(net, X) == [(1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26),
                              (1, 256, 12, 12), (1, 384, 12, 12), (1, 384, 5, 5),
                              (1, 384, 5, 5), (1, 10, 5, 5), (1, 10, 1, 1), (1, 10)]


# ------------------------------------------------------------- 7.4 GoogLeNet
class Inception(nn.Block):
    # `c1`--`c4` are the number of output channels for each path
    def __init__(self, c1: int, c2: Any, c3: Any, c4: int) -> None:
        super().__init__()
        # Path 1 is a single 1 x 1 convolutional layer
        self.p1_1 = nn.Conv2D(c1, kernel_size=1, activation="relu")
        # Path 2 is a 1 x 1 convolutional layer followed by a 3 x 3
        # convolutional layer
        self.p2_1 = nn.Conv2D(c2[0], kernel_size=1, activation="relu")
        self.p2_2 = nn.Conv2D(c2[1], kernel_size=3, padding=1, activation="relu")
        # Path 3 is a 1 x 1 convolutional layer followed by a 5 x 5
        # convolutional layer
        self.p3_1 = nn.Conv2D(c3[0], kernel_size=1, activation="relu")
        self.p3_2 = nn.Conv2D(c3[1], kernel_size=5, padding=2, activation="relu")
        # Path 4 is a 3 x 3 maximum pooling layer followed by a 1 x 1
        # convolutional layer
        self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = nn.Conv2D(c4, kernel_size=1, activation="relu")

    def forward(self, x: Any) -> Any:
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        # Concatenate the outputs on the channel dimension
        return ops.concat((p1, p2, p3, p4), axis=1)


def test_googlenet() -> None:
    b1 = nn.Sequential()
    b1.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3, activation="relu"),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b2 = nn.Sequential()
    b2.add(nn.Conv2D(64, kernel_size=1, activation="relu"),
           nn.Conv2D(192, kernel_size=3, padding=1, activation="relu"),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b3 = nn.Sequential()
    b3.add(Inception(64, (96, 128), (16, 32), 32),
           Inception(128, (128, 192), (32, 96), 64),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b4 = nn.Sequential()
    b4.add(Inception(192, (96, 208), (16, 48), 64),
           Inception(160, (112, 224), (24, 64), 64),
           Inception(128, (128, 256), (24, 64), 64),
           Inception(112, (144, 288), (32, 64), 64),
           Inception(256, (160, 320), (32, 128), 128),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b5 = nn.Sequential()
    b5.add(Inception(256, (160, 320), (32, 128), 128),
           Inception(384, (192, 384), (48, 128), 128),
           nn.GlobalAvgPool2D())

    net = nn.Sequential()
    net.add(b1, b2, b3, b4, b5, nn.Dense(10))
    X = ops.random.uniform((1, 1, 96, 96))  # the book's input
    net.initialize()
    assert shapes(net, X) == [(1, 64, 24, 24), (1, 192, 12, 12), (1, 480, 6, 6),
                              (1, 832, 3, 3), (1, 1024, 1, 1), (1, 10)]


# ------------------------------------------------------------- 8.5 batch normalization
def test_batch_norm_concise() -> None:
    net = nn.Sequential()
    net.add(nn.Conv2D(6, kernel_size=5),
            nn.BatchNorm(),
            nn.Activation("sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5),
            nn.BatchNorm(),
            nn.Activation("sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Dense(120),
            nn.BatchNorm(),
            nn.Activation("sigmoid"),
            nn.Dense(84),
            nn.BatchNorm(),
            nn.Activation("sigmoid"),
            nn.Dense(10))
    net.initialize()
    X = ops.random.uniform((2, 1, 28, 28))
    with autograd.record():
        assert ops.shape(net(X)) == (2, 10)
    assert net[1].gamma.shape == (6,) and net[9].gamma.shape == (120,)
    assert net[8].weight.shape == (120, 256)  # 16 * 4 * 4, flattened by Dense


# ------------------------------------------------------------- 8.6 ResNet
class Residual(nn.Block):
    """The Residual block of ResNet."""

    def __init__(self, num_channels: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def forward(self, X: Any) -> Any:
        Y = ops.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return ops.relu(Y + X)


def resnet_block(num_channels: int, num_residuals: int, first_block: bool = False) -> Any:
    blk = nn.Sequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(Residual(num_channels, use_1x1conv=True, strides=2))
        else:
            blk.add(Residual(num_channels))
    return blk


def test_resnet() -> None:
    blk = Residual(3)
    blk.initialize()
    X = ops.random.uniform((4, 3, 6, 6))
    assert ops.shape(blk(X)) == (4, 3, 6, 6)
    blk = Residual(6, use_1x1conv=True, strides=2)
    blk.initialize()
    assert ops.shape(blk(X)) == (4, 6, 3, 3)

    net = nn.Sequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
            nn.BatchNorm(), nn.Activation("relu"),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(resnet_block(64, 2, first_block=True),
            resnet_block(128, 2),
            resnet_block(256, 2),
            resnet_block(512, 2))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(10))
    # The book checks 224 x 224 (1, 64, 56, 56) ... (1, 512, 7, 7); its training cell
    # uses 96 x 96, which is what a CPU can afford here: the same layers, a quarter
    # of the side.
    X = ops.random.uniform((1, 1, 96, 96))
    net.initialize()
    assert shapes(net, X) == [(1, 64, 48, 48), (1, 64, 48, 48), (1, 64, 48, 48),
                              (1, 64, 24, 24), (1, 64, 24, 24), (1, 128, 12, 12),
                              (1, 256, 6, 6), (1, 512, 3, 3), (1, 512, 1, 1), (1, 10)]


# ------------------------------------------------------------- 8.7 DenseNet
def conv_block(num_channels: int) -> Any:
    blk = nn.Sequential()
    blk.add(nn.BatchNorm(),
            nn.Activation("relu"),
            nn.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


class DenseBlock(nn.Block):
    def __init__(self, num_convs: int, num_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential()
        for _ in range(num_convs):
            self.net.add(conv_block(num_channels))

    def forward(self, X: Any) -> Any:
        for blk in self.net:
            Y = blk(X)
            # Concatenate the input and output of each block on the channel dimension
            X = ops.concat((X, Y), axis=1)
        return X


def transition_block(num_channels: int) -> Any:
    blk = nn.Sequential()
    blk.add(nn.BatchNorm(), nn.Activation("relu"),
            nn.Conv2D(num_channels, kernel_size=1),
            nn.AvgPool2D(pool_size=2, strides=2))
    return blk


def test_densenet() -> None:
    blk = DenseBlock(2, 10)
    blk.initialize()
    X = ops.random.uniform((4, 3, 8, 8))
    Y = blk(X)
    assert ops.shape(Y) == (4, 23, 8, 8)
    blk = transition_block(10)
    blk.initialize()
    assert ops.shape(blk(Y)) == (4, 10, 4, 4)

    net = nn.Sequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
            nn.BatchNorm(), nn.Activation("relu"),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    # `num_channels`: the current number of channels
    num_channels, growth_rate = 64, 32
    num_convs_in_dense_blocks = [4, 4, 4, 4]
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        net.add(DenseBlock(num_convs, growth_rate))
        # This is the number of output channels in the previous dense block
        num_channels += num_convs * growth_rate
        # A transition layer that haves the number of channels is added between
        # the dense blocks
        if i != len(num_convs_in_dense_blocks) - 1:
            num_channels //= 2
            net.add(transition_block(num_channels))
    net.add(nn.BatchNorm(), nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(10))
    X = ops.random.uniform((1, 1, 96, 96))  # the book trains on 96 x 96
    net.initialize()
    got = shapes(net, X)
    assert got[3] == (1, 64, 24, 24) and got[4] == (1, 192, 24, 24) and got[5] == (1, 96, 12, 12)
    assert got[-2] == (1, 248, 1, 1) and got[-1] == (1, 10)


def test_tensorflow_style_slice_write_has_a_d2lcompat_form() -> None:
    # The TensorFlow tab cannot write X[:, 2:6] = 0 (docs/divergences.md): the d2lcompat
    # form is the same on every backend.
    X = ops.index_update(ops.ones((6, 8)), (slice(None), slice(2, 6)), 0.0)
    assert _np(X).sum() == 6 * 4 and d2lcompat.device_of(X) == d2lcompat.default_device()
