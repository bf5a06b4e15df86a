"""RN — recurrent layers (chapters 9–10; API.md §19). Values against NumPy (`..reference`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import D2LCompatError, ShapeError, autograd, nn, ops

from .. import reference as ref
from .._registry import Context, scenario
from ..models import CharLM, assert_close, char_batches, to_np

#: Where each mode's layer comes from, and its gate count.
_LAYERS: dict[str, tuple[Any, dict[str, Any], int]] = {
    "lstm": (nn.LSTM, {}, 4),
    "gru": (nn.GRU, {}, 3),
    "rnn_tanh": (nn.RNN, {"activation": "tanh"}, 1),
    "rnn_relu": (nn.RNN, {"activation": "relu"}, 1),
}

#: A small public-domain text (H. G. Wells, The Time Machine, 1895), shipped in the repo.
TEXT_FILE = Path(__file__).resolve().parent.parent / "data" / "time_machine_opening.txt"


def _names(num_layers: int, dirs: int) -> list[str]:
    return [f"{d}{i}_{n}" for i in range(num_layers) for d in "lr"[:dirs]
            for n in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]


def _set_params(layer: nn.Block, rng: np.random.Generator, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Every parameter set by name to seeded values; returns them."""
    values = {}
    for name, p in layer.collect_params().items():
        values[name] = rng.uniform(-scale, scale, p.shape).astype(np.float32)
        p.set_data(values[name])
    return values


def _layer(mode: str, hidden: int, **kw: Any) -> nn.Block:
    cls, extra, _ = _LAYERS[mode]
    return cls(hidden, **extra, **kw)


def _raises(exc: type[Exception], fn: Any, *words: str) -> None:
    try:
        fn()
    except exc as e:
        for w in words:
            assert w in str(e), f"{w!r} not in the message: {e}"
        return
    raise AssertionError(f"expected {exc.__name__}")


@scenario("RN01", "LSTM, GRU, RNN(tanh|relu), 2 layers, bidirectional, TNC: outputs and states equal NumPy")
def rn01(ctx: Context) -> None:
    T, N, C, H = 5, 3, 4, 6
    rng = np.random.default_rng(101)
    for mode, (_, _, gates) in _LAYERS.items():
        layer = _layer(mode, H, num_layers=2, bidirectional=True, input_size=C)
        layer.initialize()
        names = list(layer.collect_params())
        assert names == _names(2, 2), names
        shapes = {k: p.shape for k, p in layer.collect_params().items()}
        assert shapes["l0_i2h_weight"] == (gates * H, C), shapes
        assert shapes["r1_i2h_weight"] == (gates * H, 2 * H), shapes
        assert shapes["l1_h2h_weight"] == (gates * H, H) and shapes["r0_h2h_bias"] == (gates * H,)
        params = _set_params(layer, rng)
        x = rng.uniform(-1, 1, (T, N, C)).astype(np.float32)
        n_states = 2 if mode == "lstm" else 1
        states = [rng.uniform(-1, 1, (4, N, H)).astype(np.float32) for _ in range(n_states)]
        out, new = layer(ops.tensor(x), [ops.tensor(s) for s in states])
        want, want_states = ref.rnn(mode, x, states, params, 2, True)
        assert ops.shape(out) == (T, N, 2 * H), ops.shape(out)
        assert_close(out, want, rtol=1e-4, atol=1e-5)
        assert len(new) == n_states, f"{mode}: {len(new)} states"
        for got, exp in zip(new, want_states):
            assert ops.shape(got) == (4, N, H)
            assert_close(got, exp, rtol=1e-4, atol=1e-5)
    # Gluon's defaults: RNN's activation is relu (PyTorch's is tanh).
    relu, tanh = nn.RNN(4), nn.RNN(4, activation="tanh")
    relu.initialize(d2lcompat.init.Constant(1.0))
    tanh.initialize(d2lcompat.init.Constant(1.0))
    x1 = ops.tensor(np.full((1, 1, 2), 3.0, np.float32))
    assert abs(float(to_np(relu(x1)).max()) - 6.0) < 1e-5
    assert float(to_np(tanh(x1)).max()) < 1.0


@scenario("RN02", "NTC equals TNC transposed; layer(X) equals layer(X, begin_state)[0]; input_size inferred; errors")
def rn02(ctx: Context) -> None:
    T, N, C, H = 4, 2, 3, 5
    rng = np.random.default_rng(102)
    x = rng.uniform(-1, 1, (T, N, C)).astype(np.float32)
    for mode, (_, _, gates) in _LAYERS.items():
        tnc = _layer(mode, H, num_layers=2, bidirectional=True)
        tnc.initialize()
        assert tnc.l0_i2h_weight.shape == (gates * H, 0), tnc.l0_i2h_weight.shape
        y = tnc(ops.tensor(x))  # infers input_size
        assert tnc.l0_i2h_weight.shape == (gates * H, C) and tnc.r0_i2h_weight.shape == (gates * H, C)
        params = _set_params(tnc, rng)
        y = tnc(ops.tensor(x))
        ntc = _layer(mode, H, num_layers=2, bidirectional=True, layout="NTC", input_size=C)
        ntc.initialize()
        for k, v in params.items():
            getattr(ntc, k).set_data(v)
        y_ntc = ntc(ops.tensor(x.transpose(1, 0, 2).copy()))
        assert ops.shape(y_ntc) == (N, T, 2 * H), ops.shape(y_ntc)
        assert_close(to_np(y_ntc).transpose(1, 0, 2), y, rtol=1e-5, atol=1e-6)
        begin = tnc.begin_state(N)
        assert [ops.shape(s) for s in begin] == [(4, N, H)] * (2 if mode == "lstm" else 1)
        assert all(float(np.abs(to_np(s)).max()) == 0.0 for s in begin)
        with_states, new = tnc(ops.tensor(x), begin)
        assert_close(with_states, y, rtol=1e-6, atol=1e-7)
        # NTC with states: the states stay (layers * directions, N, H).
        _, new_ntc = ntc(ops.tensor(x.transpose(1, 0, 2).copy()), ntc.begin_state(N))
        for a, b in zip(new, new_ntc):
            assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Bad input: ShapeErrors naming what was expected.
    lstm = nn.LSTM(H, input_size=C)
    lstm.initialize()
    _raises(ShapeError, lambda: lstm(ops.ones((T, N))), "3-D", "TNC")
    _raises(ShapeError, lambda: lstm(ops.ones((T, N, C + 1))), f"{C} features")
    _raises(ShapeError, lambda: lstm(ops.ones((T, N, C)), lstm.begin_state(N)[:1]), "2 state")
    _raises(ShapeError, lambda: lstm(ops.ones((T, N, C)), lstm.begin_state(N + 1)), "expected (1, 2, 5)")
    _raises(D2LCompatError, lambda: nn.LSTM(H, layout="CTN"), "layout")
    _raises(D2LCompatError, lambda: nn.RNN(H, activation="sigmoid"), "activation")
    _raises(D2LCompatError, lambda: nn.GRU(H, dropout=1.0), "dropout")
    # Dropout between layers: only while training, the same mask for the same seed.
    gru = nn.GRU(H, num_layers=2, dropout=0.5, input_size=C)
    gru.initialize()
    X = ops.tensor(x)
    plain = to_np(gru(X))
    with autograd.train_mode():
        d2lcompat.seed(7)
        dropped = to_np(gru(X))
        d2lcompat.seed(7)
        again = to_np(gru(X))
    assert not np.allclose(plain, dropped), "dropout had no effect while training"
    np.testing.assert_array_equal(dropped, again)
    no_drop = nn.GRU(H, num_layers=2, input_size=C)
    no_drop.initialize()
    for k, p in gru.collect_params().items():
        getattr(no_drop, k).set_data(p.data())
    assert_close(no_drop(X), plain, rtol=1e-6, atol=1e-7)


@scenario("RN03", "LSTM gradients (2 layers, bidirectional) equal finite differences of the NumPy reference")
def rn03(ctx: Context) -> None:
    T, N, C, H = 3, 2, 3, 4
    rng = np.random.default_rng(103)
    layer = nn.LSTM(H, num_layers=2, bidirectional=True, input_size=C)
    layer.initialize()
    params = _set_params(layer, rng)
    x = rng.uniform(-1, 1, (T, N, C)).astype(np.float32)
    s0 = [rng.uniform(-1, 1, (4, N, H)).astype(np.float32) for _ in range(2)]
    r_out = rng.normal(size=(T, N, 2 * H))
    r_h, r_c = rng.normal(size=(4, N, H)), rng.normal(size=(4, N, H))

    def ref_loss(p: dict[str, np.ndarray]) -> float:
        out, (h, c) = ref.rnn("lstm", x, s0, p, 2, True)
        return float((out * r_out).sum() + (h * r_h).sum() + (c * r_c).sum())

    R_out, R_h, R_c = (ops.tensor(a.astype(np.float32)) for a in (r_out, r_h, r_c))
    X, S = ops.tensor(x), [ops.tensor(s) for s in s0]

    def loss() -> Any:
        out, (h, c) = layer(X, S)
        return ops.sum(out * R_out) + ops.sum(h * R_h) + ops.sum(c * R_c)

    _, grads = autograd.grad(loss, layer.collect_params())
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    eps = 1e-6
    for name, g in grads.items():
        got = to_np(g)
        assert got.shape == params[name].shape, (name, got.shape)
        flat = np.random.default_rng(hash(name) % 2**32).choice(got.size, size=min(8, got.size),
                                                               replace=False)
        for i in flat:
            idx = np.unravel_index(i, got.shape)
            plus = {k: v.copy() for k, v in p64.items()}
            minus = {k: v.copy() for k, v in p64.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd = (ref_loss(plus) - ref_loss(minus)) / (2 * eps)
            assert abs(got[idx] - fd) <= 1e-3 * abs(fd) + 2e-4, f"{name}{idx}: {got[idx]} vs FD {fd}"


@scenario("RN04", "LSTMCell/GRUCell/RNNCell: one step and unroll over T equal the one-layer fused layer")
def rn04(ctx: Context) -> None:
    T, N, C, H = 5, 3, 4, 6
    rng = np.random.default_rng(104)
    x = rng.uniform(-1, 1, (N, T, C)).astype(np.float32)
    cases = [("lstm", nn.LSTMCell(H)), ("gru", nn.GRUCell(H)), ("rnn_tanh", nn.RNNCell(H)),
             ("rnn_relu", nn.RNNCell(H, activation="relu"))]
    for mode, cell in cases:
        cell.initialize()
        assert list(cell.collect_params()) == ["i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"]
        layer = _layer(mode, H, layout="NTC", input_size=C)
        layer.initialize()
        values = _set_params(layer, rng)
        out, states = cell.unroll(T, ops.tensor(x))  # infers input_size, zero begin_state
        assert cell.i2h_weight.shape == values["l0_i2h_weight"].shape
        for k, v in values.items():
            getattr(cell, k[3:]).set_data(v)
        out, states = cell.unroll(T, ops.tensor(x), layout="NTC", merge_outputs=True)
        want, want_states = layer(ops.tensor(x), layer.begin_state(N))
        assert ops.shape(out) == (N, T, H)
        assert_close(out, want, rtol=1e-5, atol=1e-6)
        for a, b in zip(states, want_states):
            assert ops.shape(a) == (N, H)
            assert_close(a, to_np(b)[0], rtol=1e-5, atol=1e-6)
        # One step by hand, and a list of inputs in TNC with merge_outputs=False.
        st = cell.begin_state(N)
        steps = []
        for t in range(T):
            o, st = cell(ops.tensor(x[:, t]), st)
            steps.append(o)
        assert_close(ops.stack(steps, axis=1), want, rtol=1e-5, atol=1e-6)
        listed, _ = cell.unroll(T, [ops.tensor(x[:, t]) for t in range(T)], merge_outputs=False)
        assert isinstance(listed, list) and len(listed) == T
        assert_close(listed[-1], to_np(want)[:, -1], rtol=1e-5, atol=1e-6)
        h0 = np.zeros((N, H), np.float64)
        c0 = np.zeros((N, H), np.float64) if mode == "lstm" else None
        one, _ = ref.rnn_step(mode, x[:, 0].astype(np.float64), h0, c0, *(
            values[f"l0_{n}"] for n in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")))
        assert_close(steps[0], one, rtol=1e-5, atol=1e-6)
    cell = nn.LSTMCell(H, input_size=C)
    cell.initialize()
    _raises(ShapeError, lambda: cell(ops.ones((N, C)), cell.begin_state(N)[:1]), "2 state")
    _raises(ShapeError, lambda: cell.unroll(T + 1, ops.ones((N, T, C))), f"{T + 1} time steps")


def _clip_np(grads: list[np.ndarray], max_norm: float) -> tuple[list[np.ndarray], float]:
    total = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads)))
    scale = min(max_norm / (total + 1e-8), 1.0)
    return [g * scale for g in grads], total


def train_char_lm(text: str, epochs: int, seed: int = 0, num_steps: int = 16, batch: int = 32,
                  hidden: int = 64, lr: float = 0.01, clip: float = 1.0) -> list[float]:
    """Train `CharLM` with Adam and ``clip_global_norm``; the perplexity of each epoch."""
    chars, X, Y = char_batches(text, num_steps, seed)
    d2lcompat.seed(seed)
    net = CharLM(len(chars), hidden)
    net.initialize(d2lcompat.init.Xavier())
    net.hybridize()  # the compiled step where the framework compiles it (JAX, TensorFlow)
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": lr},
                                clip_global_norm=clip)
    step = d2lcompat.train_step(net, d2lcompat.loss.SoftmaxCrossEntropyLoss(), trainer)
    out = []
    for _ in range(epochs):
        losses = []
        for i in range(0, len(X) - batch + 1, batch):
            losses.append(float(ops.item(step(ops.tensor(X[i : i + batch]), ops.tensor(Y[i : i + batch])))))
        out.append(float(np.exp(np.mean(losses))))
    return out


@scenario("RN05", "clip_global_norm on tensors and Parameters, Trainer(clip_global_norm=); char LSTM perplexity < 1.6")
def rn05(ctx: Context) -> None:
    rng = np.random.default_rng(105)
    host = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)]
    want, total = _clip_np(host, 1.0)
    clipped, norm = d2lcompat.clip_global_norm([ops.tensor(g) for g in host], 1.0)
    assert isinstance(clipped, list) and abs(norm - total) <= 1e-5 * total, (norm, total)
    for a, b in zip(clipped, want):
        assert_close(a, b, rtol=1e-5, atol=1e-6)
    as_dict, _ = d2lcompat.clip_global_norm({"b": ops.tensor(host[1]), "a": ops.tensor(host[0])}, 1.0)
    assert list(as_dict) == ["b", "a"]
    assert_close(as_dict["a"], want[0], rtol=1e-5, atol=1e-6)
    same, _ = d2lcompat.clip_global_norm([ops.tensor(g) for g in host], 100.0)  # no-op
    assert_close(same[1], host[1], rtol=1e-6, atol=0)
    _, lazy = d2lcompat.clip_global_norm([ops.tensor(g) for g in host], 1.0, check_isfinite=False)
    assert not isinstance(lazy, float) and abs(float(ops.item(lazy)) - total) <= 1e-5 * total
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d2lcompat.clip_global_norm([ops.tensor(np.array([np.inf, 1.0], np.float32))], 1.0)
    assert any("nan or inf" in str(w.message) for w in caught), [str(w.message) for w in caught]
    _raises(D2LCompatError, lambda: d2lcompat.clip_global_norm([ops.tensor(host[0])], 0.0), "max_norm")
    _raises(D2LCompatError, lambda: d2lcompat.clip_global_norm(ops.tensor(host[0]), 1.0), "dict or list")
    # On Parameters: their stored gradients are rescaled, the norm returned.
    net = nn.Dense(4, in_units=3)
    net.initialize(d2lcompat.init.Normal(1.0))
    X = ops.tensor(rng.normal(size=(8, 3)).astype(np.float32))
    _, grads = autograd.grad(lambda: ops.sum(net(X) ** 2), net.collect_params())
    host_g = [to_np(g) for g in grads.values()]
    want, total = _clip_np(host_g, 0.5)
    norm = d2lcompat.clip_global_norm(net.collect_params(), 0.5)
    assert abs(norm - total) <= 1e-5 * total
    for p, w in zip(net.collect_params().values(), want):
        assert_close(p.grad(), w, rtol=1e-5, atol=1e-6)
    # Trainer(clip_global_norm=): the gradients of the mean loss, clipped, then SGD.
    before = {k: to_np(p.data()) for k, p in net.collect_params().items()}
    autograd.grad(lambda: ops.sum(net(X) ** 2), net.collect_params())
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                                clip_global_norm=0.5)
    trainer.step(8)
    clipped_g, _ = _clip_np([g / 8 for g in host_g], 0.5)
    for (k, p), g in zip(net.collect_params().items(), clipped_g):
        assert_close(p.data(), before[k] - 0.1 * g, rtol=1e-5, atol=1e-6)
    _raises(D2LCompatError, lambda: d2lcompat.Trainer(net.collect_params(), "sgd",
                                                      clip_global_norm=-1), "max_norm")
    # The compiled train_step clips too: the same losses as the eager step.
    curves = []
    for hybrid in (False, True):
        d2lcompat.seed(5)
        lm = CharLM(7, 16)
        lm.initialize(d2lcompat.init.Xavier())
        if hybrid:
            lm.hybridize()
        tr = d2lcompat.Trainer(lm.collect_params(), "sgd", {"learning_rate": 5.0},
                               clip_global_norm=0.1)
        step = d2lcompat.train_step(lm, d2lcompat.loss.SoftmaxCrossEntropyLoss(), tr)
        Xi = ops.tensor(np.arange(24).reshape(4, 6) % 7)
        Yi = ops.tensor((np.arange(24).reshape(4, 6) + 1) % 7)
        curves.append([float(ops.item(step(Xi, Yi))) for _ in range(4)])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4, err_msg="compiled vs eager, clipped")
    # A character LSTM learns a repeated text: perplexity < 1.6.
    sentence = TEXT_FILE.read_text(encoding="utf-8").split(".")[0].lower() + ". "
    ppl = train_char_lm(sentence * 12, epochs=3)
    assert ppl[-1] < 1.6, f"perplexity per epoch {ppl}"
    assert ppl[-1] < ppl[0]


@scenario("RN06", "an LSTM's file loads into a new model with the same outputs (XB06 does it across backends)")
def rn06(ctx: Context) -> None:
    from .. import xb

    paths = xb.write_sequence(ctx.tmp)
    assert all(Path(p).is_file() for p in paths), paths
    xb._xb06(ctx.tmp, d2lcompat.backend())  # this backend's own files, as XB06 reads others'
    stored = d2lcompat.load(paths[0])
    assert ops.shape(stored["rnn.l0_i2h_weight"]) == (4 * 24, 8), ops.shape(stored["rnn.l0_i2h_weight"])
    # A bidirectional GRU round trip, and a file that does not fit: a CheckpointError.
    gru = nn.GRU(6, num_layers=2, bidirectional=True, input_size=3)
    gru.initialize()
    gru.save_parameters(ctx.tmp / "gru.safetensors")
    again = nn.GRU(6, num_layers=2, bidirectional=True)
    again.load_parameters(ctx.tmp / "gru.safetensors")
    X = ops.random.uniform((4, 2, 3))
    assert_close(again(X), gru(X), rtol=1e-6, atol=1e-7)
    smaller = nn.GRU(5, num_layers=2, bidirectional=True, input_size=3)
    _raises(d2lcompat.CheckpointError, lambda: smaller.load_parameters(ctx.tmp / "gru.safetensors"),
            "l0_i2h_weight")
