"""Leaving a caller's model as it was: its mode, its buffers, and a record of its tensors to spot a forward
that writes to them.

eigdist never changes a model: it runs it in eval mode only for the duration
of each call (:func:`evaluating`), takes gradients with respect to the image
only (parameters keep their ``requires_grad`` and get no ``.grad``), and draws
random numbers from private generators. Some models change *themselves* in
``forward`` (plenoptic's ``Gaussian`` sets ``self.std.data = self.std.data.abs()``
and caches its filter as a buffer); :func:`snapshot` and :func:`changed_tensors`
detect that from one plain call, so such a model is never run inside
``torch.func`` transforms, which would leave transform-wrapped tensors in it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

#: (module path, attribute) → (the tensor object or None, its storage pointer, its version counter).
Snapshot = dict[tuple[str, str], tuple[Any, int, int, Any]]


@contextlib.contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode inside the block and restore every submodule's mode after it."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def in_eval_mode(model: Callable) -> Callable[[torch.Tensor], Any]:
    """``model`` as a function that runs it in eval mode during each call."""

    def call(image: torch.Tensor) -> Any:
        with evaluating(model):
            return model(image)

    return call


def snapshot(model: Any) -> Snapshot:
    """Every parameter and buffer slot, and every plain tensor attribute, of ``model`` (empty for a plain callable)."""
    if not isinstance(model, nn.Module):
        return {}
    state: Snapshot = {}
    for path, module in model.named_modules():
        plain = {a: t for a, t in vars(module).items() if isinstance(t, torch.Tensor)}  # unregistered caches
        for slots in (module._parameters, module._buffers, plain):
            for attr, tensor in slots.items():
                key = (path, attr)
                # The detached alias keeps the old storage alive: a forward that replaces ``.data``
                # (``self.std.data = self.std.data.abs()``) and frees it could otherwise get the
                # same address back on its next call, and the change would go unseen.
                state[key] = ((tensor, 0, 0, None) if tensor is None
                              else (tensor, tensor.data_ptr(), tensor._version, tensor.detach()))
    return state


def changed_tensors(model: Any, before: Snapshot) -> list[str]:
    """Names of the parameters and buffers that were added, replaced, re-pointed or written in place since ``before``."""
    after = snapshot(model)
    changed = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None or new is None or old[0] is not new[0] or old[1:3] != new[1:3]:
            changed.append(".".join(p for p in key if p))
    return changed


@contextlib.contextmanager
def keeping_buffers(model: Any) -> Iterator[None]:
    """Give every module of ``model`` its buffers back after the block: eigdist's own calls leave no writes.

    A buffer written in place (a call counter, running statistics) is replaced
    by a copy of its old values, not written back: an autograd graph recorded
    in the block may hold the written tensor, whose in-place change would break
    its backward. A buffer replaced by another tensor gets its old tensor back;
    one added in the block is removed, one removed is put back.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    saved = [(module, dict(module._buffers),
              {name: (b._version, b.detach().clone()) for name, b in module._buffers.items() if b is not None})
             for module in model.modules()]
    try:
        yield
    finally:
        for module, before, copies in saved:
            for name in set(module._buffers) - set(before):
                del module._buffers[name]
            for name, old in before.items():
                if old is not None and old._version != copies[name][0]:
                    module._buffers[name] = copies[name][1]
                else:
                    module._buffers[name] = old
