import numpy as np
import pytest
from sklearn.datasets import make_blobs

from benchmark.config.specs import ProbeSpec
from benchmark.probe.protocol import linear_probe


def test_probe_on_separable_features_is_accurate_and_reports_mean_std():
    X, y = make_blobs(n_samples=300, centers=3, n_features=10, cluster_std=1.0, random_state=0)
    r = linear_probe(X, y, ProbeSpec(k_per_class=10, draws=5), seed=0)
    assert r.mean > 0.95 and len(r.accuracies) == 5 and r.std == pytest.approx(np.std(r.accuracies))
    assert r.k_per_class == 10 and r.n_test == 300 - 30
    assert all(c in ProbeSpec().c_grid for c in r.chosen_c)


def test_probe_on_noise_features_is_near_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    r = linear_probe(rng.normal(size=(400, 20)), y, ProbeSpec(), seed=0)
    assert r.mean < 0.4


def test_probe_ignores_unlabeled_and_is_seeded():
    X, y = make_blobs(n_samples=200, centers=2, n_features=5, random_state=1)
    y2 = y.copy()
    y2[::2] = -1
    a = linear_probe(X, y2, ProbeSpec(), seed=3)
    b = linear_probe(X, y2, ProbeSpec(), seed=3)
    assert a == b and a.n_test == 100 - 20


def test_probe_with_too_few_labels_says_why():
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1, -1, -1])
    r = linear_probe(X, y, ProbeSpec(), seed=0)
    assert r.mean is None and "need at least 3" in r.reason
    r = linear_probe(X, np.zeros(10, int), ProbeSpec(), seed=0)
    assert r.mean is None and "fewer than 2 labeled classes" in r.reason


def test_the_probe_stage_runs_with_one_blas_thread_and_run_json_says_so():
    from threadpoolctl import threadpool_info

    from benchmark.runtime.threads import describe, stage_threads

    with stage_threads("probe"):
        assert all(i["num_threads"] == 1 for i in threadpool_info())
    d = describe()
    assert d["stage_blas_threads"]["probe"] == 1 and d["torch_intra_op"] >= 1 and d["blas"]


def _digits_256():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.kron(d.images, np.ones((2, 2))).reshape(len(d.images), -1).astype(np.float32), d.target


@pytest.mark.parametrize("wide", [False, True])
def test_torch_solver_equals_scikit_learn_per_draw_on_the_same_splits(wide):
    """The batched Newton-CG and scikit-learn's LogisticRegression run to convergence solve the same
    objective on the same splits: per-draw accuracies within 0.005 (5 draws, the C grid of the protocol),
    on 64-D features (more rows than dimensions) and 256-D ones (more dimensions than the 100 rows of a fit:
    the span-of-rows reduction)."""
    from sklearn.datasets import load_digits

    X, y = _digits_256() if wide else (load_digits().data.astype(np.float32), load_digits().target)
    spec = ProbeSpec(draws=5)
    ours = linear_probe(X, y, spec, seed=0)
    ref = linear_probe(X, y, spec, seed=0, reference_tol=1e-8)  # float32 features: scikit-learn fits in float32
    assert np.abs(np.subtract(ours.accuracies, ref.accuracies)).max() <= 0.005 and ours.n_test == ref.n_test
    ref64 = linear_probe(X.astype(np.float64), y, spec, seed=0, reference_tol=1e-8)  # both in float64: identical
    assert ours.chosen_c == ref64.chosen_c and np.abs(np.subtract(ours.accuracies, ref64.accuracies)).max() <= 0.001
    default = linear_probe(X, y, ProbeSpec(draws=5, solver="sklearn"), seed=0)
    assert abs(ours.mean - default.mean) <= 0.005  # today's reference, its stopping rule as it is


def test_logreg_reaches_the_optimum_of_the_objective():
    """The gradient of scikit-learn's objective at the batched solution is ~0, for every C of a batch."""
    import torch

    from benchmark.probe.logreg import fit_multinomial

    X, y = make_blobs(n_samples=60, centers=3, n_features=200, cluster_std=4.0, random_state=0)
    Xt = torch.as_tensor((X - X.mean(0)) / X.std(0))[None]
    lam = torch.tensor([[1.0, 0.1, 0.01]], dtype=torch.float64) / 60
    [(W, c)] = fit_multinomial([(Xt, torch.as_tensor(y)[None], lam)], 3, tol=1e-9)
    for g in range(3):
        Wg = W[0, g].clone().requires_grad_(True)
        cg = c[0, g].clone().requires_grad_(True)
        loss = (torch.nn.functional.cross_entropy(Xt[0] @ Wg + cg, torch.as_tensor(y))
                + 0.5 * lam[0, g] * (Wg ** 2).sum())
        loss.backward()
        assert float(torch.cat([Wg.grad.flatten(), cg.grad]).norm()) < 1e-7


def test_probe_solver_is_checked_and_is_part_of_the_probe_key():
    from benchmark.interfaces import BadInput

    with pytest.raises(BadInput, match="bad probe solver 'lbfgs': allowed: torch, sklearn"):
        ProbeSpec(solver="lbfgs")
    from benchmark.pipeline.plan import stable_hash

    assert stable_hash([ProbeSpec()]) != stable_hash([ProbeSpec(solver="sklearn")])


def test_probe_runs_on_the_runs_device(monkeypatch):
    """The probe task carries the run's device to the torch solver (cuda on a GPU run)."""
    from benchmark.pipeline.plan import ProbeTask
    from benchmark.probe import torch_draws as probe_torch

    seen = []
    real = probe_torch.torch_draws
    monkeypatch.setattr(probe_torch, "torch_draws", lambda *a: seen.append(a[-1]) or real(*a[:-1], "cpu"))
    X, y = make_blobs(n_samples=100, centers=2, n_features=5, random_state=1)
    linear_probe(X, y, ProbeSpec(draws=2), seed=0, device="cuda")
    assert seen == ["cuda"]
    assert ProbeTask("k", "f", "i", "l", ProbeSpec(), 0, "cuda").device == "cuda"
