"""GL01–GL05 — Gluon fidelity: Dense flatten, attribute rules, ParameterList spelling,
activation names, zero_grad and initializer equality (API.md §3, §13)."""

from __future__ import annotations
