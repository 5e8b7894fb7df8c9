"""The joint-embedding methods' losses, each a pure function of tensors (tested against slow references).

- ``nt_xent``: SimCLR's normalized-temperature cross-entropy (Chen et al. 2020, eq. 1), as solo-learn's
  ``solo/losses/simclr.py``: 2B embeddings, every other embedding of the batch a negative.
- ``info_nce``: MoCo's contrastive loss against a queue of keys (He et al. 2020, eq. 1; the official
  ``moco/builder.py`` and the CIFAR-10 demo ``colab/moco_cifar10_demo.ipynb``).
- ``byol_loss``: BYOL's normalized MSE, 2 - 2 cos (Grill et al. 2020, eq. 2; solo-learn ``solo/losses/byol.py``).
- ``dino_loss``: DINO's cross-entropy between the centered, sharpened teacher and the student (Caron et al.
  2021, Algorithm 1; the official ``main_dino.py`` ``DINOLoss``), over pairs of different views."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """z1, z2 (B, D): the two views' projections (any scale: they are L2-normalised here) -> scalar.

    For each of the 2B embeddings, the positive is the other view of the same image and the negatives are the
    2B - 2 others; the loss is the mean over the 2B anchors of -log softmax over the 2B - 1 candidates."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, positives)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """q (B, D) queries, k (B, D) their keys (no gradient), queue (K, D) negatives; all L2-normalised -> scalar.

    Logits (B, 1 + K): [q . k, q . queue] / T; the cross-entropy with the positive at index 0."""
    q, k, queue = q.float(), k.float(), queue.float()
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """p (B, D) online predictions, z (B, D) target projections (no gradient) -> scalar 2 - 2 cos, batch mean."""
    return 2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1).mean()


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, student_temp: float,
              teacher_temp: float) -> torch.Tensor:
    """student (V, B, K) logits of V views, teacher (T, B, K) logits of the first T <= V views (the global
    crops; no gradient), center (1, K) -> scalar.

    Teacher probabilities softmax((t - center) / teacher_temp), student log-probabilities log_softmax(s /
    student_temp); the cross-entropy summed over the K prototypes, averaged over the batch and over every pair
    (teacher view i, student view j) with i != j."""
    t = F.softmax((teacher.float() - center.float()) / teacher_temp, dim=-1)
    s = F.log_softmax(student.float() / student_temp, dim=-1)
    total, pairs = student.new_zeros((), dtype=torch.float32), 0
    for i in range(t.shape[0]):
        for j in range(s.shape[0]):
            if i != j:
                total = total + (-t[i] * s[j]).sum(dim=-1).mean()
                pairs += 1
    return total / max(pairs, 1)
