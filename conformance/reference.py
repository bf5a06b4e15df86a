"""NumPy reference implementations of the LY layers (API.md §13), written once here.

Scenarios compare every backend's output with these, never with another backend's:
float64 loops over the kernel taps, straight from the definitions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batch_norm", "conv", "embedding", "layer_norm", "out_size", "pool", "rnn", "rnn_step"]


def out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """``floor((n + 2p - d(k-1) - 1) / s) + 1`` (SCENARIOS LY02)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _as2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    return (x[:, :, None, :], True) if x.ndim == 3 else (x, False)


def conv(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    strides: tuple[int, ...] = (1, 1),
    padding: tuple[int, ...] = (0, 0),
    dilation: tuple[int, ...] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation of NCHW (or NCW) ``x`` with ``w`` ``(O, C/groups, *k)``."""
    x2, one = _as2d(np.asarray(x, np.float64))
    w2, _ = _as2d(np.asarray(w, np.float64))
    if one:
        strides, padding, dilation = (1, *strides), (0, *padding), (1, *dilation)
    (sh, sw), (ph, pw), (dh, dw) = strides, padding, dilation
    n, c, h, wd = x2.shape
    o, cg, kh, kw = w2.shape
    assert c == cg * groups and o % groups == 0
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    xp = np.pad(x2, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        ws = w2[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                           j * dw : j * dw + sw * (wo - 1) + 1 : sw]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out[:, :, 0, :] if one else out


def pool(
    x: np.ndarray,
    kind: str,
    window: tuple[int, ...],
    strides: tuple[int, ...] | None = None,
    padding: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Max or average pooling; pads are ``-inf`` for max and zeros that count for avg."""
    strides = strides or window
    padding = padding or (0,) * len(window)
    x2, one = _as2d(np.asarray(x, np.float64))
    if one:
        window, strides, padding = (1, *window), (1, *strides), (0, *padding)
    (kh, kw), (sh, sw), (ph, pw) = window, strides, padding
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x2, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    n, c, h, wd = x2.shape
    ho, wo = out_size(h, kh, sh, ph), out_size(wd, kw, sw, pw)
    taps = [
        xp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    out = np.max(taps, axis=0) if kind == "max" else np.sum(taps, axis=0) / (kh * kw)
    return out[:, :, 0, :] if one else out


def batch_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with per-channel statistics."""
    shape = [1] * x.ndim
    shape[axis] = -1
    x = np.asarray(x, np.float64)

    def r(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, np.float64).reshape(shape)

    return r(gamma) * (x - r(mean)) / np.sqrt(r(var) + eps) + r(beta)


def batch_stats(x: np.ndarray, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The batch's per-channel mean and biased variance."""
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    x = np.asarray(x, np.float64)
    return x.mean(axis=axes), x.var(axis=axes)


def layer_norm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5, axis: int = -1
) -> np.ndarray:
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = -1
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def embedding(weight: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return np.asarray(weight)[np.asarray(indices)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def rnn_step(mode: str, x: np.ndarray, h: np.ndarray, c: np.ndarray | None,
             w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """One step of Gluon's equations (``gluon.rnn`` cells), gate rows LSTM ``i, f, c, o``
    and GRU ``r, z, n``."""
    gx = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    H = h.shape[-1]
    if mode == "lstm":
        g = gx + gh
        i, f = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H])
        cc, o = np.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
        assert c is not None
        c = f * c + i * cc
        return o * np.tanh(c), c
    if mode == "gru":
        r = _sigmoid(gx[:, :H] + gh[:, :H])
        z = _sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * h, None
    pre = gx + gh
    return (np.maximum(pre, 0) if mode == "rnn_relu" else np.tanh(pre)), None


def rnn(mode: str, x: np.ndarray, states: list[np.ndarray], params: dict[str, np.ndarray],
        num_layers: int, bidirectional: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """A stack of recurrent layers over ``x`` (``(T, N, C)``) in float64, a loop over
    time steps; ``params`` by Gluon's names (``l0_i2h_weight`` ... ``r1_h2h_bias``),
    ``states`` ``[h]`` or ``[h, c]`` of shape ``(num_layers * directions, N, H)``."""
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    dirs = 2 if bidirectional else 1
    hs, cs = [], []
    for layer in range(num_layers):
        outs = []
        for d, prefix in enumerate("lr"[:dirs]):
            k = layer * dirs + d
            w = [p[f"{prefix}{layer}_{n}"] for n in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]
            h = np.asarray(states[0][k], np.float64)
            c = np.asarray(states[1][k], np.float64) if mode == "lstm" else None
            T = x.shape[0]
            out = np.zeros((T, x.shape[1], h.shape[-1]))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                h, c = rnn_step(mode, x[t], h, c, *w)
                out[t] = h
            outs.append(out)
            hs.append(h)
            cs.append(c)
        x = np.concatenate(outs, axis=-1)
    new = [np.stack(hs)] + ([np.stack(cs)] if mode == "lstm" else [])
    return x, new
