"""Loading a frozen text LM's checkpoint into a model that wraps it (STYLE point 7).

A fused model keeps the LM's state-dict keys and adds its own modules under a few top-level
names; loading an LM state dict must leave exactly those adapter keys missing and nothing
unexpected — anything else means the checkpoint and the model disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn


def adapter_keys(model: nn.Module, modules: Iterable[str]) -> set[str]:
    """State-dict keys that belong to the adapter modules (top-level names in `modules`)."""
    modules = tuple(modules)
    return {k for k in model.state_dict() if k.split(".")[0] in modules}


def adapter_params(model: nn.Module, modules: Iterable[str]) -> dict[str, nn.Parameter]:
    """Parameters by name that belong to the adapter modules (top-level names in `modules`)."""
    modules = tuple(modules)
    return {n: p for n, p in model.named_parameters() if n.split(".")[0] in modules}


def load_text_state_dict(model: nn.Module, state: dict[str, Tensor], modules: Iterable[str]) -> list[str]:
    """Load an LM state dict into `model`; raise unless the missing keys are exactly the
    adapter modules' and none is unexpected. Returns the (adapter) missing keys."""
    result = model.load_state_dict(state, strict=False)
    missing, expected = set(result.missing_keys), adapter_keys(model, modules)
    if result.unexpected_keys or missing != expected:
        raise ValueError(f"text state dict does not fit {type(model).__name__}: unexpected "
                         f"{sorted(result.unexpected_keys)[:5]}, non-adapter missing "
                         f"{sorted(missing - expected)[:5]}, adapter keys present "
                         f"{sorted(expected - missing)[:5]}")
    return sorted(missing)


__all__ = ["adapter_keys", "adapter_params", "load_text_state_dict"]
