"""Video files (mp4, webm, anything FFmpeg reads) as fixed-size uint8 clips for the data loaders.

`read_clip(path, num_frames=T, size=S)` returns a [T, S, S, 3] RGB uint8 array. Sampling is uniform over the frames
actually decoded: the video's n frames are cut into T equal segments and the frame under each segment's centre is
taken, index ``floor((i + 0.5) * n / T)`` for i in 0..T-1 (`sample_indices`, exact integer arithmetic). A video
shorter than T frames therefore repeats frames, still in order and still evenly spread. Container frame counts
can be 0 or wrong, so they are only a hint: the first decoding pass keeps the frames the hint predicts and counts
the real n, and a second pass runs only when the count disagrees. Each kept frame is resized (PIL, bilinear) so its
shorter side is S, then centre-cropped to S x S. Display rotation and non-square pixels are not applied.

Cache: with `cache_dir`, the clip is stored as ``cache_dir/<sha256 hex>.npy``, the hash taken over the resolved
path, file size, mtime_ns, T, S and `CACHE_VERSION`; a later call with the same file and parameters loads it
without decoding, and rewriting the file changes the key. Files are written to a temporary name in the same folder
and renamed into place, so a concurrent reader sees either no file or a complete one; a cache file that cannot be
read or has the wrong shape is ignored and rewritten. Bump `CACHE_VERSION` when the sampling or resizing changes.

Any problem with the video itself (missing, empty, truncated, corrupt, no video stream, no decodable frame) raises
`VideoReadError`, a ValueError whose one-line message names the file and the reason; data loaders catch it to
count and skip the row. No PyAV exception class escapes `read_clip`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image

CACHE_VERSION = 1  # part of every cache key: bump it when read_clip's output for a given file changes

_MP4_CODECS = ("libx264", "mpeg4")  # first one this PyAV build can encode wins
_WEBM_CODECS = ("libvpx-vp9", "libvpx")
_ENCODER_OPTIONS = {"libx264": {"crf": "18"}, "libvpx-vp9": {"crf": "20", "b": "0"}, "libvpx": {"crf": "10"}}
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError)  # what decoding a bad file can raise


class VideoReadError(ValueError):
    """A video file that cannot be read as a clip; ``str(exc)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(reason.split())  # FFmpeg messages may carry newlines
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type[VideoReadError], tuple[str, str]]:  # survives DataLoader worker pickling
        return type(self), (self.path, self.reason)


def sample_indices(n: int, num_frames: int) -> list[int]:
    """Indices of the frames under the centres of `num_frames` equal segments of `n` frames (repeats when n < T)."""
    if n < 1 or num_frames < 1:
        raise ValueError(f"need n >= 1 and num_frames >= 1, got n={n}, num_frames={num_frames}")
    return [(2 * i + 1) * n // (2 * num_frames) for i in range(num_frames)]


def resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize (bilinear) so the shorter side is `size`, centre-crop to size x size; uint8 [size, size, 3] RGB."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def read_clip(path: str | Path, num_frames: int, size: int, cache_dir: str | Path | None = None) -> np.ndarray:
    """`num_frames` frames sampled uniformly over the whole video, each size x size: uint8 [T, size, size, 3] RGB."""
    if num_frames < 1 or size < 1:
        raise ValueError(f"num_frames and size must be >= 1, got num_frames={num_frames}, size={size}")
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise VideoReadError(path, "no such file") from None
    except OSError as exc:
        raise VideoReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if stat.st_size == 0:
        raise VideoReadError(path, "empty file")

    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{_cache_key(path, stat, num_frames, size)}.npy"
        cached = _load_cached(cache_file, (num_frames, size, size, 3))
        if cached is not None:
            return cached
    clip = _decode_clip(path, num_frames, size)
    if cache_file is not None:
        _save_atomic(cache_file, clip)
    return clip


def write_clip(path: str | Path, frames: np.ndarray, fps: int = 8, codec: str | None = None) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames (H, W even) as .mp4 (H.264, else MPEG-4) or .webm (VP9, else VP8)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"{path}: frames must be uint8 [T>0, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"{path}: yuv420p needs even height and width, got {height}x{width}")
    candidates = {".mp4": _MP4_CODECS, ".webm": _WEBM_CODECS}.get(path.suffix.lower())
    if candidates is None:
        raise ValueError(f"{path}: unknown video suffix {path.suffix!r}, expected .mp4 or .webm")
    codec = codec or next((name for name in candidates if _can_encode(name)), candidates[-1])
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=_ENCODER_OPTIONS.get(codec, {}))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        container.mux(stream.encode(None))  # flush delayed frames


def _can_encode(codec: str) -> bool:
    try:
        av.Codec(codec, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        return False
    return True


def _cache_key(path: Path, stat: os.stat_result, num_frames: int, size: int) -> str:
    fields = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, num_frames, size, CACHE_VERSION]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def _load_cached(cache_file: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached clip, or None when absent, unreadable or not the expected shape (it is then rewritten)."""
    try:
        clip = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return clip if clip.shape == shape and clip.dtype == np.uint8 else None


def _save_atomic(cache_file: Path, clip: np.ndarray) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.stem}.{uuid.uuid4().hex}.tmp")  # hidden, unique per writer
    try:
        with open(tmp, "xb") as f:  # unlike mkstemp, keeps the umask's permissions for a shared cache
            np.save(f, clip)
        os.replace(tmp, cache_file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _video_errors(path: Path, action: str) -> Iterator[None]:
    """Turn whatever PyAV, FFmpeg or PIL raise about a bad file into a one-line VideoReadError."""
    try:
        yield
    except VideoReadError:
        raise
    except _AV_ERRORS as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise VideoReadError(path, f"cannot {action}: {reason}") from exc


def _decode_clip(path: Path, num_frames: int, size: int) -> np.ndarray:
    """One decoding pass when the container's frame count is right, two when it is missing or wrong."""
    with _video_errors(path, "open"), av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream")
        hint = _frame_count_hint(container)
        wanted = set(sample_indices(hint, num_frames)) if hint else set()
        with _video_errors(path, "decode"):
            n, kept = _decode_pass(container, wanted, size, stop_early=False)
    if n == 0:
        raise VideoReadError(path, "no decodable video frames")
    indices = sample_indices(n, num_frames)
    missing = set(indices) - kept.keys()
    if missing:  # the container's count was wrong: decode again for the frames the true count selects
        with _video_errors(path, "decode"), av.open(str(path)) as container:
            _, more = _decode_pass(container, missing, size, stop_early=True)
        kept.update(more)
        if set(indices) - kept.keys():
            raise VideoReadError(path, f"decoded {n} frames, then fewer on a second pass")
    return np.stack([kept[i] for i in indices])


def _decode_pass(
    container: av.container.InputContainer, wanted: set[int], size: int, stop_early: bool
) -> tuple[int, dict[int, np.ndarray]]:
    """Decode the first video stream: (frames decoded, {index: resized crop} for the wanted indices)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    kept: dict[int, np.ndarray] = {}
    n = 0
    last = max(wanted, default=-1)
    for frame in container.decode(stream):
        if n in wanted:
            kept[n] = resize_crop(frame.to_image(), size)
        n += 1
        if stop_early and n > last:
            break
    return n, kept


def _frame_count_hint(container: av.container.InputContainer) -> int | None:
    """The container's idea of the frame count (stored count, else duration x frame rate); may be wrong."""
    stream = container.streams.video[0]
    if stream.frames > 0:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    else:
        return None
    return max(1, round(seconds * float(rate))) if rate else None
