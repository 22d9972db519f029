"""Loss functions, pure and each tied to its paper.

They take tensors and return a scalar tensor; no module state, so tests can
compare each one with a hand-written reference of the formula.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .collective import all_reduce_max, all_reduce_sum


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            everyone: tuple[torch.Tensor, torch.Tensor] | None = None, offset: int = 0) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, eq. 1).

    For a positive pair (i, j) of the 2N views:

        l(i, j) = -log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)

    with sim the cosine similarity; the denominator runs over the positive and
    the 2N−2 in-batch negatives. The loss is the mean of l over all 2N
    anchors, i.e. L = 1/(2N) Σ_k [l(2k−1, 2k) + l(2k, 2k−1)].

    Under torchrun, ``everyone`` holds the two views' projections of the global
    batch (every rank's rows, gathered) and ``offset`` where this rank's rows
    start in it: the anchors are this rank's 2n views, the positives and
    negatives come from all 2N, and the result is the mean over this rank's anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    if everyone is None:
        keys, total = z, n
    else:
        keys, total = F.normalize(torch.cat(everyone).float(), dim=1), everyone[0].shape[0]
    sim = z @ keys.t() / temperature
    # Each anchor's own column, and its other view's: z1[i] is row offset+i of the
    # first view, z2[i] row offset+i of the second (column total+offset+i).
    own = torch.cat([torch.arange(offset, offset + n), torch.arange(total + offset, total + offset + n)])
    own = own.to(z.device)
    # An anchor is never its own negative: remove it from the softmax.
    sim[torch.arange(2 * n, device=z.device), own] = float("-inf")
    positives = torch.cat([own[n:], own[:n]])
    return F.cross_entropy(sim, positives)


def reconstruction_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, the autoencoders' objective ||x − g(f(x̃))||²."""
    return F.mse_loss(pred.float(), target.float())


# ---------------------------------------------------------------------------------------------
# Siamese methods without in-batch negatives: MoCo, BYOL, SimSiam, SwAV


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's contrastive loss with a queue of negatives (He et al. 2020, eq. 1; MoCo v2, Chen et al. 2020).

    For query q (B, d), its positive key k₊ (B, d) from the momentum encoder
    and the queue of K earlier keys (K, d):

        L_q = −log exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_{k∈queue} exp(q·k/τ))

    q and k₊ are l2-normalised here; the queue's rows are expected to be
    normalised already (they are keys). In the paper's pseudocode: logits =
    cat([q·k₊, q·queueᵀ]) / τ, labels = 0, cross-entropy, mean over the batch.
    The keys carry no gradient in MoCo (the caller computes them under
    ``no_grad``); nothing is detached here.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)                   # (B, 1)
    l_neg = q @ queue.to(q.dtype).t()                           # (B, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = −(p/‖p‖₂)·(z/‖z‖₂), mean over the batch (Chen & He 2021, eq. 1).

    No stop-gradient here: :func:`simsiam_loss` applies it, as the paper's
    pseudocode does inside D.
    """
    return -(F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1)).sum(dim=1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetric loss (Chen & He 2021, eq. 3 and Algorithm 1):

        L = ½ D(p₁, stopgrad(z₂)) + ½ D(p₂, stopgrad(z₁))

    with p = h(f(x)) the predictor outputs and z = f(x) the projections; the
    stop-gradient is ``z.detach()`` exactly as in the paper's pseudocode. Its
    minimum is −1.
    """
    return 0.5 * negative_cosine(p1, z2.detach()) + 0.5 * negative_cosine(p2, z1.detach())


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetrised regression loss (Grill et al. 2020, eq. 2 and §3.1):

        L = ‖q̄_θ(z_θ) − z̄'_ξ‖²₂ = 2 − 2·⟨q_θ(z_θ), z'_ξ⟩ / (‖q_θ(z_θ)‖₂ ‖z'_ξ‖₂)
        L^BYOL = L + L̃

    p1, p2: the online predictions of views 1 and 2; t1, t2: the target
    projections of views 1 and 2 (no gradient: detached here). The first term
    regresses p1 on t2, the swapped one p2 on t1; each is the mean over the
    batch, and the two are summed as in the paper (range 0 to 8).
    """
    def regression(p, t):
        return (2.0 - 2.0 * (F.normalize(p.float(), dim=1) * F.normalize(t.detach().float(), dim=1)).sum(dim=1)).mean()
    return regression(p1, t2) + regression(p2, t1)


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05,
                   across_processes: bool = False) -> torch.Tensor:
    """SwAV's codes: soft assignments of B samples to K prototypes with equal
    shares (Caron et al. 2020, §3.1, eq. 3 and Algorithm 1's ``sinkhorn``).

    Q* = Diag(u) exp(Cᵀ Z / ε) Diag(v), found by ``iterations`` alternating
    normalisations so that each prototype receives B/K of the mass (rows of
    the K×B matrix sum to 1/K) and each sample 1/B (columns), the columns
    finally scaled to sum to 1: the result (B, K) has rows that are
    probability distributions over prototypes. As in the paper's code, the
    last step normalises the samples, so after few iterations the per-sample
    sums are exact and the per-prototype sums B/K only approximately.

    ``scores``: (B, K) similarities zᵀc. Computed without gradient, in float64
    (float32 where the device has no float64, e.g. MPS). Every prototype's row
    is shifted by its maximum before the exponential — the row normalisation
    that comes first cancels any per-prototype factor exactly — so exp never
    overflows, whatever ε.

    ``across_processes`` (under torchrun): each rank passes its own rows, and the
    sums over samples (the whole matrix, each prototype's row, the count B) and
    the shift are taken over all ranks, as in the paper's code, so every rank
    gets its rows of the codes of the global batch.
    """
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64
    s = scores.detach().to(dtype)
    # Under torchrun the sums over samples, and the shift (every rank must shift a
    # prototype by the same amount for the shifts to cancel), run over all ranks.
    def over_samples(t: torch.Tensor, op=all_reduce_sum) -> torch.Tensor:
        return op(t) if across_processes else t

    Q = torch.exp((s - over_samples(s.max(dim=0, keepdim=True).values, all_reduce_max)) / epsilon).t()
    K, B = Q.shape                           # (K, B), B this rank's samples
    if across_processes:
        B = int(all_reduce_sum(torch.tensor([B], device=Q.device)))
    Q /= over_samples(Q.sum())
    for _ in range(iterations):
        Q /= over_samples(Q.sum(dim=1, keepdim=True))     # each prototype: total mass 1/K
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)     # each sample: total mass 1/B
        Q /= B
    Q *= B                                   # each sample's codes sum to 1
    return Q.t().to(scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32)


def swav_loss(scores: list[torch.Tensor], codes: list[torch.Tensor],
              temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction loss (Caron et al. 2020, eq. 1–2):

        ℓ(z_t, q_s) = −Σ_k q_s^(k) log p_t^(k),   p_t^(k) = exp(z_tᵀc_k/τ) / Σ_k' exp(z_tᵀc_k'/τ)

    ``scores``: the prototype scores zᵀC (B, K) of every crop, the crops
    the codes came from first (the large ones), then the others (multi-crop's
    small ones). ``codes``: the Sinkhorn codes (B, K) of the first
    ``len(codes)`` crops. Each code q_i is predicted from every other crop
    v ≠ i; as in the paper's code, the loss is averaged over those V − 1
    crops, then over the crops with codes, and over the batch.
    """
    n_crops, n_codes = len(scores), len(codes)
    if n_codes < 1 or n_crops < 2 or n_codes > n_crops:
        raise ValueError(f"need at least 2 crops and 1..{n_crops} codes, got {n_crops} crops, {n_codes} codes")
    log_p = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
    loss = 0.0
    for i, q in enumerate(codes):
        q = q.detach().float()
        sub = sum(-(q * log_p[v]).sum(dim=1).mean() for v in range(n_crops) if v != i)
        loss = loss + sub / (n_crops - 1)
    return loss / n_codes


# ---------------------------------------------------------------------------------------------
# Multi-modal: CLIP


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, log_scale: torch.Tensor,
              max_scale: float = 100.0) -> torch.Tensor:
    """CLIP's symmetric cross-entropy (Radford et al. 2021, Figure 3's pseudocode):

        I_e = l2_normalize(I_f · W_i),  T_e = l2_normalize(T_f · W_t)
        logits = I_e · T_eᵀ · exp(t)
        loss = (cross_entropy(logits, arange(n), axis=0) + cross_entropy(logits, arange(n), axis=1)) / 2

    ``image_emb`` and ``text_emb`` (n, d) are the projected pairs (row i of
    each belongs together; they are l2-normalised here, which changes nothing
    when the caller already did); ``log_scale`` is the learned temperature t,
    and the scale exp(t) is clamped at ``max_scale`` (100 in the paper) so the
    logits cannot grow without bound. Under torchrun the caller passes the
    features of the global batch (gathered from every rank).
    """
    i_e = F.normalize(image_emb.float(), dim=1)
    t_e = F.normalize(text_emb.float(), dim=1)
    scale = log_scale.float().exp().clamp(max=max_scale)
    logits = scale * i_e @ t_e.t()                       # (n images, n texts)
    labels = torch.arange(logits.shape[0], device=logits.device)
    loss_i = F.cross_entropy(logits, labels)             # each image picks its caption
    loss_t = F.cross_entropy(logits.t(), labels)         # each caption picks its image
    return (loss_i + loss_t) / 2
