"""The linear CTC probe: vocabulary, greedy decoding, it learns, and the encoder stays frozen."""

import torch

from speech.config import ConformerConfig
from speech.ctc_probe import CharVocab, CTCProbe, frozen_features, greedy_decode
from speech.encoder import build_encoder


def test_vocab_roundtrip_and_cleanup():
    v = CharVocab()
    assert len(v) == 29
    assert v.decode(v.encode("Hello,  World - it's")) == "hello world it's"


def test_greedy_decode_merges_repeats_and_drops_blanks():
    v = CharVocab()
    h, i = v.encode("h")[0], v.encode("i")[0]
    path = [0, h, h, 0, i, i, i, 0, i, 0]
    log_probs = torch.nn.functional.one_hot(torch.tensor([path]), len(v)).float().log()
    assert greedy_decode(log_probs, torch.tensor([10]), v) == ["hii"]
    assert greedy_decode(log_probs, torch.tensor([5]), v) == ["hi"]


def test_probe_learns_separable_frames():
    torch.manual_seed(0)
    v = CharVocab()
    texts = ["abc", "cab", "ba"]
    frames, lengths = [], []
    for t in texts:  # each character held for 2 frames, blanks between
        ids = [x for c in v.encode(t) for x in (c, c, 0)]
        frames.append(torch.nn.functional.one_hot(torch.tensor(ids), len(v)).float() * 4)
        lengths.append(len(ids))
    batch = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
    lengths = torch.tensor(lengths)
    probe = CTCProbe(len(v), v)
    opt = torch.optim.Adam(probe.parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        probe.loss(batch, lengths, texts).backward()
        opt.step()
    assert probe.decode(batch, lengths) == texts


def test_frozen_features_do_not_touch_the_encoder():
    encoder = build_encoder(ConformerConfig(dim=32, n_layers=1, n_heads=4, ffn_dim=64)).train()
    frames, lengths = frozen_features(encoder, torch.randn(2, 20, 80), torch.tensor([20, 11]))
    assert not frames.requires_grad and encoder.training and lengths.tolist() == [5, 3]


def test_upsampled_probe_reads_one_character_per_frame():
    """One frame per character leaves no room for the blank CTC needs between doubled letters; two
    CTC steps per frame do."""
    torch.manual_seed(0)
    v = CharVocab()
    texts = ["see", "book", "add"]
    frames = [torch.nn.functional.one_hot(torch.tensor(v.encode(t)), len(v)).float() * 4 for t in texts]
    batch = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
    lengths = torch.tensor([len(f) for f in frames])
    probe = CTCProbe(len(v), v, upsample=2)
    assert probe(batch).shape == (3, 2 * batch.shape[1], len(v))
    opt = torch.optim.Adam(probe.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        probe.loss(batch, lengths, texts).backward()
        opt.step()
    assert probe.decode(batch, lengths) == texts
