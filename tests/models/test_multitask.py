"""MultiTaskModel end to end with every sharing strategy and the three head types; models stay trainer-free."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.heads import HEADS
from mtl_bench.models.backbone import build_backbone
from mtl_bench.models.multitask import MultiTaskModel
from mtl_bench.sharing import SHARINGS

from .tiny import BATCH, DIM, FRAMES, VOCAB, raw_input, settings

TASK_INPUTS = {"classify": [IMAGE, TEXT], "describe": [IMAGE], "tag": [VIDEO]}


def tiny_model(sharing: str) -> MultiTaskModel:
    def make_backbone():  # noqa: ANN202
        tiny = settings(image_size=16, image_channels=(8, 16), num_frames=FRAMES, max_text_len=8, heads=2)
        return build_backbone([IMAGE, TEXT, VIDEO], tiny)

    heads = nn.ModuleDict({
        "classify": HEADS.get("classifier")(DIM, 5),
        "describe": HEADS.get("caption")(DIM, VOCAB, heads=2, max_len=8),
        "tag": HEADS.get("tagger")(DIM, 4),
    })  # fmt: skip
    return MultiTaskModel(SHARINGS.get(sharing)(make_backbone, list(TASK_INPUTS)), heads)


@pytest.mark.parametrize("sharing", SHARINGS.names())
def test_multitask_model_serves_every_task(sharing: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(sharing)
    assert model.tasks == sorted(TASK_INPUTS)
    batch = {task: {m: raw_input(m) for m in modalities} for task, modalities in TASK_INPUTS.items()}
    ids = torch.randint(3, VOCAB, (BATCH, 6))
    ids[:, 0] = 1
    assert model("classify", batch["classify"]).shape == (BATCH, 5)
    assert model("tag", batch["tag"]).shape == (BATCH, 4)
    assert model("describe", batch["describe"], ids=ids).shape == (BATCH, 6, VOCAB)
    model.eval()
    captions = model.heads["describe"].generate(model.features("describe", batch["describe"]))
    assert captions.shape[0] == BATCH


def test_multitask_model_checks_heads_match_tasks() -> None:
    sharing = SHARINGS.get("hard")(lambda: build_backbone([IMAGE], settings(image_size=16)), ["x"])
    with pytest.raises(ValueError, match="heads exist"):
        MultiTaskModel(sharing, nn.ModuleDict({"y": HEADS.get("classifier")(DIM, 2)}))


def test_model_packages_never_import_trainers() -> None:
    code = (
        "import sys, mtl_bench.models.multitask, mtl_bench.models.backbone, mtl_bench.sharing, mtl_bench.heads;"
        "bad = {'lightning', 'pytorch_lightning', 'mlflow', 'optuna'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
