"""The assembled all-component model: exactly the video model on image/video prompts, exactly the
speech model on speech prompts, refuses parents with different LMs, and round-trips through
`herd assemble` + `train.models.load_model`."""

import pytest
import torch

from adapters.multimodal import assemble
from adapters.speech_fusion import build_speech_fusion, speech_span
from adapters.video_fusion import build_video_fusion_model
from fusion_fixtures import TEXT, V, open_gates, sample_batch
from speech.config import create_config as speech_config
from text.model import Transformer
from video.config import create_config as video_config


@pytest.fixture
def parents(lm, fused):
    torch.manual_seed(2)
    video = build_video_fusion_model(fused, video_config("tiny", dim=TEXT.dim))
    torch.manual_seed(3)
    speech = build_speech_fusion(lm, speech_config("tiny"))
    for model in (video, speech):
        open_gates(model)
        with torch.no_grad():  # the stages train these rows; make them differ between parents
            model.learnable_embedding.weight.normal_()
    return video.eval(), speech.eval()


def speech_prompt(speech, n_frames: int = 40, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, n_frames, 80, generator=g)
    lengths = torch.tensor([n_frames])
    span = speech_span(speech.speech_lengths(lengths)[0], V)
    tokens = torch.cat([torch.randint(0, V, (3,), generator=g), span, torch.randint(0, V, (4,), generator=g)])
    return tokens[None], feats, lengths


def test_assembled_model_matches_each_parent(parents):
    video, speech = parents
    model = assemble(video, speech).eval()
    tokens, images, ratio_ids = sample_batch()
    clip = torch.randn(2, 8, 1, 3, 56, 56)
    tokens[:, 1] = V + 1  # a <|video|> before each row's image
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, images=images, ratio_ids=ratio_ids, video=clip),
                                   video(tokens, images=images, ratio_ids=ratio_ids, video=clip))
        s_tokens, feats, lengths = speech_prompt(speech)
        torch.testing.assert_close(model(s_tokens, feats=feats, feat_lengths=lengths),
                                   speech(s_tokens, feats, lengths))


def test_speech_attached_to_the_cache_equals_the_full_forward(parents):
    from text.generate import generate

    video, speech = parents
    model = assemble(video, speech).eval()
    tokens, feats, lengths = speech_prompt(speech)
    out = generate(model, tokens.tolist(), max_new_tokens=3, attach=lambda c: model.attach_speech(c, feats, lengths))
    with torch.no_grad():
        full = model(torch.cat([tokens, torch.tensor(out)[:, :-1]], 1), feats=feats, feat_lengths=lengths)
    assert torch.equal(full[:, tokens.shape[1] - 1:].argmax(-1), torch.tensor(out))


def test_parents_with_different_lms_are_refused(parents):
    video, _ = parents
    torch.manual_seed(9)
    other = build_speech_fusion(Transformer(TEXT), speech_config("tiny"))
    with pytest.raises(ValueError, match="different LMs"):
        assemble(video, other)


def test_herd_assemble_writes_a_checkpoint_load_model_rebuilds(parents, tmp_path, tiny_tokenizer_dir):
    from herd.cli import main
    from train.checkpoint import save_checkpoint
    from train.models import load_model

    video, speech = parents
    for name, model in (("video", video), ("speech", speech)):
        save_checkpoint(tmp_path / name, model.state_dict(), {"stage": name, "finished": True, "model": model.spec()},
                        tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    assert main(["assemble", "--video", str(tmp_path / "video"), "--speech", str(tmp_path / "speech"),
                 "--out", str(tmp_path / "final")]) == 0
    model, meta = load_model(tmp_path / "final")
    assert meta["model"]["arch"] == "llama3-multimodal" and len(meta["parents"]) == 2
    tokens, feats, lengths = speech_prompt(speech)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, feats=feats, feat_lengths=lengths), speech(tokens, feats, lengths))
    assert main(["assemble", "--video", str(tmp_path / "speech"), "--speech", str(tmp_path / "video"),
                 "--out", str(tmp_path / "bad")]) == 2
