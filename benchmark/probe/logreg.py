"""Batched multinomial logistic regression with an L2 penalty, solved in torch for many problems at once.

Each problem b minimises ``mean_i CE(softmax(x_i W + c), y_i) + lam_b / 2 * ||W||^2`` (intercept ``c``
not penalised), which is scikit-learn's ``LogisticRegression(C)`` objective with ``lam = 1 / (C n)``.
The probe has few training rows (n, tens to hundreds) and many dimensions (D, up to thousands), so the
optimum ``W`` lies in the span of the training rows (the gradient of the loss is ``X^T R``): with
``X^T = Q R`` (thin QR, Q orthonormal, D x n) the problem is solved exactly in n coordinates ``A`` with
``W = Q A`` and ``||W|| = ||A||``. There it is solved by Newton's method with a conjugate-gradient inner
solve and a backtracking line search, every problem in one batch of tensor operations (all C values and
all draws of the probe at once), to a gradient norm far below scikit-learn's stopping rule."""
from __future__ import annotations

import torch

ARMIJO = 1e-4
STEPS = torch.tensor([0.5 ** i for i in range(12)], dtype=torch.float64)


def standardize_stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-problem mean and scale of X (B, n, D), as scikit-learn's StandardScaler computes them (float64
    accumulators; near-constant features get scale 1)."""
    mean = X.mean(dim=1)
    var = ((X - mean[:, None, :]) ** 2).mean(dim=1)
    n = X.shape[1]
    eps = torch.finfo(torch.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = torch.where(constant, torch.ones_like(var), var.sqrt())
    return mean, scale


def _loss(Z: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, pen: torch.Tensor) -> torch.Tensor:
    """Y holds the one-hot labels times the row weights (1/n, 0 for padding rows)."""
    logp = torch.log_softmax(Z @ A, dim=-1)
    return -(Y * logp).sum((1, 2)) + 0.5 * (pen * A * A).sum((1, 2))


def _grad(Z, Y, w, A, pen):
    P = torch.softmax(Z @ A, dim=-1)
    return torch.baddbmm(pen * A, Z.transpose(1, 2), P * w - Y), P


def _hvp(Zt, Pw, P, pen, V):
    """Hessian-vector product of the objective for the direction V (Pw: probabilities times row weights)."""
    D = Zt.transpose(1, 2) @ V
    PD = Pw * D
    return torch.baddbmm(pen * V, Zt, PD - P * PD.sum(-1, keepdim=True))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((1, 2))


def _newton_direction(Z, P, w, pen, g, max_cg: int) -> torch.Tensor:
    """Solve H d = -g per problem by conjugate gradients preconditioned with the Hessian's diagonal (in
    the singular-vector basis of the rows, where it dominates), stopping each problem at a relative
    residual of min(0.25, sqrt(||g||)) (a Newton-CG forcing term: superlinear convergence)."""
    Pw = P * w
    Zt = Z.transpose(1, 2).contiguous()
    inv_diag = 1.0 / ((Z * Z).transpose(1, 2) @ (Pw * (1 - P)) + pen + 1e-12)
    d = torch.zeros_like(g)
    r = -g
    z = inv_diag * r
    p = z.clone()
    rz = _dot(r, z)
    g2 = _dot(g, g)
    target = torch.clamp(g2.sqrt(), max=0.25) * g2
    for _ in range(max_cg):
        active = _dot(r, r) > target
        if not bool(active.any()):
            break
        h = _hvp(Zt, Pw, P, pen, p)
        php = _dot(p, h)
        alpha = torch.where(active & (php > 0), rz / php.clamp_min(1e-300), torch.zeros_like(rz))[:, None, None]
        d = d + alpha * p
        r = r - alpha * h
        z = inv_diag * r
        rz_new = _dot(r, z)
        beta = torch.where(active, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta[:, None, None] * p
        rz = torch.where(active, rz_new, rz)
    return d


def _fit_reduced(Z: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, lam: torch.Tensor, tol: float,
                 max_iter: int, max_cg: int) -> tuple[torch.Tensor, int]:
    """Newton-CG on coordinates Z (B, n, r), one-hot labels Y (B, n, K) and row weights w (B, n, 1), with a
    column of ones appended for the intercept (its row of the weights is not penalised). Returns A
    (B, r + 1, K)."""
    B, n, r = Z.shape
    Z = torch.cat([Z, Z.new_ones(B, n, 1)], dim=2)
    Yw = Y * w
    pen = torch.cat([lam[:, None].expand(B, r), lam.new_zeros(B, 1)], dim=1)[:, :, None]
    A = Z.new_zeros(B, r + 1, Y.shape[-1])
    steps = STEPS.to(Z.device)
    for it in range(max_iter):
        g, P = _grad(Z, Yw, w, A, pen)
        gnorm = _dot(g, g).sqrt()
        live = gnorm > tol
        if not bool(live.any()):
            return A, it
        d = _newton_direction(Z, P, w, pen, g, max_cg)
        f0 = _loss(Z, Yw, A, pen)
        slope = _dot(g, d)
        f1 = _loss(Z, Yw, A + d, pen)
        t = torch.ones_like(f0)
        bad = f1 > f0 + ARMIJO * slope
        if bool(bad.any()):  # backtracking: every trial step of the failing problems in one batch
            idx = torch.nonzero(bad).squeeze(1)
            S, m = steps.numel(), idx.numel()
            trial = A[idx][None] + steps[:, None, None, None] * d[idx][None]
            f = _loss(Z[idx].repeat(S, 1, 1), Yw[idx].repeat(S, 1, 1), trial.reshape(S * m, r + 1, -1),
                      pen[idx].repeat(S, 1, 1)).reshape(S, m)
            ok = f <= f0[idx][None] + ARMIJO * steps[:, None] * slope[idx][None]
            first = torch.where(ok.any(0), ok.float().argmax(0), torch.full((m,), S - 1, device=Z.device))
            t[idx] = steps[first]
        A = A + (t * live)[:, None, None] * d
    return A, max_iter


def row_basis(X: torch.Tensor, rcond: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates Z (B, n, n) of the rows of X (B, n, D) in an orthonormal basis Q of their span, X = Z Q^T,
    and M (B, n, n) with Q = X^T M, from the eigendecomposition of the Gram matrix X X^T = U L U^T (n x n:
    cheaper than an SVD of X when D >> n): Z = U L^1/2, M = U L^-1/2. Directions with eigenvalues below
    rcond times the largest are dropped (their columns are zero in both)."""
    L, U = torch.linalg.eigh(X @ X.transpose(1, 2))
    keep = L > rcond * L.amax(dim=1, keepdim=True).clamp_min(1e-300)
    root = torch.where(keep, L.clamp_min(0).sqrt(), torch.zeros_like(L))
    inv = torch.where(keep, 1.0 / root.clamp_min(1e-300), torch.zeros_like(L))
    return U * root[:, None, :], U * inv[:, None, :]


def fit_multinomial(groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], n_classes: int, *,
                    tol: float = 1e-7, max_iter: int = 100, max_cg: int = 20
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fit every problem of every group in one batch. A group is (X, y, lam): X (B, n, D) float64
    standardized rows of B data sets, y (B, n) class indices in [0, n_classes), lam (B, G) penalties: B * G
    problems whose data-set bases are computed once. Groups may differ in n (rows and coordinates are
    padded with zero-weight rows and zero columns). Returns per group W (B, G, D, K) and intercepts
    (B, G, K)."""
    N = max(X.shape[1] for X, _, _ in groups)
    Zs, Ys, ws, lams, Ms = [], [], [], [], []
    for X, y, lam in groups:
        B, n, _ = X.shape
        G = lam.shape[1]
        Z, M = row_basis(X)
        Ms.append(M)
        Zs.append(torch.nn.functional.pad(Z, (0, N - n, 0, N - n)).repeat_interleave(G, 0))
        Y = torch.nn.functional.one_hot(y, n_classes).to(X.dtype)
        Ys.append(torch.nn.functional.pad(Y, (0, 0, 0, N - n)).repeat_interleave(G, 0))
        ws.append(torch.cat([X.new_full((B * G, n, 1), 1.0 / n), X.new_zeros(B * G, N - n, 1)], dim=1))
        lams.append(lam.reshape(-1))
    A, _ = _fit_reduced(torch.cat(Zs), torch.cat(Ys), torch.cat(ws), torch.cat(lams), tol, max_iter, max_cg)
    out, start = [], 0
    for (X, _, lam), M in zip(groups, Ms, strict=False):
        B, n, _ = X.shape
        G = lam.shape[1]
        Ag = A[start:start + B * G].reshape(B, G, N + 1, n_classes)
        start += B * G
        W = X.transpose(1, 2)[:, None] @ (M[:, None] @ Ag[:, :, :n])  # W = Q A = X^T M A
        out.append((W, Ag[:, :, -1]))
    return out
