"""read_clip on real (tiny) mp4 and webm files: uniform sampling, centre crop, the .npy cache, and bad files.

Each test encodes its own clips with `write_clip`. Frame k of a test clip is one solid grey level, far enough from
its neighbours (12 levels apart) to survive lossy compression, so the grey of each returned frame says which
source frame it came from.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mtl_bench.data.sources.files import video as video_files
from mtl_bench.data.sources.files.video import VideoReadError, read_clip, resize_crop, sample_indices, write_clip

TOLERANCE = 6  # grey levels a solid frame may drift through yuv420p and lossy coding
GREEN, RED = (40, 160, 60), (200, 40, 40)


def grey(k: int) -> int:
    return 20 + 12 * k


def grey_clip(num: int, height: int = 32, width: int = 48) -> np.ndarray:
    """`num` solid frames, frame k at grey level grey(k)."""
    return np.stack([np.full((height, width, 3), grey(k), dtype=np.uint8) for k in range(num)])


def assert_greys(clip: np.ndarray, expected: list[int]) -> None:
    levels = clip.reshape(len(clip), -1).astype(int)
    want = np.array(expected)[:, None]
    assert np.abs(levels - want).max() <= TOLERANCE, f"frame greys {levels.mean(axis=1).round(1)}, want {expected}"


def bordered_frame(height: int, width: int, border: int) -> np.ndarray:
    """GREEN, with RED bands `border` pixels wide at both ends of the longer side."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = GREEN
    if width > height:
        frame[:, :border] = frame[:, width - border :] = RED
    else:
        frame[:border] = frame[height - border :] = RED
    return frame


def write_wav(path: Path) -> None:
    """A tenth of a second of silence: a real media file with an audio stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize(
    ("n", "num_frames", "expected"),
    [(16, 4, [2, 6, 10, 14]), (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]), (5, 5, [0, 1, 2, 3, 4]), (1, 3, [0, 0, 0]),
     (10, 1, [5]), (7, 2, [1, 5])],
)  # fmt: skip
def test_sample_indices_are_segment_centres(n: int, num_frames: int, expected: list[int]) -> None:
    assert sample_indices(n, num_frames) == expected


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_reads_uniform_frames_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_clip(path, grey_clip(16))
    clip = read_clip(path, num_frames=4, size=16)
    assert clip.shape == (4, 16, 16, 3) and clip.dtype == np.uint8
    assert_greys(clip, [grey(k) for k in (2, 6, 10, 14)])


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_short_clip_repeats_frames_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"short{suffix}"
    write_clip(path, grey_clip(3))
    clip = read_clip(str(path), num_frames=8, size=8)
    assert clip.shape == (8, 8, 8, 3)
    assert_greys(clip, [grey(k) for k in (0, 0, 0, 1, 1, 2, 2, 2)])


@pytest.mark.parametrize("hint", [None, 5, 40])
def test_wrong_container_frame_count_is_not_trusted(tmp_path: Path, monkeypatch, hint: int | None) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, grey_clip(16))
    monkeypatch.setattr(video_files, "_frame_count_hint", lambda container: hint)
    assert_greys(read_clip(path, num_frames=4, size=16), [grey(k) for k in (2, 6, 10, 14)])


def test_resize_crop_keeps_the_centre_square() -> None:
    # 96x64 -> 48x32 -> columns 8..40 kept, i.e. source columns 16..80; the 12-pixel red bands are cut away.
    out = resize_crop(Image.fromarray(bordered_frame(64, 96, border=12)), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out == GREEN).all()


@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 64)])
def test_non_square_video_is_centre_cropped(tmp_path: Path, height: int, width: int) -> None:
    path = tmp_path / "wide.mp4"
    write_clip(path, np.stack([bordered_frame(height, width, border=12)] * 4))
    clip = read_clip(path, num_frames=2, size=32)
    assert clip.shape == (2, 32, 32, 3)
    assert np.abs(clip.astype(int) - GREEN).max() <= 3 * TOLERANCE  # a squashed frame would keep red columns


def test_cache_skips_decoding_and_follows_the_file(tmp_path: Path, monkeypatch) -> None:
    path, cache = tmp_path / "clip.mp4", tmp_path / "cache"
    write_clip(path, grey_clip(16))
    first = read_clip(path, 4, 16, cache_dir=cache)
    assert [p.suffix for p in cache.iterdir()] == [".npy"]  # one entry, no temporary file left behind

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(video_files.av, "open", no_decoding)
    np.testing.assert_array_equal(read_clip(path, 4, 16, cache_dir=cache), first)
    with pytest.raises(AssertionError, match="decoded"):  # other parameters, other key
        read_clip(path, 4, 8, cache_dir=cache)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded"):  # same bytes, newer mtime: decoded again
        read_clip(path, 4, 16, cache_dir=cache)

    monkeypatch.undo()
    write_clip(path, grey_clip(16)[::-1])  # rewritten: frames now run from light to dark
    assert_greys(read_clip(path, 4, 16, cache_dir=cache), [grey(k) for k in (13, 9, 5, 1)])


def test_unreadable_cache_file_is_rewritten(tmp_path: Path) -> None:
    path, cache = tmp_path / "clip.webm", tmp_path / "cache"
    write_clip(path, grey_clip(6))
    first = read_clip(path, 3, 8, cache_dir=cache)
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(b"half a file")
    np.testing.assert_array_equal(read_clip(path, 3, 8, cache_dir=cache), first)
    np.testing.assert_array_equal(np.load(entry), first)


def _missing(path: Path) -> None:
    pass


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    write_clip(path, grey_clip(16))
    path.write_bytes(path.read_bytes()[:200])


def _text(path: Path) -> None:
    path.write_text("this is not a video\n" * 20)


def _directory(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [("missing.mp4", _missing, "no such file"), ("empty.mp4", _empty, "empty file"),
     ("truncated.mp4", _truncated, "cannot open"), ("notes.mp4", _text, "cannot open"),
     ("sound.wav", write_wav, "no video stream"), ("folder.mp4", _directory, "not a regular file")],
)  # fmt: skip
def test_bad_files_raise_video_read_error(tmp_path: Path, name: str, make, reason: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(VideoReadError) as info:
        read_clip(path, 4, 16, cache_dir=tmp_path / "cache")
    err = info.value
    assert isinstance(err, ValueError) and type(err) is VideoReadError  # never a PyAV class
    message = str(err)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    assert str(pickle.loads(pickle.dumps(err))) == message  # crosses DataLoader worker processes intact
    assert not (tmp_path / "cache").exists()


def test_still_image_reads_as_a_one_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), grey(5), dtype=np.uint8)).save(path)
    assert_greys(read_clip(path, 3, 8), [grey(5)] * 3)


@pytest.mark.parametrize(("name", "shape"), [("odd.mp4", (2, 31, 48, 3)), ("clip.avi", (2, 32, 48, 3))])
def test_write_clip_rejects_what_it_cannot_write(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=name):
        write_clip(tmp_path / name, np.zeros(shape, dtype=np.uint8))
