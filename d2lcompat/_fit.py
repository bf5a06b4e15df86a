"""`fit`: the book's training loop, with a progress bar, a history and a plot.

Each batch goes through `d2lcompat.train_step`, so a hybridized net trains with the
framework's compiled step. Metrics are measured on the predictions the step already
computed (no second forward pass); validation runs in predict mode.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import autograd as _autograd
from . import ops as _ops
from ._errors import D2LCompatError, NonFiniteLossError
from ._registry import active
from ._trainer import Trainer, _check_batch, train_step

if TYPE_CHECKING:
    from .nn._block import Block

__all__ = ["History", "accuracy", "fit"]

Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    """The fraction of correct predictions: the arg-max class of ``pred`` for several
    classes, ``pred > 0`` (a logit) for a single output, against the label.

    Examples
    --------
    >>> import numpy as np
    >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    0.5
    """
    pred = np.asarray(pred)
    label = np.asarray(label).reshape(-1)
    if pred.ndim > 1 and pred.shape[-1] > 1:
        guess = pred.reshape(-1, pred.shape[-1]).argmax(axis=-1)
    else:
        guess = (pred.reshape(-1) > 0).astype(label.dtype)
    if guess.shape[0] != label.shape[0]:
        raise D2LCompatError(
            f"accuracy: {guess.shape[0]} predictions for {label.shape[0]} labels; pass one "
            "class index per sample."
        )
    return float((guess == label.astype(guess.dtype)).mean()) if label.size else 0.0


_METRICS: dict[str, Metric] = {"accuracy": accuracy, "acc": accuracy}


class History:
    """What `fit` measured, one entry per epoch: ``history["loss"]``,
    ``history["accuracy"]``, ``history["val_loss"]``... and ``history.plot(path)``.

    Examples
    --------
    >>> h = History()
    >>> h.append({"loss": 0.5, "accuracy": 0.8}); h.append({"loss": 0.25, "accuracy": 0.9})
    >>> h["loss"], len(h)
    ([0.5, 0.25], 2)
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def append(self, record: dict[str, float]) -> None:
        """Add one epoch's record."""
        self.epochs.append(dict(record))

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, key: str) -> list[float]:
        if not self.epochs or key not in self.epochs[0]:
            have = ", ".join(self.keys()) or "nothing yet"
            raise KeyError(f"History has no {key!r}; it has {have}.")
        return [e[key] for e in self.epochs]

    def keys(self) -> list[str]:
        """The recorded quantities (``loss``, ``accuracy``, ``val_loss``...)."""
        return list(self.epochs[0]) if self.epochs else []

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a PNG of loss (left) and metrics (right) per epoch; return its path.

        Needs matplotlib: ``pip install ".[plot]" -c constraints.txt``.
        """
        plt = _pyplot()
        keys = self.keys()
        if not keys:
            raise D2LCompatError("History.plot: nothing recorded yet; call fit first.")
        epochs = np.arange(1, len(self) + 1)
        losses = [k for k in keys if k.endswith("loss")]
        others = [k for k in keys if not k.endswith("loss") and k != "samples_per_s"]
        fig, axes = plt.subplots(1, 2 if others else 1, figsize=(10 if others else 5.5, 3.8))
        axes = np.atleast_1d(axes)
        for k in losses:
            axes[0].plot(epochs, self[k], marker="o", label=k)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend()
        axes[0].grid(alpha=0.3)
        if others:
            for k in others:
                axes[1].plot(epochs, self[k], marker="o", label=k)
            axes[1].set_xlabel("epoch")
            axes[1].set_ylabel("metric")
            axes[1].legend()
            axes[1].grid(alpha=0.3)
        from matplotlib.ticker import MaxNLocator

        for ax in axes:  # epochs are whole numbers: no 1.5, 2.5 ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        out = os.fspath(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        return f"History({len(self)} epochs{': ' + shown if shown else ''})"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise D2LCompatError(
            "History.plot needs matplotlib, an optional extra: "
            'pip install ".[plot]" -c constraints.txt'
        ) from None
    return plt


def _metric(m: str | Metric) -> tuple[str, Metric]:
    if callable(m):
        return getattr(m, "__name__", "metric"), m
    try:
        return m, _METRICS[m]
    except KeyError:
        raise D2LCompatError(
            f"Unknown metric {m!r}; use one of {', '.join(sorted(set(_METRICS)))} or a "
            "function metric(pred, label) -> float over NumPy arrays."
        ) from None


def _native(x: Any) -> Any:
    return x if active().is_tensor(x) else _ops.tensor(np.asarray(x))


def fit(
    net: Block,
    train_iter: Iterable[tuple[Any, Any]],
    loss: Callable[..., Any],
    trainer: Trainer,
    epochs: int,
    valid_iter: Iterable[tuple[Any, Any]] | None = None,
    metrics: Sequence[str | Metric] = ("accuracy",),
    verbose: bool = True,
    stop_on_nan: bool = True,
) -> History:
    """Train ``net`` for ``epochs`` passes over ``train_iter`` (the book's loop).

    Each batch ``(X, y)`` runs one `d2lcompat.train_step` (compiled when ``net`` is
    hybridized). After each epoch the history records the mean training loss, each
    metric on the training predictions, the samples per second, and — with
    ``valid_iter`` — ``val_loss`` and ``val_<metric>`` in predict mode.

    Parameters
    ----------
    net, loss, trainer
        The model, a per-sample loss (`d2lcompat.loss`) and its `Trainer`.
    train_iter, valid_iter : iterable of (X, y)
        Re-iterable batches (a `d2lcompat.data.DataLoader`, a list...); NumPy batches
        are converted to native tensors.
    epochs : int
    metrics : sequence of str or callable
        ``'accuracy'`` or ``metric(pred, label) -> float`` over NumPy arrays.
    verbose : bool
        Show a rich progress bar (epoch, loss, metrics, samples/s) and one line per
        epoch; where stdout is not a terminal (a log, CI), only the lines.
    stop_on_nan : bool
        Stop with `NonFiniteLossError` (naming the epoch and the batch) at the first
        batch whose loss or gradient is NaN or infinite, before that batch changes any
        parameter. False: apply it and record a NaN loss.

    Bad batches raise a named error on every backend before they change anything: a
    batch without rows (`DataError`), labels that are not class indices of the loss
    (`LabelError`), integer features fed to a `Dense` or convolution (`DTypeError`).

    Returns
    -------
    History

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, ops, loss
    >>> d2lcompat.seed(0)
    >>> X = ops.tensor([[0.0, 1.0], [1.0, 0.0]] * 8); y = ops.tensor([0, 1] * 8)
    >>> net = nn.Dense(2); net.initialize()
    >>> trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    >>> h = d2lcompat.fit(net, [(X, y)], loss.SoftmaxCrossEntropyLoss(), trainer, 5, verbose=False)
    >>> len(h), h["accuracy"][-1]
    (5, 1.0)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise D2LCompatError(f"fit: epochs must be a positive int; received {epochs!r}.")
    named = [_metric(m) for m in metrics]
    step = train_step(net, loss, trainer, stop_on_nan=stop_on_nan)
    history = History()
    progress = _Progress(verbose, epochs, _length(train_iter))
    with progress:
        for epoch in range(1, epochs + 1):
            progress.start_epoch(epoch)
            total_loss, total_n = 0.0, 0
            totals = [0.0] * len(named)
            start = time.perf_counter()
            for batch, (X, y) in enumerate(train_iter, 1):
                X, y = _native(X), _native(y)
                try:
                    mean, pred = step.with_outputs(X, y)
                except NonFiniteLossError as exc:
                    raise NonFiniteLossError(
                        f"fit stopped at epoch {epoch}, batch {batch}: {exc} "
                        "(fit(..., stop_on_nan=False) applies such a batch and records a "
                        "NaN loss.)"
                    ) from None
                n = int(active().shape(X)[0])
                total_loss += float(_ops.item(mean)) * n
                total_n += n
                if named:
                    p_host, y_host = _ops.to_numpy(pred), _ops.to_numpy(y)
                    for i, (_, fn) in enumerate(named):
                        totals[i] += fn(p_host, y_host) * n
                rate = total_n / max(time.perf_counter() - start, 1e-9)
                progress.advance(total_loss / total_n, rate)
            if total_n == 0:
                raise D2LCompatError("fit: train_iter gave no batches.")
            record = {"loss": total_loss / total_n}
            for (name, _), t in zip(named, totals):
                record[name] = t / total_n
            record["samples_per_s"] = total_n / max(time.perf_counter() - start, 1e-9)
            if valid_iter is not None:
                record.update(_evaluate(net, valid_iter, loss, named))
            history.append(record)
            progress.end_epoch(record)
    return history


def _evaluate(
    net: Block, data: Iterable[tuple[Any, Any]], loss: Callable[..., Any],
    named: Sequence[tuple[str, Metric]],
) -> dict[str, float]:
    total, n_all = 0.0, 0
    totals = [0.0] * len(named)
    with _autograd.predict_mode():
        for X, y in data:
            X, y = _native(X), _native(y)
            _check_batch(active(), X, y)
            pred = net(X)
            n = int(active().shape(X)[0])
            total += float(_ops.item(_ops.sum(loss(pred, y))))
            n_all += n
            p_host, y_host = _ops.to_numpy(pred), _ops.to_numpy(y)
            for i, (_, fn) in enumerate(named):
                totals[i] += fn(p_host, y_host) * n
    if n_all == 0:
        return {}
    out = {"val_loss": total / n_all}
    for (name, _), t in zip(named, totals):
        out[f"val_{name}"] = t / n_all
    return out


def _length(it: Any) -> int | None:
    try:
        return len(it)
    except TypeError:
        return None


class _Progress:
    """The rich progress bar of `fit` (nothing at all when ``verbose`` is False)."""

    def __init__(self, verbose: bool, epochs: int, batches: int | None) -> None:
        self._on = verbose
        self._epochs = epochs
        self._batches = batches
        self._bar: Any = None
        self._task: Any = None
        self._epoch = 0

    def __enter__(self) -> _Progress:
        if self._on:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console()
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[samples]} samples/s"),
                TimeElapsedColumn(),
                console=console,
                # In a log or CI (stdout not a terminal) a live bar cannot redraw: rich
                # would print every bar again at the end. There, only the epoch lines.
                disable=not (console.is_terminal or console.is_jupyter),
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if self._bar is not None:
            self._task = self._bar.add_task(
                f"epoch {epoch}/{self._epochs}", total=self._batches, loss="-", samples="-"
            )

    def advance(self, loss: float, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}", samples=f"{rate:,.0f}")

    def end_epoch(self, record: dict[str, float]) -> None:
        if self._bar is not None:
            shown = "  ".join(
                f"{k} {v:.4f}" if not math.isnan(v) else f"{k} nan"
                for k, v in record.items() if k != "samples_per_s"
            )
            self._bar.update(self._task, loss=f"{record['loss']:.4f}")
            self._bar.console.print(f"epoch {self._epoch}/{self._epochs}  {shown}")
