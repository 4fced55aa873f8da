"""Float64 weightings of the Gramian ``G = J J^T`` of the per-task gradients, solved exactly.

Every function takes the T x T Gramian in float64 and returns the T task weights ``w`` (the update is ``J^T w``),
in float64. ``jacobian.py`` builds ``G`` in float64 from the float32 Jacobian rows, calls one of these and combines
the rows in float64 before casting the update back to the parameters' dtype. Why not TorchJD's own, in float32:

- IMTL-G and ConFIG take a pseudo-inverse whose default cut-off is ``max(m, n) * eps``: in float32 it drops the
  direction of any task whose gradient is ~3,000x smaller than another's (IMTL-G then loses its equal projections
  and a weight turns negative), and ConFIG's ``pinv`` of the T x P unit rows cuts at ``P * eps``, 0.1 for a
  million parameters. Here both solve with the cosine matrix ``N = D^-1 G D^-1`` (D the gradient norms), whose
  conditioning depends on the angles only, not on the norm ratios.
- MGDA's Frank-Wolfe stops at ``epsilon`` = 1e-3 on the step size, 6-25% from the min-norm point on conflicting
  gradients. Here the min-norm point of the convex hull is an exact non-negative least squares (Lawson-Hanson).
- UPGrad's and DualProj's projection onto the dual cone adds ``1e-4 * trace(G)`` to G before quadprog: on
  conflicting rows whose norms differ 100x that makes the update 16x too long. Here each projection is an NNLS.

- CAGrad's TorchJD version returns a zero update whenever ``||g_w|| < 1e-4`` on the trace-normalised Gramian,
  which happens at every step once two gradient norms differ ~1e4x. Here there is no cut-off (as in the authors'
  code) and CLARABEL's solution is polished: on its support the optimum has a closed form (below).
- Nash-MTL's CCP (the authors' code, which TorchJD adapts) solves up to 20 cvxpy/ECOS subproblems on ``G / ||G||_F``
  with absolute tolerances: on row norms 1e4 apart the update is off by 0.8-41 times its norm on every T, seed and
  gradient scale (ECOS "inaccurate" or "unbounded"), at gradient scale 1e-3 every Jacobian fails (up to 2.5x; ECOS's
  iteration limit or a fall-back to alpha = 1), at 1e3 its absolute tolerances leave up to 0.9, and when a task's
  gradient opposes the plain sum the first linearised subproblem can be unbounded, so it returns the plain sum.
  FairGrad's ``scipy.optimize.least_squares`` from ``w = 1/T`` stops early (``max_nfev`` or ``xtol``): on row norms
  1e4 apart half the Jacobians fail, up to 360x off at scale 1 and 2,900x at 1e3, and at scale 1e-3 nearly all
  (up to 0.8). Both are one equation, solved here by Newton's method on a convex function of the per-task
  contributions (``alpha_fair_weights``), where the norm ratios cancel. (On the smoke model's own Jacobians, norms
  ~100x apart and mild conflicts, the old and new updates agree to 4e-5 and 6e-7.)

Scale conventions (sum vs mean of the rows) are applied by the callers in ``jacobian.py``, not here.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def gramian(blocks: list[Tensor]) -> Tensor:
    """``J J^T`` in float64 from the Jacobian's blocks (one per parameter, each T x ...), one block at a time."""
    out = None
    for block in blocks:
        flat = block.reshape(block.shape[0], -1).double()
        part = flat @ flat.T
        out = part if out is None else out + part
    assert out is not None, "no Jacobian blocks"
    return out


def _sqrt_factor(G: Tensor) -> np.ndarray:
    """R with ``R^T R = G / trace(G)`` (G's negative rounding-error eigenvalues clipped to 0), as a numpy array."""
    lam, vecs = torch.linalg.eigh(G / G.trace())
    return (lam.clamp_min(0).sqrt()[:, None] * vecs.T).numpy()


def _cosines(G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The gradient norms, the mask of non-zero rows, and the cosine matrix of those rows."""
    norms = G.diagonal().clamp_min(0).sqrt()
    nonzero = norms > 0
    d = norms[nonzero]
    return norms, nonzero, G[nonzero][:, nonzero] / (d[:, None] * d[None, :])


def mgda_weights(G: Tensor) -> Tensor:
    """The min-norm point of the rows' convex hull: ``argmin w^T G w`` over ``w >= 0, sum(w) = 1``.

    With ``G = R^T R``, ``min_{u >= 0} ||R u||^2 + (1^T u - 1)^2`` is solved by ``u = w* / (1 + m*)`` (for a fixed
    ``s = 1^T u`` the best direction is the min-norm ``w*``, and ``s = 1 / (1 + m*)`` > 0), so one NNLS of size
    (T + 1) x T, normalised to sum 1, gives ``w*`` exactly.
    """
    T = G.shape[0]
    if G.trace() <= 0:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    A = np.vstack([_sqrt_factor(G), np.ones((1, T))])
    b = np.zeros(T + 1)
    b[-1] = 1.0
    u, _ = nnls(A, b, maxiter=50 * T)
    return torch.from_numpy(u / u.sum())


def dual_cone_weights(G: Tensor, U: Tensor) -> Tensor:
    """For each row u of ``U``: the v with ``J^T v`` the projection of ``J^T u`` onto the dual cone of J's rows.

    Proposition 1 of Quinton and Rey (2024): ``v = argmin v^T G v`` over ``v >= u``; with ``v = u + z`` and
    ``G = R^T R`` that is ``min_{z >= 0} ||R z + R u||``, an NNLS. Returns one v per row of ``U``.
    """
    if G.trace() <= 0:
        return U.clone()
    R = _sqrt_factor(G)
    out = [u + nnls(R, -R @ u, maxiter=50 * len(u))[0] for u in U.numpy()]
    return torch.from_numpy(np.stack(out))


def upgrad_weights(G: Tensor) -> Tensor:
    """UPGrad: the mean of every row projected onto the dual cone, ``(1/T) sum_i pi(g_i)``."""
    T = G.shape[0]
    return dual_cone_weights(G, torch.eye(T, dtype=torch.float64) / T).sum(0)


def dualproj_weights(G: Tensor) -> Tensor:
    """DualProj: the mean of the rows projected onto their dual cone, ``pi((1/T) sum_i g_i)``."""
    T = G.shape[0]
    return dual_cone_weights(G, torch.full((1, T), 1.0 / T, dtype=torch.float64))[0]


def _equal_cosine_direction(G: Tensor) -> Tensor:
    """w with ``J^T w = pinv(U) 1``, U the unit rows: equal projections of ``J^T w`` on every unit gradient.

    ``pinv(U) = U^T pinv(U U^T)`` and ``U U^T = N``, the cosine matrix, so ``w = D^-1 pinv(N) 1`` (zero rows: 0).
    """
    norms, nonzero, N = _cosines(G)
    w = torch.zeros_like(norms)
    if nonzero.any():
        v = torch.linalg.pinv(N, hermitian=True) @ torch.ones(len(N), dtype=torch.float64)
        if v.abs().max() > 1e-10:  # N has unit diagonal: v is ~1e-16 only when 1 is in N's null space
            w[nonzero] = v / norms[nonzero]
    return w


def imtlg_weights(G: Tensor) -> Tensor:
    """IMTL-G: the weights summing to 1 whose update has equal projections on every task's unit gradient.

    The paper's closed form (``alpha_{2:T} = g_1 U^T (D U^T)^-1``) needs J's rows independent; this is the same
    point through the cosine matrix (Quinton and Rey's generalisation, ``pinv(G) sqrt(diag G)`` normalised to sum
    1, which TorchJD computes in float32). All zeros when the equal-projection direction is 0 (e.g. g_1 = -g_2).
    """
    w = _equal_cosine_direction(G)
    total = w.sum()
    return torch.zeros_like(w) if total == 0 else w / total


def config_weights(G: Tensor) -> Tensor:
    """ConFIG (Liu et al. 2025, Eq. 2, preference vector of ones): the unit vector along ``pinv(U) 1`` times the sum
    of the rows' projections on it, ``(sum_i g_i . e) e``; as weights ``w (1^T G w) / (w^T G w)``."""
    w = _equal_cosine_direction(G)
    norm2 = w @ G @ w
    if norm2 <= 0:
        return torch.zeros_like(w)
    return w * (G @ w).sum() / norm2


def aligned_mtl_weights(G: Tensor, scale_mode: str, pref: Tensor) -> Tensor:
    """Aligned-MTL (Senushkin et al. 2023, Algorithm 1): ``B pref`` with ``B = sqrt(s) V Lambda^-1/2 V^T``.

    ``G = V Lambda V^T`` keeps the eigenvalues above ``T * eps_float32 * lambda_max`` (the authors' tolerance: their
    code takes ``torch.finfo().eps`` of float32 whatever the precision, so the rank does not depend on it) and ``s``
    is the smallest kept eigenvalue (``min``), their median or their mean (``rmse``). No eigenvalue kept: ``pref``.
    """
    lam, vecs = torch.linalg.eigh(G)
    keep = lam > lam.max() * len(G) * FLOAT32_EPS
    if not keep.any():
        return pref.clone()
    lam, vecs = lam[keep], vecs[:, keep]
    scale = {"min": lam.min(), "median": lam.median(), "rmse": lam.mean()}[scale_mode]
    B = scale.sqrt() * (vecs / lam.sqrt()) @ vecs.T
    return B @ pref


def _cagrad_on_support(Gn: np.ndarray, b: np.ndarray, phi: float, support: np.ndarray) -> np.ndarray | None:
    """CAGrad's optimum if its weights are non-zero exactly on ``support``: the update ``J^T (b + y)`` has equal
    inner products mu with the rows in the support, and ``y^T G y = phi``; ``y_S = mu a - c`` with
    ``G_SS a = 1``, ``G_SS c = (G b)_S`` makes that a quadratic in mu. The root with ``y >= 0`` and the larger
    ``min_i g_i . d`` (CAGrad's objective), or None."""
    S = np.flatnonzero(support)
    Gb = Gn @ b
    try:
        a = np.linalg.solve(Gn[np.ix_(S, S)], np.ones(len(S)))
        c = np.linalg.solve(Gn[np.ix_(S, S)], Gb[S])
    except np.linalg.LinAlgError:
        return None
    qa, qb, qc = a.sum(), -2 * c.sum(), c @ Gb[S] - phi
    disc = qb**2 - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return None
    best, best_obj = None, -np.inf
    for mu in ((-qb + np.sqrt(disc)) / (2 * qa), (-qb - np.sqrt(disc)) / (2 * qa)):
        y = np.zeros(len(b))
        y[S] = mu * a - c
        if (y >= 0).all() and (obj := float((Gn @ (b + y)).min())) > best_obj:
            best, best_obj = b + y, obj
    return best


def cagrad_weights(G: Tensor, c: float, norm_eps: float = 0.0) -> Tensor:
    """CAGrad (Liu et al. 2021, Algorithm 1) in the mean convention: ``1/T + sqrt(phi) / ||g_w|| w``.

    ``w = argmin_{w in simplex} g_w . g0 + sqrt(phi) ||g_w||``, ``phi = c^2 ||g0||^2``, solved with cvxpy's
    CLARABEL on the trace-normalised Gramian (as TorchJD does), then polished with the closed form on the
    solution's support when that is feasible and at least as good. ``||g_w|| <= norm_eps`` (relative to the
    Frobenius norm of J) gives a zero update, as TorchJD's ``norm_eps`` does; ``g_w = 0`` with ``norm_eps = 0``
    gives ``g0`` (the authors' code: ``lambda g_w`` with ``g_w = 0``).
    """
    import cvxpy as cp

    T = G.shape[0]
    b = np.full(T, 1.0 / T)
    if G.trace() <= 0:
        return torch.from_numpy(b)
    Gn = (G / G.trace()).numpy()
    R = _sqrt_factor(G)
    phi = c**2 * float(b @ Gn @ b)
    w = cp.Variable(T)
    cost = (Gn @ b) @ w + np.sqrt(phi) * cp.norm(R @ w, 2)
    cp.Problem(cp.Minimize(cost), [w >= 0, cp.sum(w) == 1]).solve(cp.CLARABEL)
    w_opt = np.clip(np.asarray(w.value, dtype=np.float64), 0, None)
    w_opt /= w_opt.sum()
    gw_norm = float(np.sqrt(max(w_opt @ Gn @ w_opt, 0.0)))
    if gw_norm <= norm_eps:
        return torch.zeros(T, dtype=torch.float64) if norm_eps > 0 else torch.from_numpy(b)
    weights = b + np.sqrt(phi) / gw_norm * w_opt
    polished = _cagrad_on_support(Gn, b, phi, w_opt > 1e-6 * w_opt.max())
    if polished is not None and (Gn @ polished).min() >= (Gn @ weights).min():
        weights = polished
    return torch.from_numpy(weights)


# Below this distance from 0 of the convex hull of the unit gradients (the min-norm point of the rows of the cosine
# matrix, MGDA's), the rows are Pareto stationary to within ~10 float32 roundings of the gradients: no alpha-fair
# weights exist there (the problem is unbounded), and just above it float64 resolves the update only to ~1e-5.
STATIONARY_TOL = 1e-6


def _alpha_fair_contributions(N: np.ndarray, scale: np.ndarray, alpha: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """The v > 0 with ``v_i^(1/alpha) (N v)_i = scale_i^((alpha+1)/alpha)``, and whether the solve converged.

    It minimises the strictly convex ``f(v) = v^T N v / 2 - sum_i scale_i^2 h(v_i / scale_i)``, ``h' = x^(-1/alpha)``
    (``h = log`` at alpha = 1), by Newton's method from ``v = scale`` (the solution when the rows are orthogonal).
    The Hessian is ``N + diag(u^(-1/alpha - 1) / alpha)`` with ``u = v / scale``: the cosine matrix plus a positive
    diagonal, whatever the gradients' norms. Far from the solution a step is cut to stay positive and backtracked to
    an Armijo decrease; once no coordinate moves by more than 1e-3 of itself the full step is taken (quadratic
    convergence; f itself is then flat to rounding), and the solve ends when no coordinate moves by more than 1e-9.
    Coordinates below 1e-8 of the largest (contributions that cannot change the update) are judged in absolute
    terms, and one that a full step would make negative is divided by 10 instead.
    """
    v = scale.copy()
    exponent = -1.0 / alpha

    def objective(x: np.ndarray) -> float:
        u = x / scale
        h = np.log(u) if alpha == 1 else u ** (1 + exponent) / (1 + exponent)
        return float(0.5 * x @ N @ x - (scale**2 * h).sum())

    for _ in range(max_iter):
        u = v / scale
        grad = N @ v - scale * u**exponent
        hess = N + np.diag(u ** (exponent - 1) / alpha)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return v, False
        if not np.isfinite(step).all():
            return v, False
        relative = float((np.abs(step) / np.maximum(v, 1e-8 * v.max())).max())
        if relative < 1e-3:
            v = np.where(v + step > 0, v + step, v / 10)
            if relative < 1e-9:
                return v, True
            continue
        decrease = float(-grad @ step)
        shrinking = step < 0
        t = min(1.0, 0.99 * float((v[shrinking] / -step[shrinking]).min())) if shrinking.any() else 1.0
        current = objective(v)
        while objective(v + t * step) > current - 0.25 * t * decrease and t > 1e-12:
            t /= 2
        v = v + t * step
    return v, False


def alpha_fair_weights(G: Tensor, alpha: float, max_iter: int = 100) -> Tensor:
    """The w > 0 with ``(G w)_i = w_i^(-1/alpha)``: FairGrad (Ban and Ji 2024, eq. 4); alpha = 1 is Nash-MTL's
    bargaining solution ``alpha_i (G alpha)_i = 1`` (Navon et al. 2022, eq. 2). Unique when it exists.

    With ``d_i = ||g_i||``, ``N`` the cosine matrix and ``v_i = d_i w_i`` (the norm of task i's contribution to the
    update) the equations read ``v_i^(1/alpha) (N v)_i = d_i^((1-alpha)/alpha)``: at alpha = 1 the norms cancel,
    otherwise they enter only through ``scale = d^((1-alpha)/(1+alpha))``, the solution for orthogonal rows. So the
    solve (``_alpha_fair_contributions``) sees the angles, not the norm ratios, and no gradient scale. Measured on
    15,000 solves (random, conflicting and ill-conditioned Jacobians with norms up to 1e6 apart, scales 1e-4 to 1e4,
    T = 2 to 8, alpha 0.1 to 5): all converged within 30 Newton steps (25 but for 2), and on a sample of 300 the
    update was within 7e-15 relative of a 60-digit solve.

    Where no solution exists, the weights are 0: for a row that is exactly 0 (no weight can make ``(G w)_i`` > 0;
    its contribution to the update is 0 whatever its weight) and, for the others together, when 0 lies within
    ``STATIONARY_TOL`` of their unit gradients' convex hull (Pareto stationary: no direction improves every task;
    MGDA's update is 0 there too). Near that limit the update's float64 accuracy falls as about 1e-17 / m^2, m the
    distance (1e-5 at m = 1e-6, 1e-9 at 1e-4). A solve that has not converged after ``max_iter`` steps (in our
    sweeps: only within 3e-5 of stationarity, or alpha >= 20) returns its last iterate with a ``RuntimeWarning``.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    norms, nonzero, N = _cosines(G)
    weights = torch.zeros_like(norms)
    if not nonzero.any():
        return weights
    hull = mgda_weights(N)
    if float(hull @ N @ hull) <= STATIONARY_TOL**2:
        return weights
    d = norms[nonzero].numpy()
    v, converged = _alpha_fair_contributions(N.numpy(), d ** ((1 - alpha) / (1 + alpha)), alpha, max_iter)
    if not converged:
        warnings.warn(
            f"alpha-fair weights (alpha={alpha}): Newton's method did not converge in {max_iter} steps; "
            "the gradients are nearly Pareto stationary, the update is approximate",
            RuntimeWarning,
            stacklevel=2,
        )
    weights[nonzero] = torch.from_numpy(v / d)
    return weights


def nash_mtl_weights(G: Tensor) -> Tensor:
    """Nash-MTL (Navon et al. 2022): the Nash bargaining solution ``alpha_i (G alpha)_i = 1``, ``alpha > 0``."""
    return alpha_fair_weights(G, 1.0)
