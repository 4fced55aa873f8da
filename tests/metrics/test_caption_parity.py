"""One tokenisation for captions (issue 14, section 6): references and predictions are scored on the same tokens, a
perfect prediction of every built-in shop caption and every real fashion title survives encode -> decode, and every
caption metric equals pycocoevalcap's on those tokens (CIDEr-D, BLEU-4, ROUGE-L; and the coco-caption variants on
multi-reference corpora with ties)."""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources.builtin.shop import generate_shop
from mtl_bench.data.sources.fashion.rows import TITLE, parse_styles
from mtl_bench.data.text import caption_text, caption_words, decode, encode, train_tokenizer
from mtl_bench.metrics.captioning import BLEU4, ROUGEL, COCORougeL, caption_metrics, lcs_length
from mtl_bench.tasks.captioning import Captioning
from mtl_bench.tasks.spec import TaskSpec
from tests.conftest import ROOT

from .two_ranks import on_two_ranks

Bleu = pytest.importorskip("pycocoevalcap.bleu.bleu").Bleu
Cider = pytest.importorskip("pycocoevalcap.cider.cider").Cider
Rouge = pytest.importorskip("pycocoevalcap.rouge.rouge").Rouge

# The real subset lives beside the checkout, as in tests/data/test_fashion.py; CI has it, so CI fails without it.
REAL = Path(os.environ.get("MTL_BENCH_FASHION_DATA", ROOT.parent / "shared" / "data" / "fashion-products-3k"))
needs_real = pytest.mark.skipif(
    not (REAL / "styles.csv").is_file() and not os.environ.get("CI"), reason=f"real data not found at {REAL}"
)
MAX_LEN = DataConfig().max_text_len  # the default: no caption of either corpus is cut


def coco(preds: Sequence[str], target: Sequence[Sequence[str]]) -> dict[str, float]:
    """pycocoevalcap's scores on already-tokenised text (the input its PTB tokenizer would produce)."""
    gts = {i: list(refs) for i, refs in enumerate(target)}
    res = {i: [pred] for i, pred in enumerate(preds)}
    return {
        "bleu4": float(Bleu(4).compute_score(gts, res, verbose=0)[0][3]),
        "rougeL_coco": float(Rouge().compute_score(gts, res)[0]),
        "cider": float(Cider().compute_score(gts, res)[0]),
    }


def ours(preds: Sequence[str], target: Sequence[Sequence[str]]) -> dict[str, float]:
    metrics = caption_metrics()
    metrics.update(list(preds), [list(refs) for refs in target])
    return {name: value.item() for name, value in metrics.compute().items()}


def captioning_task() -> Captioning:
    spec = TaskSpec(name="c", version=1, description="d", type="captioning", dataset={"subset": "captioning"},
                    inputs={"image": "image"}, target="caption", metrics=["cider"], main_score="cider")
    return Captioning(spec, None)  # type: ignore[arg-type]  # encode_targets needs no context


def perfect_predictions(captions: list[str]) -> tuple[list[str], list[list[str]]]:
    """What a model that generates every caption token for token outputs (the tokenizer's decode of the encoded
    caption), and the references the task stores, built the way ``data.prepare`` builds them."""
    tokenizer = train_tokenizer(captions, vocab_size=1_000_000)  # every word in the vocabulary
    tokenize = lambda texts, bos_eos=False: encode(tokenizer, texts, MAX_LEN, bos_eos)  # noqa: E731
    ids, references = captioning_task().encode_targets(captions, tokenize)
    return decode(tokenizer, ids), references


def shop_captions() -> list[str]:
    """Every caption of the built-in shop's captioning subset (default sizes and seed, all splits)."""
    shop = generate_shop(sizes={"classification": (0, 0, 0), "video": (0, 0, 0)})["captioning"]
    return [str(c) for split in shop.values() for c in split["caption"]]


def fashion_captions() -> list[str]:
    """Every title of the shared fashion data as the fashion source turns it into a caption (fashion/build.py)."""
    rows = parse_styles((REAL / "styles.csv").read_text()).rows
    return [" ".join(str(r[TITLE]).lower().split()) for r in rows]


def check_perfect_corpus(captions: list[str]) -> None:
    preds, target = perfect_predictions(captions)
    broken = [(p, refs[0]) for p, refs in zip(preds, target, strict=True) if p != refs[0]]
    assert not broken, f"{len(broken)} captions do not survive encode -> decode, e.g. {broken[:3]}"
    assert [refs[0] for refs in target] == [caption_text(c) for c in captions]
    mine, reference = ours(preds, target), coco(preds, target)
    for name, value in reference.items():
        assert mine[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert mine["bleu4"] == mine["bleu4_coco"] == pytest.approx(1.0)
    assert mine["rougeL"] == pytest.approx(1.0) and mine["rougeL_coco"] == pytest.approx(1.0)
    # Imperfect predictions too: every caption scored against the next item's reference.
    shifted = preds[1:] + preds[:1]
    mine, reference = ours(shifted, target), coco(shifted, target)
    for name, value in reference.items():
        assert mine[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_every_shop_caption_is_scored_like_pycocoevalcap() -> None:
    captions = shop_captions()
    assert len(captions) == 4000
    # The shop's captions hold no punctuation or capitals: the tokenisation leaves them (and stored scores) unchanged.
    assert all(caption_text(c) == c for c in captions)
    check_perfect_corpus(captions)


@needs_real
def test_every_fashion_title_is_scored_like_pycocoevalcap() -> None:
    captions = fashion_captions()
    assert len(captions) == 2946
    changed = sum(caption_text(c) != c for c in captions)
    assert changed == 573  # 19.5% of the titles hold punctuation ("t-shirt"): the references the issue was about
    check_perfect_corpus(captions)


def test_tokenisation_is_idempotent_and_splits_punctuation_off() -> None:
    assert caption_words("Puma Men's  T-Shirt, Blue") == ["puma", "men", "'", "s", "t", "-", "shirt", ",", "blue"]
    assert caption_text("Puma Men's  T-Shirt, Blue") == "puma men ' s t - shirt , blue"
    rng = random.Random(0)
    pieces = ["T-Shirt", "men's", "a,b", "3.5", "--", "(new)", "café", "Σ", "x/y", "  ", "\t"]
    for _ in range(200):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert caption_text(caption_text(text)) == caption_text(text)


def test_encode_decode_is_the_identity_on_normalised_text() -> None:
    rng = random.Random(1)
    pieces = ["T-Shirt", "men's", "a,b", "3.5", "--", "(new)", "café", "x/y", "Zoom!", "kurta", "set"]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    tokenizer = train_tokenizer(texts, vocab_size=1000)
    normalised = [caption_text(t) for t in texts]
    assert decode(tokenizer, encode(tokenizer, normalised, max_len=64, bos_eos=True)) == normalised
    assert decode(tokenizer, encode(tokenizer, texts, max_len=64, bos_eos=True)) == normalised


def test_prediction_is_scored_on_the_same_tokens_as_its_reference() -> None:
    # Before the fix the reference stayed "men's t-shirt" while decode gives "men ' s t - shirt": BLEU-4 < 1.
    raw = ["men's t-shirt in blue", "red kurta, churidar"]
    decoded = ["men ' s t - shirt in blue", "red kurta , churidar"]
    values = ours(decoded, [[r] for r in raw])
    assert values["bleu4"] == pytest.approx(1.0) and values["rougeL"] == pytest.approx(1.0)
    assert values["cider"] == pytest.approx(ours(decoded, [[d] for d in decoded])["cider"])


def random_corpus(seed: int, size: int = 150) -> tuple[list[str], list[list[str]]]:
    """1-5 references per item, lengths 2-9 so that equally close references of different lengths occur."""
    rng = random.Random(seed)
    vocab = "a the man dog on in with red blue sits runs street t-shirt men's".split()

    def caption() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 9)))

    return [caption() for _ in range(size)], [[caption() for _ in range(rng.randint(1, 5))] for _ in range(size)]


def f_measure(precision: float, recall: float, beta: float) -> float:
    return 0.0 if precision == 0 or recall == 0 else (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_variants_match_pycocoevalcap_on_multi_reference_corpora(seed: int) -> None:
    preds, target = random_corpus(seed)
    preds, target = [caption_text(p) for p in preds], [[caption_text(r) for r in refs] for refs in target]
    mine, reference = ours(preds, target), coco(preds, target)
    assert mine["bleu4_coco"] == pytest.approx(reference["bleu4"], rel=1e-6)
    assert mine["rougeL_coco"] == pytest.approx(reference["rougeL_coco"], rel=1e-6)
    assert mine["cider"] == pytest.approx(reference["cider"], rel=1e-6)
    # Our default ROUGE-L: F1 of the best reference (by F1), in float64 here from the LCS.
    best = [
        max(f_measure(lcs_length(p.split(), r.split()) / len(p.split()), lcs_length(p.split(), r.split())
                      / len(r.split()), 1.0) for r in refs)
        for p, refs in zip(preds, target, strict=True)
    ]
    assert mine["rougeL"] == pytest.approx(sum(best) / len(best), rel=1e-5)


def test_bleu_brevity_ties_go_to_the_first_reference_here_and_the_shortest_in_coco() -> None:
    # 6 words against references of 7 and 5: equally close. Precisions 6/6, 4/5, 3/4, 2/3 either way.
    preds, target = ["a cat sits on the mat"], [["a cat sits on the red mat", "a cat sits on mat"]]
    geometric = (1 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    tm, cc = BLEU4(), BLEU4(coco=True)
    tm.update(preds, target)
    cc.update(preds, target)
    assert cc.compute().item() == pytest.approx(geometric, rel=1e-6)
    assert cc.compute().item() == pytest.approx(coco(preds, target)["bleu4"], rel=1e-6)
    assert tm.compute().item() == pytest.approx(geometric * 2.718281828459045 ** (1 - 7 / 6), rel=1e-6)


def test_rouge_l_beta_one_here_and_one_point_two_in_coco() -> None:
    # "the cat" against "the cat sat on the mat": LCS 2, P = 1, R = 1/3.
    preds, target = ["the cat"], [["the cat sat on the mat"]]
    ours_f1, coco_f = ROUGEL(), COCORougeL()
    ours_f1.update(preds, target)
    coco_f.update(preds, target)
    assert ours_f1.compute().item() == pytest.approx(f_measure(1, 1 / 3, 1.0), rel=1e-6)  # 0.5
    assert coco_f.compute().item() == pytest.approx(f_measure(1, 1 / 3, 1.2), rel=1e-9)
    assert coco_f.compute().item() == pytest.approx(coco(preds, target)["rougeL_coco"], rel=1e-9)


def test_coco_rouge_takes_best_precision_and_best_recall_from_different_references() -> None:
    # ref 1 gives P = 1, R = 2/6; ref 2 gives P = 1/2, R = 1/1: coco combines P = 1 with R = 1.
    preds, target = ["the cat"], [["the cat sat on the mat", "cat"]]
    metric = COCORougeL()
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(1.0) == coco(preds, target)["rougeL_coco"]


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="list of lists"):
        COCORougeL().update(["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        COCORougeL().update(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="beta"):
        COCORougeL(beta=0.0)


def _rouge_worker(rank: int, init_file: str, results: multiprocessing.Queue) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        preds, target = random_corpus(seed=4, size=40)
        metric = COCORougeL()
        if rank == 0:  # rank 1 sees no data: it must still take part in the gather
            for start in range(0, 40, 15):
                metric.update(preds[start : start + 15], target[start : start + 15])
        results.put(metric.compute().item())
    finally:
        torch.distributed.destroy_process_group()


def test_coco_rouge_syncs_with_an_empty_rank(tmp_path) -> None:
    got = on_two_ranks(_rouge_worker, tmp_path)
    preds, target = random_corpus(seed=4, size=40)
    expected = coco([caption_text(p) for p in preds], [[caption_text(r) for r in refs] for refs in target])
    assert got == pytest.approx([expected["rougeL_coco"]] * 2, rel=1e-9)
