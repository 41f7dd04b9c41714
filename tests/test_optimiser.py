"""The optimiser's levers (issue: the optimiser is the product): geometry
refit of centres and radii, swap moves and coherent codes, decode stencils.
Each is checked against a plain-numpy oracle and for its guarantee: the step
never raises its objective."""
import numpy as np
import pytest

from probewarp.baker import kernels as K
from probewarp.baker.domain import sub_directions
from probewarp.baker.metrics import cell_corner_ids, distinct_per_cell, stencil_distinct
from probewarp.baker.prototypes import ProbeCodec, _NO_TAPS, _dirs
from probewarp.baker.cubemap import texel_weights
from probewarp.format.grid import Grid
import naive
from test_prototypes import _field


# --- geometry trials against the oracle ---------------------------------------

def test_geometry_trials_match_naive_loss_change():
    """delta[i, k, j] = loss of probe i with prototype idx[i, k] moved to trial
    j (centre and radius) minus its current loss, every other tap fixed:
    oracle = naive_decode_probe of DESIGN-NOTES §4 twice. The kernel samples
    the fitting model (15-bit fixed-point bilinear fractions): 1e-3 of the
    loss scale."""
    rng = np.random.default_rng(4)
    P, M, N, R = 4, 3, 2, 4
    x = rng.normal(size=(P, 3)) * 0.3
    C = rng.normal(size=(M, 3)) * 0.3
    rho = rng.uniform(2.0, 4.0, M)
    J = rng.random((M, 6 * R * R, 3)).astype(np.float32)
    idx = np.array([[0, 1], [1, 2], [2, 0], [1, 0]], np.int32)
    w = rng.uniform(0.2, 0.8, (P, N)).astype(np.float32)
    Y = rng.random((P, 6 * R * R, 3)).astype(np.float32)
    wt = texel_weights(R).reshape(1, -1).astype(np.float32)
    trial_c = np.stack([C, C + [0.4, 0, 0], C - [0, 0.3, 0.2]], axis=1)
    trial_r = np.stack([rho * 1.3, rho, rho * 0.8], axis=1)
    sub = sub_directions(R, 1)
    src, nsrc = K.pad_table(R)
    Jp = np.empty((M, src.shape[0], 3), np.float32)
    K._pad(J, src, nsrc, Jp)
    Yhat = np.empty((P, 6 * R * R, 3), np.float32)
    tb, tq = _NO_TAPS
    K._render_fit(x, _dirs(sub), 1, C, rho, Jp, R, idx, w, tb, tq, False, Yhat)
    resid = np.ascontiguousarray(Y - Yhat)
    use = np.ones((P, N), bool)
    delta = np.empty((P, N, 3))
    K._geometry_trials(x, _dirs(sub), 1, C, rho, Jp, R, idx, w, use, tb, tq, False, resid, wt, trial_c, trial_r,
                       False, delta)
    protos = J.reshape(M, 6, R, R, 3)
    wts = wt.reshape(6, R, R)[..., None]

    def loss(i, cc, rr):
        yh = naive.naive_decode_probe(x[i], cc, rr, protos, idx[i], w[i], R)
        return float(np.sum(wts * (Y[i].reshape(6, R, R, 3) - yh) ** 2))

    scale = max(loss(i, C, rho) for i in range(P))
    for i in range(P):
        base = loss(i, C, rho)
        for k in range(N):
            m = idx[i, k]
            for j in range(3):
                cc, rr = C.copy(), rho.copy()
                cc[m], rr[m] = trial_c[m, j], trial_r[m, j]
                assert delta[i, k, j] == pytest.approx(loss(i, cc, rr) - base, abs=1e-3 * scale), (i, k, j)
    # view preserving: the moved prototype's content is read in the direction
    # of the new sphere's hit point seen from the old centre
    vp = np.empty_like(delta)
    K._geometry_trials(x, _dirs(sub), 1, C, rho, Jp, R, idx, w, use, tb, tq, False, resid, wt, trial_c, trial_r,
                       True, vp)
    dirs = naive.naive_all_directions(R).reshape(-1, 3)

    def loss_vp(i, k, j):
        yh = np.zeros((6 * R * R, 3))
        for kk in range(N):
            m = idx[i, kk]
            if kk == k:
                s = np.array([naive.naive_warp_direction(x[i], trial_c[m, j], trial_r[m, j], d) for d in dirs])
                v = s * trial_r[m, j] + (trial_c[m, j] - C[m])
            else:
                v = np.array([naive.naive_warp_direction(x[i], C[m], rho[m], d) for d in dirs])
            yh += w[i, kk] * naive.naive_sample_cube(protos[m], v).reshape(-1, 3)
        return float(np.sum(wt.reshape(-1, 1) * (Y[i] - yh) ** 2))

    for i in range(P):
        base = loss(i, C, rho)
        for k in range(N):
            for j in range(3):
                assert vp[i, k, j] == pytest.approx(loss_vp(i, k, j) - base, abs=1e-3 * scale), (i, k, j)
    assert not np.allclose(vp[..., 1:], delta[..., 1:])     # the centre trials differ between the modes
    serial = np.empty_like(delta)
    K._geometry_trials_serial(x, _dirs(sub), 1, C, rho, Jp, R, idx, w, use, tb, tq, False, resid, wt, trial_c,
                              trial_r, False, serial)
    np.testing.assert_array_equal(serial, delta)


def test_geometry_update_never_raises_the_loss():
    g, faces = _field(R=8, n=5)
    codec = ProbeCodec(n_prototypes=10, n_taps=3, n_iter=3, seed=1, texel_format="rgba16f",
                       swaps=False).fit(g, faces)
    h = codec.history_
    geo = [(a["loss"], b["loss"]) for a, b in zip(h, h[1:]) if b["stage"] == "geometry"]
    assert len(geo) == 3
    assert all(after <= before for before, after in geo)


def test_centre_line_search_undoes_a_displaced_centre():
    """The content of a fitted prototype belongs to its centre: displace the
    most used centre by one trial step and the geometry update must move it
    back (the trial that restores it lowers the loss the most), never raising
    the loss."""
    from probewarp.baker.domain import to_domain
    g, faces = _field(R=8, n=5)
    codec = ProbeCodec(n_prototypes=10, n_taps=3, n_iter=2, seed=1, texel_format="rgba32f", swaps=False,
                       fit_radius=False).fit(g, faces)
    x = codec.positions_
    Y = np.ascontiguousarray(to_domain(faces, "tonemap"))
    wt = codec._loss_weights(Y)
    sub = sub_directions(codec.R_, codec.k_)
    idx, w = codec.indices_, codec.weights_
    Jp = codec._pad(codec.J_)
    m = int(np.bincount(idx.reshape(-1), weights=w.reshape(-1), minlength=10).argmax())
    c0 = codec.centres_[m].copy()
    codec.centre_step_[:] = 0.125
    codec.centres_[m] += [0.125 * codec.radii_[m], 0.0, 0.0]
    Yhat = codec._render_fit(x, Jp, idx, w, sub, None)
    err = codec._errors(Y, Yhat, wt)
    before = err.sum()
    err2, _, info, _ = codec._update_geometry(x, Y, wt, idx, w, sub, Yhat, None, Jp, err)
    assert err2.sum() <= before
    assert info["centres_moved"] >= 1
    np.testing.assert_allclose(codec.centres_[m], c0, atol=1e-9)


# --- decode stencils ------------------------------------------------------------

def _naive_stencils(shape, present):
    """Every cell's present corners as sets of lattice ids (a brute-force loop)."""
    out = []
    nx, ny, nz = shape
    for i in range(max(nx - 1, 1)):
        for j in range(max(ny - 1, 1)):
            for k in range(max(nz - 1, 1)):
                s = {((min(i + a, nx - 1)) * ny + min(j + b, ny - 1)) * nz + min(k + c, nz - 1)
                     for a in (0, 1) for b in (0, 1) for c in (0, 1)}
                s &= present
                if len(s) >= 2:
                    out.append(frozenset(s))
    return sorted(out, key=sorted)


@pytest.mark.parametrize("shape", [(4, 3, 5), (5, 1, 4)])
def test_grid_stencils_match_brute_force(shape):
    g = Grid.checked(shape, (0, 0, 0), tuple(float(max(n - 1, 1)) for n in shape), dense=False)
    rng = np.random.default_rng(0)
    ids = np.flatnonzero(rng.random(g.n_points) < 0.7)
    perm = rng.permutation(ids.size)                  # probes in any order
    pos = g.positions(ids[perm])
    st = g.stencils(pos)
    got = sorted((frozenset(int(ids[perm][p]) for p in row if p >= 0) for row in st), key=sorted)
    assert got == _naive_stencils(shape, set(ids.tolist()))


def test_distinct_per_cell_counts_sets():
    rng = np.random.default_rng(2)
    shape = (3, 2, 4)
    P = int(np.prod(shape))
    idx = rng.integers(0, 9, (P, 3))
    w = rng.random((P, 3)) * (rng.random((P, 3)) < 0.8)
    d = distinct_per_cell(shape, idx, w)
    cells = cell_corner_ids(shape)
    want = [len({int(idx[p, k]) for p in row for k in range(3) if w[p, k] > 0}) for row in cells]
    np.testing.assert_array_equal(d, want)
    np.testing.assert_array_equal(stencil_distinct(cells, idx, w), want)


# --- coherent selection --------------------------------------------------------

def _naive_select(cells, opt_idx, opt_w, opt_err, lam, idx, w, err, sweeps):
    """Gauss-Seidel over probes in order with Python sets: the oracle of
    kernels.coherent_select."""
    idx, w, err = idx.copy(), w.copy(), err.copy()
    P = idx.shape[0]

    def objective_terms(i, ci, cw):
        tot = 0
        for row in cells:
            if i not in row:
                continue
            s = set()
            for p in row:
                if p < 0:
                    continue
                a, b = (ci, cw) if p == i else (idx[p], w[p])
                s |= {int(m) for m, v in zip(a, b) if v > 0}
            tot += len(s)
        return tot

    for _ in range(sweeps):
        for i in range(P):
            best = err[i] + lam * objective_terms(i, idx[i], w[i])
            pick = -1
            for o in range(opt_idx.shape[1]):
                if not np.isfinite(opt_err[i, o]):
                    continue
                f = opt_err[i, o] + lam * objective_terms(i, opt_idx[i, o], opt_w[i, o])
                if f < best:
                    best, pick = f, o
            if pick >= 0:
                idx[i], w[i], err[i] = opt_idx[i, pick], opt_w[i, pick], opt_err[i, pick]
    return idx, w, err


def _total(cells, idx, w, err, lam):
    return float(err.sum()) + lam * float(stencil_distinct(cells, idx, w).sum())


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_coherent_select_matches_oracle_and_never_raises_objective(lam):
    rng = np.random.default_rng(7)
    shape = (3, 3, 2)
    cells = cell_corner_ids(shape)
    cells[1, 3] = -1                                   # an absent corner
    P, N, M, n_opt = int(np.prod(shape)), 2, 6, 3
    idx = rng.integers(0, M, (P, N)).astype(np.int32)
    w = rng.random((P, N)).astype(np.float32)
    err = rng.random(P) + 0.5
    opt_idx = rng.integers(0, M, (P, n_opt, N)).astype(np.int32)
    opt_w = rng.random((P, n_opt, N)).astype(np.float32)
    opt_err = rng.random((P, n_opt)) + 0.5
    opt_err[0, 1] = np.inf                             # no such option
    want = _naive_select(cells, opt_idx, opt_w, opt_err, lam, idx, w, err, 2)
    before = _total(cells, idx, w, err, lam)
    codec = ProbeCodec()
    stencils = codec._stencils(np.zeros((P, 3)) + np.arange(P)[:, None], cells)
    gi, gw, ge = idx.copy(), w.copy(), err.copy()
    K.coherent_select(stencils[0], stencils[1], stencils[2], opt_idx, opt_w, opt_err, lam, gi, gw, ge, 2, M)
    np.testing.assert_array_equal(gi, want[0])
    np.testing.assert_array_equal(gw, want[1])
    np.testing.assert_array_equal(ge, want[2])
    assert _total(cells, gi, gw, ge, lam) <= before + 1e-12


def test_coherent_codes_share_prototypes_and_swaps_lower_the_loss():
    """Coherent coding lowers the distinct prototypes per cell; each swap step
    lowers its own objective (loss + lam * distinct per cell); with
    coherence 0 the swap steps lower the plain loss."""
    g, faces = _field(R=8, n=5)
    grid = Grid.checked((5, 5, 5), (-1, -1, -1), (1, 1, 1))
    cells = grid.stencils(g)
    common = dict(n_prototypes=16, n_taps=3, n_iter=2, seed=0, texel_format="rgba16f")
    plain = ProbeCodec(coherence=0.0, **common).fit(g, faces, cells=cells)
    coh = ProbeCodec(coherence=0.3, **common).fit(g, faces, cells=cells)
    for codec in (plain, coh):
        for h in codec.history_:
            if h["stage"] == "swap":
                assert h["objective"] <= h["objective_before"] * (1 + 1e-12)
    h = plain.history_
    for a, b in zip(h, h[1:]):
        if b["stage"] == "swap":
            assert b["loss"] <= a["loss"]
    d_plain = distinct_per_cell((5, 5, 5), plain.indices_, plain.weights_).mean()
    d_coh = distinct_per_cell((5, 5, 5), coh.indices_, coh.weights_).mean()
    assert d_coh < d_plain - 0.5


def test_swaps_without_cells_use_neighbours():
    g, faces = _field(R=4, n=4)
    common = dict(n_prototypes=8, n_taps=2, n_iter=2, seed=0, texel_format="rgba16f")
    a = ProbeCodec(swaps=True, **common).fit(g, faces)
    b = ProbeCodec(swaps=False, **common).fit(g, faces)
    assert any(h["stage"] == "swap" and h["moves"] > 0 for h in a.history_)
    assert not any(h["stage"] == "swap" for h in b.history_)


# --- stopping on held-out probes ----------------------------------------------------

def test_held_out_probes_stop_the_iterations():
    g, faces = _field(R=4, n=5)
    common = dict(n_prototypes=10, n_taps=2, n_iter=5, seed=0, texel_format="rgba16f", validation=0.25)
    eager = ProbeCodec(tol=1.0, **common).fit(g, faces)       # no iteration improves by 100 %
    assert eager.n_iter_ == 1
    vals = [h for h in eager.history_ if h["stage"] == "validation"]
    assert len(vals) == 1 and vals[0]["probes"] == round(0.25 * 125)
    patient = ProbeCodec(tol=-np.inf, **common).fit(g, faces)  # never stops early
    assert patient.n_iter_ == 5
    v = [h["loss"] for h in patient.history_ if h["stage"] == "validation"]
    assert v[-1] < v[0]                                         # held-out probes gain from training
    # held-out probes are coded and decoded like every other (codes for all probes)
    assert (patient.weights_.sum(axis=1) > 0).all()
    none = ProbeCodec(**dict(common, validation=0.0)).fit(g, faces)
    assert none.n_iter_ == 5 and not any(h["stage"] == "validation" for h in none.history_)
