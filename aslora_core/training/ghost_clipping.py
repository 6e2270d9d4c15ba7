"""Ghost clipping with clip groups: per-sample gradient norms without per-sample gradients, then one
weighted backward pass per clip group sums the clipped gradients (noise from a project noise source)."""

from __future__ import annotations

import torch
from opacus import GradSampleModuleFastGradientClipping
from torch import nn

from aslora_core.training.dp_optimizer import SourcedNoiseDPOptimizer


class MissingNormError(RuntimeError):
    """A trained parameter took no part in the forward pass, so ghost clipping has no norm or sum for it."""


class GhostClippingDPOptimizer(SourcedNoiseDPOptimizer):
    """SourcedNoiseDPOptimizer whose `backward` leaves each clip group's clipped per-sample sum in `p.grad`.

    The first backward pass runs Opacus' norm hooks (`GradSampleModuleFastGradientClipping`): each
    parameter's per-sample gradient norms, from activations and output gradients alone for linear
    layers. Sample i's factor in group g is min(1, C_g / ||g_i||_g), as the hooks engine computes it; then
    the gradient of sum_i factor_gi * loss_i with respect to group g's parameters is exactly the sum of
    their clipped per-sample gradients, since each loss_i depends on example i alone. One such pass per
    group (the head's reaches only the head) gives every group its own clipping.
    """

    def backward(self, module: GradSampleModuleFastGradientClipping, losses: torch.Tensor) -> None:
        """Put each clip group's sum of clipped per-sample gradients of `losses` (one per example) into
        `p.grad`."""
        losses.sum().backward(retain_graph=True)
        factors = self.clip_factors([self._norm_sample(p) for p in self.params])
        for param in self.params:
            param.grad = None
        module.disable_hooks()
        try:
            for group in range(self.group_count):
                params = self.group_params(group)
                weighted = (factors[group].detach().to(losses.device, losses.dtype) * losses).sum()
                grads = torch.autograd.grad(weighted, params, retain_graph=group < self.group_count - 1)
                for param, grad in zip(params, grads, strict=True):
                    param.grad = torch.zeros_like(param) if self.is_held(param) else grad.to(param.dtype)
        finally:
            module.enable_hooks()

    @staticmethod
    def _norm_sample(param: nn.Parameter) -> torch.Tensor:
        norms: torch.Tensor | None = getattr(param, "_norm_sample", None)
        if norms is None:
            raise MissingNormError(
                f"no per-sample norm for a trained parameter of shape {tuple(param.shape)}"
            )
        delattr(param, "_norm_sample")
        return norms.to(param.dtype)

    def clear_batch(self) -> None:
        """Stand in for an empty logical batch: a zero clipped sum."""
        for param in self.params:
            param.grad = torch.zeros_like(param)

    def _get_flat_grad_sample(self, p: nn.Parameter) -> torch.Tensor:
        """The clipped sum stands in for the per-sample gradients, which ghost clipping never forms."""
        if p.grad is None:
            raise MissingNormError(f"no clipped sum for a trained parameter of shape {tuple(p.shape)}")
        return p.grad

    @property
    def accumulated_iterations(self) -> int:
        """One: the chunks of a logical batch are summed into `p.summed_grad`, not stacked per sample."""
        return 1

    def clip_and_accumulate(self) -> None:
        """Add the clipped sum `backward` left in `p.grad` to `p.summed_grad`."""
        for param in self.params:
            if param.summed_grad is not None:
                param.summed_grad += param.grad
            else:
                param.summed_grad = param.grad.detach().clone()
