"""ChatSession on tiny random checkpoints: the prompt is the Llama 3 chat format with media tokens,
replies equal a direct `text.generate` call, every media kind reaches its adapter, bad files fail
with one clear error, and a guard screens both directions."""

from __future__ import annotations

import pytest
import torch

from chat.guard import Verdict
from chat.media import MAX_IMAGE_PIXELS, load_media
from chat.session import ChatSession, Settings
from text.chat_format import ChatFormat
from text.generate import generate

SETTINGS = Settings(max_new_tokens=6)


def test_text_history_is_the_llama3_chat_format(text_ckpt, tiny_tokenizer) -> None:
    session = ChatSession.load(text_ckpt, settings=SETTINGS, system="Be brief.")
    first = session.ask("Hello there")
    session.ask("And again?")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": first.text}, {"role": "user", "content": "Next"}]
    expected = ChatFormat(tiny_tokenizer).encode_dialog(messages, add_generation_prompt=True)
    history = session.turns[:2] + [type(session.turns[0])("user", "Next")]
    assert session.prompt_ids(history) == expected
    assert [t.role for t in session.turns] == ["user", "assistant", "user", "assistant"]
    session.reset()
    assert session.turns == [] and session.pending == []


def test_reply_equals_direct_generation_and_streams(text_ckpt, tiny_tokenizer) -> None:
    session = ChatSession.load(text_ckpt, settings=SETTINGS)
    parts: list[str] = []
    reply = session.ask("the river ran past a quiet garden", on_text=parts.append)
    prompt = ChatFormat(tiny_tokenizer).encode_dialog([{"role": "user", "content": "the river ran past a quiet garden"}],
                                                      add_generation_prompt=True)
    out = generate(session.model, [prompt], max_new_tokens=6, stop_tokens=tiny_tokenizer.stop_tokens)[0]
    assert reply.text == ChatFormat(tiny_tokenizer).decode_reply(out)
    assert "".join(parts).strip() == reply.text and reply.tokens == len(out)
    assert 0 < reply.first_token_s <= reply.seconds


def test_image_turn_reaches_the_adapter(image_model, tiny_tokenizer, media_files) -> None:
    session = ChatSession(image_model, tiny_tokenizer, settings=SETTINGS)
    session.add_media("image", media_files["photo"])
    with torch.no_grad():  # open the gates so the image changes the logits
        for name, p in image_model.named_parameters():
            if name.endswith(("gate.scale", "gate")):
                p.fill_(0.5)
    calls = []
    original = image_model.attach_images
    image_model.attach_images = lambda cache, pixels, ratio_ids: (calls.append(pixels.shape),
                                                                  original(cache, pixels, ratio_ids))
    try:
        session.ask("What is this?")
        session.ask("And now?")  # the image stays in the conversation
    finally:
        del image_model.attach_images
    V = tiny_tokenizer.vocab_size
    prompt = session.prompt_ids(session.turns)
    assert prompt.count(V) == 1 and prompt.index(V) == 1 + len(session.chat.encode_header("user"))
    tile = image_model.vision_encoder.config.tile_size
    assert calls == [torch.Size([1, 1, image_model.vision_encoder.config.max_tiles, 3, tile, tile])] * 2


def test_video_and_speech_turns(video_model, speech_model, tiny_tokenizer, media_files) -> None:
    video = ChatSession(video_model, tiny_tokenizer, settings=SETTINGS)
    video.add_media("video", media_files["clip"])
    assert video.ask("What happens?").tokens > 0
    with pytest.raises(ValueError, match="already has a video"):
        video.add_media("video", media_files["clip"])
    speech = ChatSession(speech_model, tiny_tokenizer, settings=SETTINGS)
    item = speech.add_media("audio", media_files["speech"])  # 44.1 kHz stereo → 16 kHz mono
    V = tiny_tokenizer.vocab_size
    assert item.tokens[0] == V + 2 and item.tokens[-1] == V + 3 and len(item.tokens) > 2
    assert item.tensors[0].shape[-1] == 80
    assert speech.ask("").tokens > 0  # a spoken turn with no text is answered like a text turn


@pytest.mark.parametrize("name, message", [("missing", "not found"), ("empty", "empty"),
                                           ("notes", "not a readable image"), ("huge", "pixels")])
def test_bad_image_files_fail_with_one_line(image_model, media_files, name, message) -> None:
    path = media_files.get(name, media_files["photo"].parent / "missing.png")
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        load_media(image_model, "image", path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert 8000 * 8000 > MAX_IMAGE_PIXELS


def test_media_the_checkpoint_cannot_take(text_ckpt, media_files) -> None:
    session = ChatSession.load(text_ckpt, settings=SETTINGS)
    for kind, name in (("image", "photo"), ("video", "clip"), ("audio", "speech")):
        with pytest.raises(ValueError, match=f"takes no {kind} input"):
            session.add_media(kind, media_files[name])
    with pytest.raises(ValueError, match="not readable audio"):
        load_media(SpeechStub(), "audio", media_files["notes"])


class SpeechStub(torch.nn.Module):
    """Claims speech input; decoding fails before the model is used."""

    def attach_speech(self, cache, feats, lengths) -> None:  # pragma: no cover - never reached
        raise AssertionError


class FakeGuard:
    """Flags any text containing "bomb"; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def check(self, conversation, role="user") -> Verdict:
        self.calls.append((role, conversation[-1]["content"]))
        bad = "bomb" in conversation[-1]["content"]
        return Verdict("unsafe" if bad else "safe", "S9" if bad else None, "")


def test_guard_screens_requests_and_replies(text_ckpt) -> None:
    guard = FakeGuard()
    session = ChatSession.load(text_ckpt, settings=SETTINGS, guard=guard)
    blocked = session.ask("how do I build a bomb")
    assert blocked.blocked == "request unsafe S9 (Indiscriminate Weapons)" and session.turns == []
    shown: list[str] = []
    reply = session.ask("hello", on_text=shown.append)
    assert reply.blocked is None and [r for r, _ in guard.calls] == ["user", "user", "agent"]
    assert shown == [reply.text]  # with a guard the reply is shown whole, after its check
    guard.check = lambda conversation, role="user": Verdict("unsafe" if role == "agent" else "safe", "S1", "")
    blocked = session.ask("hello again")
    assert blocked.blocked == "response unsafe S1 (Violent Crimes)" and len(session.turns) == 2
