"""Zero-cost proxies against values worked out by hand on a 2-layer network with fixed weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spos.errors import UserError
from spos.rank import proxies

W1 = [[1.0, -2.0, 0.0], [0.5, 1.0, -1.0], [-1.0, 0.0, 2.0], [1.0, 1.0, 1.0]]  # 3 inputs -> 4 ReLU units
W2 = [[1.0, -1.0, 2.0, 0.0], [-0.5, 1.0, 1.0, -1.0]]  # 4 units -> 2 classes
# Each image's ReLU code (unit active?) is read off W1's columns: [1, 0, 0] -> W1[:, 0] = (1, .5, -1, 1) -> 1101
IMAGES = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]  # codes 1101, 0101, 0011, 0111
LABELS = [0, 1, 1, 0]


def two_layer_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net


def test_grad_norm_is_the_sum_of_each_weights_gradient_norm():
    x, w1, w2, y = np.array(IMAGES), np.array(W1), np.array(W2), np.array(LABELS)
    hidden = x @ w1.T
    active = np.maximum(hidden, 0)
    logits = active @ w2.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_logits = (p - np.eye(2)[y]) / len(y)  # the mean cross-entropy's gradient
    d_w2 = d_logits.T @ active
    d_w1 = ((d_logits @ w2) * (hidden > 0)).T @ x
    expected = np.linalg.norm(d_w1) + np.linalg.norm(d_w2)
    value = proxies.grad_norm(two_layer_net(), torch.tensor(IMAGES), torch.tensor(LABELS))
    assert value == pytest.approx(expected, rel=1e-6)


def test_synflow_of_two_linear_layers_is_twice_the_sum_over_paths():
    # |W1| row sums (3, 2.5, 3, 3): what an all-ones input gives each unit (all positive, so ReLU passes it);
    # |W2| column sums (1.5, 2, 3, 1): what each unit adds to R. R = 4.5 + 5 + 9 + 3 = 21.5, and each layer's
    # sum of theta * dR/dtheta is R again (R is linear in each layer's weights): 43.
    assert proxies.synflow(two_layer_net(), (3,)) == pytest.approx(43.0)


def test_synflow_removes_batch_norm_and_keeps_float_precision():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[3].weight.copy_(torch.tensor(W2))
        net[1].running_var.fill_(100.0)  # would scale the units by 1/10 if BN were kept
    assert proxies.synflow(net, (3,)) == pytest.approx(43.0)


def test_naswot_is_the_log_determinant_of_the_code_agreement_kernel():
    # agreements = 4 units - Hamming distance of the codes 1101, 0101, 0011, 0111
    kernel = np.array([[4, 3, 1, 2], [3, 4, 2, 3], [1, 2, 4, 3], [2, 3, 3, 4]])
    assert np.linalg.det(kernel) == pytest.approx(20.0)
    assert proxies.naswot(two_layer_net(), torch.tensor(IMAGES)) == pytest.approx(math.log(20.0))
    twins = torch.tensor([IMAGES[0], IMAGES[0], IMAGES[1]])  # two images with one code: K is singular
    assert proxies.naswot(two_layer_net(), twins) == -math.inf


def test_naswot_needs_relu_modules():
    with pytest.raises(UserError, match="no nn.ReLU; leave naswot out"):
        proxies.naswot(nn.Sequential(nn.Linear(3, 2)), torch.ones(2, 3))


def test_proxies_leave_the_model_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                        nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 3))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    values = {name: proxy(net, images, labels) for name, proxy in proxies.PROXIES.items()}
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert net.training and all(p.grad is None for p in net.parameters())
    again = {name: proxy(net, images, labels) for name, proxy in proxies.PROXIES.items()}
    assert again == values and all(math.isfinite(v) for v in values.values())  # dropout is off: deterministic


def test_proxy_names_read_commas_and_all():
    assert proxies.proxy_names(None) == [] and proxies.proxy_names("") == []
    assert proxies.proxy_names("all") == ["grad_norm", "synflow", "naswot"]
    assert proxies.proxy_names("naswot, grad-norm,naswot") == ["naswot", "grad_norm"]
    with pytest.raises(UserError, match="unknown proxy 'snip'; choose from grad_norm, synflow, naswot"):
        proxies.proxy_names("snip,naswot")
