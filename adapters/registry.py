"""Which adapter serves a model: looked up from the model's family."""
from __future__ import annotations


def adapter_for(model):
    from adapters import llama

    family = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in (llama,):
        if family in adapter.FAMILIES:
            return adapter
    raise ValueError(f"model family {family!r} ({type(model).__name__}) is not supported; supported: "
                     f"{', '.join(llama.FAMILIES)}")
