"""The video model: exact no-op at zero gates, key sets, schedule, masks, trainable set, cached
decoding with a video (llama3-spec §4)."""

import pytest
import torch

from adapters.policies import apply_policy, trainable_names, video_adapter_policy
from adapters.video_fusion import VIDEO_MODULES, build_video_fusion_model, from_spec, video_schedule
from fusion_fixtures import TEXT, V, open_gates, sample_batch
from video.config import create_config

VIDEO = V + 1  # <|video|>


@pytest.fixture
def video_model(fused):
    torch.manual_seed(2)
    return build_video_fusion_model(fused, create_config("tiny", dim=TEXT.dim))


def clip_batch(n_frames: int = 8, T: int = 14, seed: int = 3):
    """Two rows: row 0 has <|video|> at t=3, row 1 at t=6; one clip of n_frames one-tile frames each."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (2, T), generator=g)
    tokens[0, 3] = VIDEO
    tokens[1, 6] = VIDEO
    return tokens, torch.randn(2, n_frames, 1, 3, 56, 56, generator=g)


@pytest.mark.parametrize("image_schedule, expected", [([5], [5]), ([1, 3], [3]), ([3, 7, 11, 15], [15]),
                                                      (list(range(3, 32, 4)), [15, 31])])
def test_video_schedule_every_fourth_image_block_from_the_last(image_schedule, expected):
    assert video_schedule(image_schedule) == expected


def test_zero_gates_give_the_image_model_logits_bit_for_bit(fused, video_model):
    open_gates(fused)  # the image path is "trained"; the new video gates are zero
    for name, p in video_model.video_params().items():
        if name.endswith("gate.scale"):
            p.data.zero_()
    tokens, images, ratio_ids = sample_batch()
    tokens[0, 7] = VIDEO
    clip = torch.randn(2, 8, 1, 3, 56, 56)
    with torch.no_grad():
        ref = fused(tokens, images=images, ratio_ids=ratio_ids)
        out = video_model(tokens, images=images, ratio_ids=ratio_ids, video=clip)
    assert torch.equal(out, ref)


def test_image_keys_unchanged_and_an_image_checkpoint_loads_with_exactly_the_video_keys_missing(fused, video_model):
    image_keys = set(fused.state_dict())
    video_keys = video_model.video_state_keys()
    assert set(video_model.state_dict()) == image_keys | video_keys
    assert video_keys and all(k.split(".")[0] in VIDEO_MODULES for k in video_keys)
    fresh = from_spec(video_model.spec())
    assert set(fresh.load_image_state_dict(fused.state_dict())) == video_keys
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in fused.state_dict().items())
    with pytest.raises(ValueError, match="does not fit"):
        fresh.load_image_state_dict({k: v for k, v in fused.state_dict().items() if "vision_projection" not in k})


def test_spec_rebuilds_the_same_model(video_model):
    spec = video_model.spec()
    assert spec["arch"] == "llama3-video" and spec["resampler"]["dim"] == TEXT.dim
    rebuilt = from_spec(spec)
    rebuilt.load_state_dict(video_model.state_dict(), strict=True)
    open_gates(video_model)
    open_gates(rebuilt)
    tokens, clip = clip_batch()
    with torch.no_grad():
        assert torch.equal(rebuilt(tokens, video=clip), video_model(tokens, video=clip))


@pytest.mark.parametrize("n_frames", [1, 5, 8, 12, 16])
def test_aggregated_video_tokens_per_frame_count(video_model, n_frames):
    _, clip = clip_batch(n_frames)
    features = video_model.frame_features(clip)
    tokens_per_tile = video_model.vision_encoder.config.tokens_per_tile
    assert features.shape == (2, n_frames, tokens_per_tile, TEXT.dim)
    tokens, valid = video_model.aggregate(features)
    groups = -(-n_frames // 8)
    assert tokens.shape == (2, groups * 8, TEXT.dim) and valid.shape == (2, groups) and valid.all()


def test_text_attends_the_video_it_follows_only(fused, video_model):
    open_gates(video_model)
    tokens, clip = clip_batch()
    with torch.no_grad():
        ref = fused(tokens)
        out = video_model(tokens, video=clip)
        other = video_model(tokens, video=torch.randn_like(clip))
    assert torch.equal(out[0, :3], ref[0, :3]) and torch.equal(out[1, :6], ref[1, :6])
    assert not torch.allclose(out[0, 3:], ref[0, 3:])
    assert not torch.allclose(out[0, 3:], other[0, 3:])


def test_trainable_set_is_exactly_the_video_path(fused, video_model):
    names = video_adapter_policy(video_model)
    apply_policy(video_model, names)
    assert trainable_names(video_model) == names == set(video_model.video_params())
    assert names.isdisjoint(fused.state_dict())  # LM, encoder, projection, image blocks, new rows: frozen
    assert any(n.startswith("video_aggregator.") for n in names)
    assert any(n.startswith("video_cross_attention_layers.") for n in names)
    open_gates(video_model)
    tokens, clip = clip_batch()
    logits = video_model(tokens, video=clip)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].clamp(max=V - 1).flatten()).backward()
    for name, p in video_model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_cached_decoding_equals_full_forward_with_a_video(video_model):
    open_gates(video_model)
    tokens, clip = clip_batch(n_frames=12, T=16)
    with torch.no_grad():
        full = video_model(tokens, video=clip)
        cache = video_model.new_cache(2, 32)
        steps = [video_model(tokens[:, :5], video=clip, cache=cache)]  # row 1's <|video|> comes while decoding
        steps += [video_model(tokens[:, t:t + 1], cache=cache) for t in range(5, 16)]
        attached = video_model.new_cache(2, 32)
        video_model.attach_video(attached, clip)
        prefill = video_model(tokens, cache=attached)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(prefill, full, rtol=1e-4, atol=1e-5)


def test_greedy_generate_with_an_attached_video_follows_the_full_forward(video_model):
    from text.generate import generate

    open_gates(video_model)
    tokens, clip = clip_batch(T=12)
    out = generate(video_model, tokens.tolist(), max_new_tokens=4,
                   attach=lambda c: video_model.attach_video(c, clip))
    with torch.no_grad():
        full = video_model(torch.cat([tokens, torch.tensor(out)[:, :-1]], 1), video=clip)
    assert torch.equal(full[:, 11:].argmax(-1), torch.tensor(out))


def test_the_caption_word_head_is_in_the_spec_and_trainable_set_and_the_forward_ignores_it(fused):
    torch.manual_seed(2)
    plain = build_video_fusion_model(fused, create_config("tiny", dim=TEXT.dim))
    with_head = build_video_fusion_model(fused, create_config("tiny", dim=TEXT.dim), word_head=True)
    assert not plain.spec()["word_head"] and plain.video_word_head is None
    rebuilt = from_spec(with_head.spec())
    rebuilt.load_state_dict(with_head.state_dict(), strict=True)  # the head's keys round-trip
    names = video_adapter_policy(with_head)
    assert {n for n in names if n.startswith("video_word_head.")} == {"video_word_head.proj.weight"}
    tokens = torch.randint(0, V, (1, 6))
    tokens[0, 1] = V + 1
    features = torch.randn(1, 8, 17, TEXT.dim)
    with_head.load_state_dict({**plain.state_dict(), **{k: v for k, v in with_head.state_dict().items()
                                                        if k.startswith("video_word_head.")}})
    with torch.no_grad():
        assert torch.equal(with_head(tokens, video_features=features), plain(tokens, video_features=features))
        words = with_head.caption_word_logits(with_head.aggregate(features)[0])
    assert words.shape == (1, with_head.output.out_features)
    with pytest.raises(ValueError, match="no caption-word head"):
        plain.caption_word_logits(plain.aggregate(features)[0])


def test_aggregated_tokens_stand_in_for_the_clip(video_model):
    """A loss that reads the latents too runs the aggregator once and hands its output over."""
    open_gates(video_model)
    for name, p in video_model.video_params().items():
        if name.endswith("gate.scale"):
            p.data.fill_(0.5)
    tokens, clip = clip_batch()
    with torch.no_grad():
        features = video_model.frame_features(clip)
        ref = video_model(tokens, video=clip)
        out = video_model(tokens, aggregated=video_model.aggregate(features))
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    assert not torch.allclose(video_model(tokens), ref, atol=1e-3)  # the clip is read
