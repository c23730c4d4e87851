"""Deploy forms (edgeage.models.deploy): the same function with fewer ops, for every model that
has ECA, MGPool or spatial attention; a wrong re-parameterisation is caught."""
from __future__ import annotations

import pytest
import torch

from edgeage.models import create
from edgeage.models.deploy import DenseECA, MGPoolDeploy, deploy_form, eca_matrix
from edgeage.models.layers import ECA, MGPool, SpatialAttention


def _lively(name, **cfg):
    torch.manual_seed(0)
    m = create(name, **cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(0.5 + torch.rand(mod.num_features, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.num_features, generator=g))
    return m


@pytest.mark.parametrize("name,cfg,size", [("mgpnet-e", {}, 32), ("mgpnet-xs", {}, 64),
                                           ("mgpnet-t", {"gate": "none"}, 48)])
def test_deploy_form_is_the_same_function_with_fewer_modules(name, cfg, size):
    m = _lively(name, **cfg)
    d = deploy_form(m)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        a, b = m(x), d(x)
    assert float((a - b).abs().max()) < 1e-4 * max(1.0, float(a.abs().max()))
    assert not any(isinstance(mod, (ECA, MGPool)) for mod in d.modules())
    assert any(isinstance(mod, MGPoolDeploy) for mod in d.modules())
    assert any(isinstance(mod, ECA) for mod in m.modules()) == any(isinstance(mod, DenseECA) for mod in d.modules())
    assert any(isinstance(mod, SpatialAttention) for mod in m.modules()) == \
        any(isinstance(mod, SpatialAttention) for mod in d.modules())  # kept as it is
    assert any(isinstance(mod, MGPool) for mod in m.modules())  # the trained model keeps the paper's form


def test_shipped_model_deploy_form_within_1e5():
    from edgeage.checkpoint import load_model

    m, _ = load_model(None)
    x = torch.rand(4, 3, 64, 64) * 4 - 2
    with torch.no_grad():
        assert float((m(x) - deploy_form(m)(x)).abs().max()) < 1e-5 * max(1.0, float(m(x).abs().max()))


def test_a_wrong_shuffle_fold_is_caught():
    """Folding the shuffle with the permutation instead of its inverse changes the outputs."""
    m = _lively("mgpnet-e")
    d = deploy_form(m)
    mp = next(mod for mod in d.modules() if isinstance(mod, MGPoolDeploy))
    cat = mp.fuse.in_channels
    from edgeage.models.layers import shuffle_permutation

    perm = torch.tensor(shuffle_permutation(cat, 4))
    with torch.no_grad():
        mp.fuse.weight.copy_(mp.fuse.weight[:, torch.argsort(perm)][:, torch.argsort(perm)])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert float((m(x) - d(x)).abs().max()) > 1e-3


def test_eca_matrix_is_the_conv1d():
    eca = ECA(24)
    torch.nn.init.normal_(eca.conv.weight)
    v = torch.randn(5, 24)
    m = eca_matrix(eca.conv, 24)
    with torch.no_grad():
        assert torch.allclose(eca.conv(v[:, None, :])[:, 0], v @ m.t(), atol=1e-5)


@pytest.mark.parametrize("name,size", [("mgpnet-e", 32), ("mgpnet-xs", 64)])
def test_nchw_spatial_attention_is_the_same_function(name, size):
    """[deploy] spatial = "nchw" (OpenVINO): channel reductions over axis 1, no NHWC permutes."""
    from edgeage.models.deploy import SpatialAttentionNCHW

    m = _lively(name)
    d = deploy_form(m, spatial="nchw")
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        a, b = m(x), d(x)
    assert float((a - b).abs().max()) < 1e-4 * max(1.0, float(a.abs().max()))
    n_sa = sum(type(mod) is SpatialAttention for mod in m.modules())
    assert n_sa > 0 and sum(type(mod) is SpatialAttentionNCHW for mod in d.modules()) == n_sa
    assert not any(type(mod) is SpatialAttention for mod in d.modules())
    # the trace has no permute left (the NHWC form has two per gate)
    ops = {n.target for n in torch.fx.symbolic_trace(d.backbone).graph.nodes if n.op == "call_method"}
    assert "permute" not in ops
    assert "permute" in {n.target for n in torch.fx.symbolic_trace(deploy_form(m).backbone).graph.nodes
                         if n.op == "call_method"}


def test_target_deploy_options_are_checked(tmp_path):
    from edgeage.models.deploy import target_deploy_form
    from edgeage.targets.spec import load_spec
    from edgeage.utils import EdgeAgeError

    assert load_spec("openvino").deploy == {"spatial": "nchw"}
    assert not load_spec("executorch").deploy  # XNNPACK: the trained NHWC form
    m = _lively("mgpnet-e")
    assert any(type(mod).__name__ == "SpatialAttentionNCHW"
               for mod in target_deploy_form(m, load_spec("openvino")).modules())
    base = 'exporter = "x.y"\nrunner = "x.z"\nprecisions = ["fp32"]\n'
    for bad, msg in [('[deploy]\nspatial = "nhcw"\n', "deploy.spatial"), ('[deploy]\nlayout = "nchw"\n', "deploy.layout")]:
        f = tmp_path / "t.toml"
        f.write_text(base + bad)
        with pytest.raises(EdgeAgeError, match=msg):
            load_spec(str(f))
    with pytest.raises(ValueError, match="spatial"):
        deploy_form(m, spatial="NCHW")
