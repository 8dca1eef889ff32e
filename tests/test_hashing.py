"""Hashing methods (DESIGN Section 4): registry, settings, each loss term against a loop-based
re-computation of the DESIGN formula, gradients, codebooks, and a tiny training sanity check."""

from __future__ import annotations

import math

import pytest
import torch

from hashcondense.errors import HashCondenseError
from hashcondense.hashing import HashingMethod, create_hashing, list_hashing
from hashcondense.hashing.csq import CSQ, hadamard
from hashcondense.hashing.dhd import DHD
from hashcondense.hashing.dpn import DPN
from hashcondense.hashing.orthohash import OrthoHash

METHODS = {"csq": CSQ, "dhd": DHD, "dpn": DPN, "orthohash": OrthoHash}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


def _codes(method: HashingMethod, batch: int, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(batch, method.hash_bits, generator=g, dtype=dtype) * 1.9 - 0.95).requires_grad_()
        for _ in range(method.num_views)
    ]


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    y = torch.zeros(len(labels), num_classes, dtype=torch.float64)
    y[torch.arange(len(labels)), labels] = 1.0
    y[0, (labels[0] + 1) % num_classes] = 1.0  # two positive classes in row 0
    return y


# ---- registry and settings -----------------------------------------------------------------------


def test_registry_lists_and_builds_every_method():
    assert set(METHODS) <= set(list_hashing())
    for name, cls in METHODS.items():
        method = create_hashing(name, num_classes=10, hash_bits=32)
        assert type(method) is cls and method.name == name
        assert method.num_views == (2 if name == "dhd" else 1)
        head = method.make_head(12)
        assert head(torch.randn(4, 12)).shape == (4, 32)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(HashCondenseError, match="unknown hashing method 'hashnet'.*dhd"):
        create_hashing("hashnet", num_classes=10, hash_bits=32)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("bits", [0, 1, 5000, 32.5, "64", True, None])
def test_bad_hash_bits_are_rejected(name, bits):
    with pytest.raises(HashCondenseError, match="hash_bits"):
        create_hashing(name, num_classes=10, hash_bits=bits)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("dhd", {"temperature": 0.0}, "temperature"),
        ("dhd", {"sigma": -1.0}, "sigma"),
        ("dhd", {"sdh_weight": float("nan")}, "sdh_weight"),
        ("dhd", {"num_classes": 1}, "num_classes"),
        ("dpn", {"margin": 0}, "margin"),
        ("dpn", {"codebook_seed": -1}, "codebook_seed"),
        ("dpn", {"hash_bits": 4}, "use hash_bits >= 5"),  # C(4, 2) = 6 < 10 <= C(5, 2)
        ("orthohash", {"margin": 2.5}, "margin"),
        ("orthohash", {"scale": 0}, "scale"),
        ("orthohash", {"quan_weight": -0.1}, "quan_weight"),
        ("orthohash", {"hash_bits": 2}, "use more hash_bits"),
        ("csq", {"quant_weight": -1e-4}, "quant_weight"),
        ("csq", {"codebook_seed": 1.5}, "codebook_seed"),
    ],
)
def test_bad_settings_say_what_to_do(name, kwargs, match):
    settings = {"num_classes": 10, "hash_bits": 32, **kwargs}
    with pytest.raises(HashCondenseError, match=match):
        create_hashing(name, **settings)


def test_bad_inputs_are_user_errors():
    dhd = DHD(num_classes=5, hash_bits=8)
    h = torch.randn(4, 8)
    with pytest.raises(HashCondenseError, match="views"):
        dhd.loss_terms([h, h, h], torch.zeros(4, dtype=torch.long))
    with pytest.raises(HashCondenseError, match="shape"):
        dhd.loss_terms([torch.randn(4, 9)], torch.zeros(4, dtype=torch.long))
    with pytest.raises(HashCondenseError, match="labels"):
        dhd.loss_terms([h], torch.zeros(3, dtype=torch.long))
    with pytest.raises(HashCondenseError, match="views"):
        DPN(num_classes=5, hash_bits=8).loss_terms([h, h], torch.zeros(4, dtype=torch.long))
    with pytest.raises(HashCondenseError, match="feature_dim"):
        dhd.make_head(0)


# ---- loss terms against loop-based references of the DESIGN formulas --------------------------------


@pytest.mark.parametrize("multi", [False, True])
def test_dhd_terms_match_the_formulas(multi):
    torch.manual_seed(0)
    C, b, B, tau, sigma = 4, 6, 5, 0.2, 0.5
    method = DHD(num_classes=C, hash_bits=b).double()
    teacher, student = _codes(method, B)
    labels = torch.tensor([0, 1, 2, 3, 1])
    y = _multi_hot(labels, C) if multi else torch.nn.functional.one_hot(labels, C).double()
    terms = method.loss_terms([teacher, student], y if multi else labels)

    T, S, P = teacher.tolist(), student.tolist(), method.proxies.tolist()
    hp = 0.0
    for n in range(B):
        logits = [_cos(T[n], P[c]) / tau for c in range(C)]
        log_z = math.log(sum(math.exp(z) for z in logits))
        total = sum(y[n].tolist())
        for c in range(C):
            hp -= (y[n, c].item() / total) * (logits[c] - log_z)
    hp /= B
    sdh = sum(1 - _cos(S[n], T[n]) for n in range(B)) / B
    bce_pos = bce_neg = 0.0
    for n in range(B):
        for k in range(b):
            h = T[n][k]
            t = (math.copysign(1.0, h) + 1) / 2 if h != 0 else 0.5
            bce_pos += _bce(math.exp(-((h - 1) ** 2) / (2 * sigma**2)), t)
            bce_neg += _bce(math.exp(-((h + 1) ** 2) / (2 * sigma**2)), 1 - t)
    bceq = bce_pos / (B * b) + bce_neg / (B * b)

    assert terms["hp"].item() == pytest.approx(hp, rel=1e-9)
    assert terms["sdh"].item() == pytest.approx(sdh, rel=1e-9)
    assert terms["bceq"].item() == pytest.approx(bceq, rel=1e-9)
    expected = hp + 0.1 * sdh + 0.1 * bceq
    assert method.loss([teacher, student], y if multi else labels).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("multi", [False, True])
def test_dpn_term_matches_the_formula(multi):
    C, b, B, m = 4, 8, 5, 1.0
    method = DPN(num_classes=C, hash_bits=b).double()
    g = torch.Generator().manual_seed(1)
    v = (torch.randn(B, b, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    labels = torch.tensor([0, 3, 2, 1, 3])
    y = _multi_hot(labels, C) if multi else torch.nn.functional.one_hot(labels, C).double()
    got = method.loss_terms([v], y if multi else labels)["polarization"].item()
    V, book = v.tolist(), method.codebook.tolist()
    ref = 0.0
    for n in range(B):
        for c in range(C):
            if y[n, c] > 0:
                ref += sum(max(0.0, m - V[n][k] * book[c][k]) for k in range(b))
    assert got == pytest.approx(ref / B, rel=1e-9)


@pytest.mark.parametrize("multi", [False, True])
def test_orthohash_terms_match_the_formulas(multi):
    C, b, B, s, margin = 4, 16, 5, 8.0, 0.3
    method = OrthoHash(num_classes=C, hash_bits=b, margin=margin, quan_weight=0.5).double()
    g = torch.Generator().manual_seed(2)
    v = torch.randn(B, b, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([1, 0, 3, 2, 2])
    y = _multi_hot(labels, C) if multi else torch.nn.functional.one_hot(labels, C).double()
    terms = method.loss_terms([v], y if multi else labels)
    V, O = v.tolist(), method.codebook.tolist()
    ce = quan = 0.0
    for n in range(B):
        logits = [s * (_cos(V[n], O[c]) - margin * y[n, c].item()) for c in range(C)]
        log_z = math.log(sum(math.exp(z) for z in logits))
        total = sum(y[n].tolist())
        ce -= sum(y[n, c].item() / total * (logits[c] - log_z) for c in range(C))
        quan += 1 - _cos(V[n], [math.copysign(1.0, x) for x in V[n]])
    assert terms["ce"].item() == pytest.approx(ce / B, rel=1e-9)
    assert terms["quan"].item() == pytest.approx(quan / B, rel=1e-9)
    assert method.loss([v], y if multi else labels).item() == pytest.approx(ce / B + 0.5 * quan / B, rel=1e-9)


def test_orthohash_quantisation_is_off_by_default():
    method = OrthoHash(num_classes=4, hash_bits=16)
    assert method.loss_weights == {"ce": 1.0} and method.margin == 0.2 and method.scale == 8.0
    assert set(method.loss_terms([torch.randn(3, 16)], torch.tensor([0, 1, 2]))) == {"ce"}


@pytest.mark.parametrize("multi", [False, True])
def test_csq_terms_match_the_formulas(multi):
    C, b, B = 4, 8, 5
    method = CSQ(num_classes=C, hash_bits=b).double()
    u = _codes(method, B, seed=3)[0]
    labels = torch.tensor([2, 0, 1, 3, 0])
    y = _multi_hot(labels, C) if multi else torch.nn.functional.one_hot(labels, C).double()
    terms = method.loss_terms([u], y if multi else labels)
    U, centers, tie = u.tolist(), method.centers.tolist(), method.tie_breaker.tolist()
    center = quant = 0.0
    for n in range(B):
        for k in range(b):
            total = sum(centers[c][k] for c in range(C) if y[n, c] > 0)
            c_k = tie[k] if total == 0 else math.copysign(1.0, total)
            center += _bce((U[n][k] + 1) / 2, (c_k + 1) / 2)
            quant += (abs(U[n][k]) - 1) ** 2
    assert terms["center"].item() == pytest.approx(center / (B * b), rel=1e-9)
    assert terms["quant"].item() == pytest.approx(quant / (B * b), rel=1e-9)
    expected = center / (B * b) + 1e-4 * quant / (B * b)
    assert method.loss([u], y if multi else labels).item() == pytest.approx(expected, rel=1e-9)


# ---- gradients, robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(METHODS))
def test_gradients_reach_the_codes_and_values_are_finite(name):
    extra = {"quan_weight": 0.1} if name == "orthohash" else {}
    method = create_hashing(name, num_classes=5, hash_bits=16, **extra)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    codes = _codes(method, 6, dtype=torch.float32)
    terms = method.loss_terms(codes, labels)
    assert set(terms) == set(method.loss_weights)
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    method.loss(codes, labels).backward()
    for h in codes:
        assert h.grad is not None and torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    # random, unbounded, saturated and half-precision inputs stay finite
    for extreme in (torch.randn(6, 16) * 5, torch.ones(6, 16), -torch.ones(6, 16), torch.zeros(6, 16)):
        x = extreme.clone().requires_grad_()
        loss = method.loss([x] * method.num_views, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    half = [torch.randn(6, 16).half()] * method.num_views
    assert torch.isfinite(method.loss(half, labels))


def test_dhd_proxies_get_gradients_and_teacher_gets_none_from_sdh():
    method = DHD(num_classes=5, hash_bits=16)
    teacher, student = _codes(method, 6, dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    terms = method.loss_terms([teacher, student], labels)
    terms["sdh"].backward(retain_graph=True)
    assert teacher.grad is None and student.grad.abs().sum() > 0
    assert method.proxies.grad is None
    terms["hp"].backward()
    assert method.proxies.grad.abs().sum() > 0 and teacher.grad.abs().sum() > 0


def test_dhd_single_view_has_zero_distillation():
    method = DHD(num_classes=5, hash_bits=16)
    h = _codes(method, 6, dtype=torch.float32)[0]
    terms = method.loss_terms([h], torch.tensor([0, 1, 2, 3, 4, 0]))
    assert terms["sdh"].item() == 0.0
    both = method.loss_terms([h, h.detach().clone()], torch.tensor([0, 1, 2, 3, 4, 0]))
    assert both["hp"].item() == pytest.approx(terms["hp"].item())


def test_dhd_loss_groups_and_parameters():
    method = DHD(num_classes=5, hash_bits=16)
    net = torch.nn.Sequential(torch.nn.Linear(8, 12), method.make_head(12))
    assert method.loss_groups() == [["sdh", "bceq"], ["hp"]]
    groups = method.group_parameters(net)
    assert [len(g) for g in groups] == [len(list(net.parameters())), 1]
    assert groups[1][0] is method.proxies and method.proxy_parameters() == [method.proxies]
    dpn = DPN(num_classes=5, hash_bits=16)
    assert dpn.loss_groups() == [["polarization"]] and len(dpn.group_parameters(net)) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_on_cuda(name):
    method = create_hashing(name, num_classes=5, hash_bits=16).cuda()
    codes = [torch.randn(6, 16, device="cuda", requires_grad=True) for _ in range(method.num_views)]
    loss = method.loss(codes, torch.tensor([0, 1, 2, 3, 4, 0], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss) and codes[0].grad.abs().sum() > 0


# ---- codebooks -------------------------------------------------------------------------------------


def test_codebooks_depend_on_the_seed_only():
    for cls, attr in ((DPN, "codebook"), (OrthoHash, "codebook"), (CSQ, "centers")):
        kwargs = {"num_classes": 40, "hash_bits": 16} if cls is CSQ else {"num_classes": 10, "hash_bits": 32}
        torch.manual_seed(1)
        a = getattr(cls(**kwargs), attr)
        torch.manual_seed(2)
        b = getattr(cls(**kwargs), attr)
        c = getattr(cls(**kwargs, codebook_seed=7), attr)
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert set(a.unique().tolist()) == {-1.0, 1.0}
        assert len({tuple(r) for r in a.tolist()}) == a.shape[0]  # distinct class codes


def test_dhd_proxies_follow_the_global_seed():
    torch.manual_seed(3)
    a = DHD(num_classes=10, hash_bits=32).proxies.detach().clone()
    torch.manual_seed(3)
    b = DHD(num_classes=10, hash_bits=32).proxies.detach()
    assert torch.equal(a, b)
    bound = 5.0 / 3.0 * math.sqrt(6.0 / (10 + 32))  # Xavier-uniform bound with gain 5/3
    assert b.abs().max() <= bound and b.abs().max() > 0.8 * bound


@pytest.mark.parametrize("bits", [16, 33, 64])
def test_dpn_codes_are_balanced(bits):
    book = DPN(num_classes=10, hash_bits=bits).codebook
    assert book.shape == (10, bits)
    assert ((book > 0).sum(dim=1) == bits // 2).all()


def test_orthohash_codebook_keeps_its_distance():
    method = OrthoHash(num_classes=10, hash_bits=64)
    book = method.codebook
    assert book.shape == (10, 64)
    dist = (64 - book @ book.t()) / 128.0
    off = dist[~torch.eye(10, dtype=torch.bool)]
    # 0.61 cannot hold for 10 random 64-bit codes; the greedy search relaxes it in steps of 0.01
    assert 0.4 <= method.codebook_min_distance <= 0.61
    assert off.min() >= method.codebook_min_distance - 1e-9


def test_csq_centres_are_hadamard_rows_then_balanced_codes():
    h = hadamard(16)
    assert torch.equal(h @ h.t(), 16 * torch.eye(16))
    small = CSQ(num_classes=10, hash_bits=16).centers
    assert torch.equal(small @ small.t(), 16 * torch.eye(10))  # C <= b: mutually orthogonal rows
    mid = CSQ(num_classes=32, hash_bits=16).centers
    assert torch.equal(mid, torch.cat([h, -h]))
    big = CSQ(num_classes=40, hash_bits=16).centers
    assert torch.equal(big[:32], torch.cat([h, -h]))
    assert ((big[32:] > 0).sum(dim=1) == 8).all()
    odd = CSQ(num_classes=10, hash_bits=24).centers  # 24 is not a power of 2: random balanced codes
    assert ((odd > 0).sum(dim=1) == 12).all()
    d = (24 - odd @ odd.t()) / 2
    assert d[~torch.eye(10, dtype=torch.bool)].min() > 0


# ---- a tiny training run per method -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_separates_two_gaussian_classes(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d, bits, n = 8, 16, 128
    direction = torch.randn(d, generator=g)
    direction = 2.0 * direction / direction.norm()

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(count) % 2
        x = torch.randn(count, d, generator=g) + torch.where(y[:, None] == 1, direction, -direction)
        return x, y

    method = create_hashing(name, num_classes=2, hash_bits=bits)
    head = method.make_head(d)
    opt = torch.optim.Adam(list(head.parameters()) + list(method.parameters()), lr=0.01)
    for _ in range(100):
        x, y = sample(n)
        views = [x + 0.05 * torch.randn(n, d, generator=g), x + 0.3 * torch.randn(n, d, generator=g)]
        codes = head(torch.cat(views[: method.num_views])).split(n)
        loss = method.loss(list(codes), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    x, y = sample(200)
    with torch.no_grad():
        codes = torch.sign(head(x))
    hamming = (bits - codes @ codes.t()) / 2
    same = y[:, None] == y[None, :]
    off_diag = ~torch.eye(200, dtype=torch.bool)
    assert hamming[same & off_diag].mean() < 0.5 * hamming[~same].mean()
