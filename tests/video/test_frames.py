"""Frame sampling: uniform indices, decord and PyAV agree, documented behaviour on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
decord = pytest.importorskip("decord")

from video.frames import read_frames, sample_indices  # noqa: E402

H, W = 48, 64
RED_STEP = 20  # frame i has red = 10 + 20·i in its top half: the index survives the codec


def _frame(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 10 + RED_STEP * i
    img[..., 2] = 80
    img[H // 2:, (5 * i) % (W - 8):(5 * i) % (W - 8) + 8, 1] = 255  # a bar moving right
    return img


def _write_clip(path: Path, n_frames: int, codec: str = "libx264") -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=8)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    container.start_encoding()  # writes the header even when no frame follows (0-frame clip)
    for i in range(n_frames):
        container.mux(stream.encode(av.VideoFrame.from_ndarray(_frame(i), format="rgb24")))
    container.mux(stream.encode())
    container.close()
    return path


def _frame_ids(frames: torch.Tensor) -> list[int]:
    """Recover each decoded frame's source index from the red level of its top half."""
    red = frames[:, : frames.shape[1] // 2, :, 0].float().mean(dim=(1, 2))
    return [round((r - 10) / RED_STEP) for r in red.tolist()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    out = {
        "12": _write_clip(root / "twelve.mp4", 12),
        "3": _write_clip(root / "three.mp4", 3),
        "mpeg4": _write_clip(root / "mpeg4.mp4", 12, codec="mpeg4"),
        "zero_frames": _write_clip(root / "zero_frames.mp4", 0),
    }
    data = out["12"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video\n" * 50)
    out.update(truncated=root / "truncated.mp4", empty=root / "empty.mp4", not_video=root / "notes.mp4")
    return out


# -- sample_indices ---------------------------------------------------------------------------

@pytest.mark.parametrize("total,n", [(12, 4), (12, 12), (100, 7), (64, 64), (1000, 16)])
def test_indices_spread_over_whole_clip(total, n):
    idx = sample_indices(total, n)
    assert len(idx) == n and len(set(idx)) == n
    assert idx == sorted(idx) and 0 <= idx[0] and idx[-1] < total
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    assert idx[0] <= total // n and idx[-1] >= total - total // n - 1  # reaches both ends


@pytest.mark.parametrize("total,n", [(3, 8), (1, 5), (5, 6), (7, 64)])
def test_short_clip_is_padded_by_repetition(total, n):
    idx = sample_indices(total, n)
    assert len(idx) == n and idx == sorted(idx)
    assert set(idx) == set(range(total))  # every frame used, in order, some repeated
    counts = np.bincount(idx)
    assert counts.max() - counts.min() <= 1


def test_indices_reject_empty():
    with pytest.raises(ValueError):
        sample_indices(0, 4)
    with pytest.raises(ValueError):
        sample_indices(4, 0)


# -- decoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("clip,n", [("12", 4), ("12", 12), ("3", 8), ("mpeg4", 5)])
def test_read_frames_picks_sampled_indices(clips, backend, clip, n):
    frames = read_frames(clips[clip], n, backend=backend)
    assert frames.dtype == torch.uint8 and frames.shape == (n, H, W, 3)
    total = 3 if clip == "3" else 12
    assert _frame_ids(frames) == sample_indices(total, n)


@pytest.mark.parametrize("clip,n,size,tol", [("12", 6, None, 1.0), ("3", 8, None, 1.0),
                                             ("mpeg4", 6, None, 1.0), ("12", 6, (24, 32), 4.0)])
def test_decord_and_pyav_agree(clips, clip, n, size, tol):
    a = read_frames(clips[clip], n, size=size, backend="decord")
    b = read_frames(clips[clip], n, size=size, backend="pyav")
    assert a.shape == b.shape == (n, *(size or (H, W)), 3)
    assert _frame_ids(a) == _frame_ids(b)
    # Same decoder underneath; resizing differs only by the scalers' rounding.
    assert (a.float() - b.float()).abs().mean() < tol


def test_decord_bridge_left_as_found(clips):
    read_frames(clips["12"], 2, backend="decord")
    reader = decord.VideoReader(str(clips["12"]))
    assert hasattr(reader.get_batch([0]), "asnumpy")  # still decord's native NDArray


def test_resize_on_read(clips):
    frames = read_frames(clips["12"], 3, size=(32, 40))
    assert frames.shape == (3, 32, 40, 3)


def test_bytes_source_matches_path(clips):
    data = clips["12"].read_bytes()
    for backend in ("decord", "pyav"):
        assert torch.equal(read_frames(data, 5, backend=backend), read_frames(clips["12"], 5, backend=backend))


def test_auto_falls_back_to_pyav(clips, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(decord, "VideoReader", refuse)
    frames = read_frames(clips["12"], 4)
    assert _frame_ids(frames) == sample_indices(12, 4)
    with pytest.raises(ValueError, match="decord cannot open this"):
        read_frames(clips["12"], 4, backend="decord")


# -- bad input: ValueError with a one-line message naming the file -----------------------------

@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize("kind", ["truncated", "empty", "not_video", "zero_frames"])
def test_bad_input_raises_one_line_value_error(clips, kind, backend):
    path = clips[kind]
    with pytest.raises(ValueError) as info:
        read_frames(path, 4, backend=backend)
    message = str(info.value)
    assert path.name in message and "\n" not in message


def test_bad_bytes_are_named(clips):
    with pytest.raises(ValueError, match="shard-0/000007"):
        read_frames(b"garbage" * 10, 4, name="shard-0/000007")


def test_truncated_mid_stream_is_rejected(clips, tmp_path):
    # moov atom first, so the file opens and decoding runs into the cut.
    path = tmp_path / "faststart.mp4"
    container = av.open(str(path), "w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=8)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    for i in range(12):
        container.mux(stream.encode(av.VideoFrame.from_ndarray(_frame(i), format="rgb24")))
    container.mux(stream.encode())
    container.close()
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: 2 * len(data) // 3])
    with pytest.raises(ValueError, match="cut.mp4"):
        read_frames(cut, 12)


def test_num_frames_must_be_positive(clips):
    with pytest.raises(ValueError, match="num_frames"):
        read_frames(clips["12"], 0)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "nope.mp4", 4)
