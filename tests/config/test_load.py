import pytest
from pydantic import ValidationError

from mtl_bench.config.load import build_config, parse_set
from mtl_bench.errors import UserError


def test_layers_apply_in_order():
    cfg = build_config(
        "ecommerce",
        "smoke",
        flags={"seed": 7, "sharing.name": "single-task", "fusion.name": None},
        sets=["train.lr=0.01", "train.lr=0.02", "sharing.options.weight=0.5", "data.sizes.video=[10, 5, 5]"],
    )
    assert cfg.profile == "smoke" and cfg.seed == 7
    assert cfg.model.dim == 32  # from the smoke profile
    assert cfg.train.lr == 0.02  # the later --set wins
    assert cfg.sharing.name == "single-task" and cfg.sharing.options == {"weight": 0.5}
    assert cfg.fusion.name == "early"  # a flag left as None keeps the default
    assert cfg.data.sizes["video"] == (10, 5, 5)
    assert cfg.data.sizes["classification"] == (192, 64, 64)


def test_default_profile_sizes_video_smallest():
    sizes = build_config("ecommerce").data.sizes
    assert min(sizes, key=lambda k: sizes[k][0]) == "video"


def test_config_is_frozen():
    cfg = build_config("ecommerce", "smoke")
    with pytest.raises(ValidationError):
        cfg.train.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.lrr=1", "--set train.lrr=1: train has no field 'lrr': did you mean 'lr'?"),
        ("train.lr=abc", "field 'train.lr' = 'abc': Input should be a valid number"),
        ("trian.lr=1", "the config has no field 'trian': did you mean 'train'"),
        ("train.lr.x=1", "train.lr is a value, not a section"),
        ("train.mixing=random", "field 'train.mixing' = 'random'"),
        ("lr", "expected dotted.key=value"),
    ],
)
def test_bad_overrides_name_field_and_value(item, message):
    with pytest.raises(UserError, match=None) as err:
        build_config("ecommerce", "smoke", sets=[item])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_profile_suggests():
    with pytest.raises(UserError, match="did you mean 'smoke'"):
        build_config("ecommerce", "smok")


def test_parse_set_values_are_yaml():
    assert parse_set("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_set("a=true") == (["a"], True)
    assert parse_set("a=hello world") == (["a"], "hello world")


def test_config_file_layer(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    assert build_config("ecommerce", "smoke", config_file=path, sets=["train.lr=0.5"]).train.epochs == 3
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(UserError, match=r"c.yaml: field 'train.epochz'"):
        build_config("ecommerce", "smoke", config_file=path)
