"""``distill``'s student config: the teacher's run config with a smaller model, checked before anything is loaded.

Config work only (no torch): the CLI checks a distillation's every input (the teacher folder, the student size,
profile, ``--set`` keys and values, temperature and alpha) before any heavy import; ``commands/distill.py`` uses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtl_bench.config.check import check_names
from mtl_bench.config.load import apply_set, deep_merge, parse_set, profile_overrides, validate
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError, field_error

# Student sizes: model settings laid over the teacher's (fewer layers and less width).
STUDENTS: dict[str, dict[str, Any]] = {
    "small": {"dim": 64, "heads": 2, "image_channels": [16, 32]},
    "tiny": {"dim": 32, "heads": 2, "image_channels": [8, 16]},
}


def student_config(teacher: RunConfig, size: str, profile: str | None, sets: list[str]) -> RunConfig:
    """The teacher's config with the student's model size, the profile's training settings and ``--set``s.

    The data settings stay the teacher's: a student must learn and be tested on the teacher's data.
    """
    if size not in STUDENTS:
        raise UserError(f"--student {size!r}: expected one of {', '.join(STUDENTS)}")
    raw = teacher.model_dump(mode="json")
    raw["model"] = raw["model"] | STUDENTS[size] | {"init_from": None}
    if profile is not None:
        raw = deep_merge(raw, {"train": profile_overrides(profile).get("train", {})}) | {"profile": profile}
    for item in sets:
        path, value = parse_set(item)
        raw = apply_set(raw, path, value, item)
    cfg = validate(raw, "--set" if sets else "student config")
    if cfg.data != teacher.data:
        raise UserError("distill: --set may not change data.* settings (the student learns on the teacher's data)")
    return cfg


def check_distill(
    teacher_dir: Path, student: str, profile: str | None, sets: list[str], temperature: float, alpha: float
) -> RunConfig:
    """The student's config, after every check that needs no model: a UserError names what is wrong."""
    if not 0 <= alpha <= 1 or temperature <= 0:
        raise UserError(f"distill: expected --alpha in [0, 1] and --temperature > 0, got {alpha} and {temperature}")
    for name in ("results.json", "config.json", "checkpoints/best.ckpt"):
        if not (teacher_dir / name).is_file():
            raise UserError(f"--teacher {teacher_dir}: no {name} (expected a finished `mtl-bench run` folder)")
    config_file = teacher_dir / "config.json"
    try:
        teacher = RunConfig.model_validate(json.loads(config_file.read_text()))
    except (OSError, ValueError) as exc:
        why = field_error(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise UserError(f"{config_file}: not a run config: {why}") from None
    cfg = student_config(teacher, student, profile, sets)
    check_names(cfg)
    return cfg
