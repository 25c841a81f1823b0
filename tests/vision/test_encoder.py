import pytest
import torch

from vision.config import create_config
from vision.encoder import build_encoder

CONFIG = create_config("tiny")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    enc = build_encoder(CONFIG).eval()
    # Open every gate so that the tile embeddings and global layers take part.
    for name, p in enc.named_parameters():
        if name.endswith("gate"):
            p.data.fill_(0.7)
    return enc


def _images(B, N):
    return torch.randn(B, N, CONFIG.max_tiles, 3, CONFIG.tile_size, CONFIG.tile_size)


@pytest.mark.parametrize("ratio_ids", [[[1]], [[2, 6]], [[8, 0], [5, 3]], [[4, 7, 0]]])
def test_output_shapes_and_padding_zeros(encoder, ratio_ids):
    ids = torch.tensor(ratio_ids)
    B, N = ids.shape
    with torch.no_grad():
        out = encoder(_images(B, N), ids)
    assert out.shape == (B, N, CONFIG.max_tiles, CONFIG.tokens_per_tile, CONFIG.output_dim)
    real = encoder.tile_mask(ids)
    tiles = [[0] + [r * c for r, c in CONFIG.aspect_ratios]][0]
    assert real.sum(-1).tolist() == [[tiles[i] for i in row] for row in ratio_ids]
    assert torch.isfinite(out).all()
    assert (out[~real] == 0).all() and (out[real].abs().sum(-1) > 0).all()


def test_padding_tiles_do_not_change_real_tiles(encoder):
    ids = torch.tensor([[2, 6]])  # 1×2 (2 real tiles) and 2×2 (4 real tiles)
    images = _images(1, 2)
    with torch.no_grad():
        base = encoder(images, ids)
        changed = images.clone()
        changed[0, 0, 2:] = 100 * torch.randn_like(changed[0, 0, 2:])  # padding tiles of image 0
        other = encoder(changed, ids)
    real = encoder.tile_mask(ids)
    torch.testing.assert_close(other[real], base[real], rtol=0, atol=1e-5)
    # A real tile's pixels do change its image's outputs.
    changed[0, 0, 1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(encoder(changed, ids)[0, 0, 0], base[0, 0, 0])


def test_multi_layer_features_are_inputs_of_the_configured_layers(encoder):
    ids = torch.tensor([[6]])
    captured = {}
    hooks = [encoder.layers[i].register_forward_pre_hook(
        lambda m, args, i=i: captured.__setitem__(i, args[0])) for i in CONFIG.intermediate_layers]
    with torch.no_grad():
        out = encoder(_images(1, 1), ids)
    for h in hooks:
        h.remove()
    W, n = CONFIG.width, len(CONFIG.intermediate_layers)
    # Reference layout: final output first, then feature d of the k-th kept layer at W + d·n + k.
    for k, i in enumerate(CONFIG.intermediate_layers):
        expected = captured[i].view(CONFIG.max_tiles, CONFIG.tokens_per_tile, W)
        torch.testing.assert_close(out[0, 0, ..., W + k::n], expected)


def test_gated_layers_start_as_identity():
    torch.manual_seed(0)
    enc = build_encoder(CONFIG)
    x = torch.randn(2, 5, CONFIG.width)
    for layer in enc.global_layers:
        assert torch.equal(layer(x), x)


def test_every_parameter_gets_a_gradient(encoder):
    enc = build_encoder(CONFIG)
    for name, p in enc.named_parameters():
        if name.endswith("gate"):
            p.data.fill_(0.5)
    enc(_images(2, 1), torch.tensor([[3], [8]])).square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name


def test_local_positions_start_as_2d_sincos_that_name_each_tokens_row_and_column():
    from vision.encoder import sincos_2d

    table = sincos_2d(4, 32)  # [1 + 16, 32]: class token, then patches row by row
    assert table.shape == (17, 32) and not table[0].any()
    patches = table[1:].view(4, 4, 32)
    assert torch.equal(patches[2, 0, :16], patches[2, 3, :16])   # same row → same row channels
    assert torch.equal(patches[0, 1, 16:], patches[3, 1, 16:])   # same column → same column channels
    assert torch.cdist(table[1:], table[1:]).add(torch.eye(16)).min() > 0.1  # every patch is distinct
    encoder = build_encoder(create_config("tiny", tile_size=56))  # 4×4 patches of 14 px
    assert torch.equal(encoder.position_embedding.embedding.data, sincos_2d(4, encoder.config.width))
