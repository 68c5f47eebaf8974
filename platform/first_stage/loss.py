"""First-stage objective (paper §3.1, App. G; CompVis ``LPIPSWithDiscriminator`` and
taming's ``VQLPIPSWithDiscriminator``).

    L_rec  = |x − x̃| + w_p · LPIPS(x, x̃)
    KL:  L = Σ(L_rec / e^s + s) / B  +  kl_weight · KL / B      (s: log-variance, 0 unless learned)
    VQ:  L = mean(L_rec)  +  codebook_weight · L_codebook
    G:   L += d_weight · disc_factor · (−mean D(x̃))
    D:   disc_factor · ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̃)))      (hinge)

with d_weight = ‖∇_last L_nll‖ / (‖∇_last L_g‖ + 1e-4), clamped to [0, 1e4], times
disc_weight, and disc_factor = 0 before ``disc_start``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from platform.first_stage.model import Reconstruction


def disc_factor(step: int, disc_start: int) -> float:
    """1 from ``disc_start`` on, 0 before: no adversarial term while E and D warm up."""
    return 1.0 if step >= disc_start else 0.0


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """‖∇_last nll‖ / (‖∇_last g‖ + 1e-4), clamped to [0, 1e4] and detached (Esser et al. eq. 7)."""
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """½ (mean relu(1 − D(x)) + mean relu(1 + D(x̃)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class FirstStageLoss(nn.Module):
    """Reconstruction + regulariser + adversarial terms; owns the learned log-variance s.

    Args:
        regularizer: ``kl`` or ``vq``.
        perceptual: frozen LPIPS-like module, ``(x, y) -> (B,)`` for [-1, 1] images; None
            when ``perceptual_weight`` is 0.
        perceptual_weight, kl_weight, codebook_weight, disc_weight, disc_start: as in
            ``FirstStageConfig``.
    """

    def __init__(
        self,
        regularizer: str,
        perceptual: nn.Module | None,
        *,
        perceptual_weight: float,
        kl_weight: float,
        codebook_weight: float,
        disc_weight: float,
        disc_start: int,
        logvar_init: float = 0.0,
        learn_logvar: bool = False,
    ) -> None:
        super().__init__()
        if regularizer not in ("kl", "vq"):
            raise ValueError(f"regularizer {regularizer!r} has no loss; expected 'kl' or 'vq'")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual (LPIPS) module")
        self.regularizer = regularizer
        self.perceptual = perceptual.eval().requires_grad_(False) if perceptual is not None else None
        self.perceptual_weight = perceptual_weight
        self.kl_weight = kl_weight
        self.codebook_weight = codebook_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start
        # s in L_nll = L_rec / e^s + s (KL only; taming's VQ loss has none). CompVis declares
        # it a parameter but leaves it out of the autoencoder optimiser, so it stays at its
        # initial value; ``learn_logvar`` trains it instead.
        self.logvar = (nn.Parameter(torch.full((), logvar_init), requires_grad=learn_logvar)
                       if regularizer == "kl" else None)

    @classmethod
    def from_config(cls, fs: Mapping[str, Any], perceptual: nn.Module | None) -> "FirstStageLoss":
        """From a ``first_stage`` config node."""
        return cls(
            fs["regularizer"],
            perceptual,
            perceptual_weight=fs["perceptual_weight"],
            kl_weight=fs["kl_weight"],
            codebook_weight=fs["codebook_weight"],
            disc_weight=fs["disc_weight"],
            disc_start=fs["disc_start"],
            learn_logvar=fs.get("learn_logvar", False),
        )

    def adversarial(self, step: int) -> bool:
        """Whether the GAN terms are on at ``step`` (callers skip D's passes otherwise)."""
        return disc_factor(step, self.disc_start) > 0

    def generator_loss(
        self,
        x: torch.Tensor,
        out: Reconstruction,
        logits_fake: torch.Tensor | None,
        last_layer: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss for E, D (and s); ``logits_fake`` = D(x̃) with gradients to x̃ only, or None
        before ``disc_start``. Returns (loss, detached logs)."""
        x, rec = x.float(), out.rec.float()
        batch = x.shape[0]
        rec_loss = (x - rec).abs()  # (B, 3, H, W)
        if self.perceptual_weight > 0:
            rec_loss = rec_loss + self.perceptual_weight * self.perceptual(x, rec).float().view(-1, 1, 1, 1)
        if self.regularizer == "kl":
            nll = (rec_loss / torch.exp(self.logvar) + self.logvar).sum() / batch  # summed NLL
            reg = out.kl.float().sum() / batch
            loss = nll + self.kl_weight * reg
        else:
            nll = rec_loss.mean()
            reg = out.codebook.float().mean()
            loss = nll + self.codebook_weight * reg
        factor = disc_factor(step, self.disc_start)
        zero = torch.zeros((), device=x.device)
        g_loss, d_weight = zero, zero
        if factor > 0:
            if logits_fake is None:
                raise ValueError(f"step {step} >= disc_start {self.disc_start} needs D(x̃)")
            g_loss = -logits_fake.float().mean()
            d_weight = adaptive_weight(nll, g_loss, last_layer) * self.disc_weight
            loss = loss + d_weight * factor * g_loss
        logs = {
            "rec": rec_loss.mean(),
            "nll": nll,
            "kl" if self.regularizer == "kl" else "codebook": reg,
            "g": g_loss,
            "d_weight": d_weight,
            "disc_factor": torch.tensor(factor, device=x.device),
            "loss": loss,
        }
        if self.logvar is not None:
            logs["logvar"] = self.logvar
        return loss, {k: v.detach().float() for k, v in logs.items()}

    def discriminator_loss(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hinge loss for D, times disc_factor; ``logits_fake`` from a detached x̃."""
        factor = disc_factor(step, self.disc_start)
        loss = factor * hinge_d_loss(logits_real.float(), logits_fake.float())
        logs = {
            "d": loss,
            "logits_real": logits_real.float().mean(),
            "logits_fake": logits_fake.float().mean(),
        }
        return loss, {k: v.detach() for k, v in logs.items()}
