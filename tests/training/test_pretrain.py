"""``mtl-bench pretrain`` writes encoder weights that ``run --init-from`` loads into every backbone; misfits fail."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from mtl_bench.config.load import build_config
from mtl_bench.data.prepare import prepare_suite
from mtl_bench.errors import UserError
from mtl_bench.models.build import build_model
from mtl_bench.models.init_from import backbones, load_encoders
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.pretrainer import pair_sources
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_dir, tracking_uri) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain") / "pre"
    result = run_cli("pretrain", "--suite", "ecommerce", "--profile", "smoke", "--output-dir", str(out),
                     "--tracking-uri", tracking_uri, "--set", f"data.dir={data_dir}", "--set", "train.progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "text->image Recall@1" in result.stdout
    return out, json.loads((out / "pretrain.json").read_text())


def smoke(data_dir: Path, *sets: str):
    cfg = build_config("ecommerce", "smoke", sets=[f"data.dir={data_dir}", *sets])
    return cfg, prepare_suite(suite_tasks("ecommerce"), cfg.data)


def test_pairs_are_the_tasks_with_a_picture_and_a_text(data_dir):
    _, prepared = smoke(data_dir)
    sources = pair_sources(prepared)
    assert sorted(sources) == ["product-classification", "product-search"]  # captioning / video: no text input
    pairs = sources["product-search"]["train"]
    assert sorted(pairs.inputs) == ["image", "text"]
    assert torch.equal(pairs.inputs["text"], prepared.splits["product-search"]["train"].inputs["text"])


def test_summary_and_checkpoint(pretrained):
    out, summary = pretrained
    assert len(summary["history"]) == 2  # smoke: 2 epochs, one row each
    last = summary["history"][-1]
    assert 0.0 <= last["product-search/t2i_r1"] <= 1.0 and last["temperature"] > 0
    assert summary["pairs"]["product-search"]["train"] == 192
    ckpt = torch.load(io.BytesIO((out / "pretrained.pt").read_bytes()), weights_only=True)
    keys = list(ckpt["encoders"])
    assert any(k.startswith("image.") for k in keys) and any(k.startswith("text.") for k in keys)
    # only what the pairs trained: the video encoder's frame encoder (the image encoder) but not its temporal layers
    video = [k for k in keys if k.startswith("video.")]
    assert video and all(k.startswith("video.frame_encoder.") for k in video)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("sharing", ["hard", "single-task"])
def test_init_from_loads_every_backbone(pretrained, data_dir, sharing):
    out, _ = pretrained
    cfg, prepared = smoke(data_dir, f"model.init_from={out / 'pretrained.pt'}", f"sharing.name={sharing}")
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    loaded = load_encoders(model, cfg, prepared.fingerprint, prepared.vocab_size)
    assert loaded == (1 if sharing == "hard" else 4)
    ckpt = torch.load(io.BytesIO((out / "pretrained.pt").read_bytes()), weights_only=True)["encoders"]
    for backbone in backbones(model):
        own = backbone.encoders.state_dict()
        shared = [k for k in ckpt if k in own]
        assert shared
        for k in shared:
            assert torch.equal(own[k], ckpt[k]), k


def test_misfits_fail_with_one_line(pretrained, data_dir, tmp_path):
    out, _ = pretrained
    cfg, prepared = smoke(data_dir, f"model.init_from={out / 'pretrained.pt'}", "model.dim=16")
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    with pytest.raises(UserError, match="field 'model.dim' is 16 here but 32 in the checkpoint"):
        load_encoders(model, cfg, prepared.fingerprint, prepared.vocab_size)
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = run_cli("run", "--suite", "ecommerce", "--profile", "smoke", "--init-from", str(bogus),
                     "--output-dir", str(tmp_path / "r"), "--set", f"data.dir={data_dir}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"mtl-bench: error: model.init_from = '{bogus}': not a readable checkpoint (UnpicklingError)"
    ]
