"""Word-level tokenisation with Hugging Face ``tokenizers``, trained on the training splits only.

The caption tokenisation, shared by references, predictions and the tokenizer itself: Unicode lower-casing
(``normalizers.Lowercase``), then ``pre_tokenizers.Whitespace``, which splits text into runs of word characters
(``\\w+``) and runs of punctuation (``[^\\w\\s]+``), joined back with single spaces ("Men's T-Shirt" ->
"men ' s t - shirt"). :func:`caption_text` applies it to a string; the tokenizer's vocabulary is made of these
pieces and :func:`decode` joins them with spaces, so encode -> decode is the identity on ``caption_text`` output
whose words are all in the vocabulary and fit in ``max_len``. Captioning references and predictions are both
scored on ``caption_text`` (``tasks/captioning.py``, ``metrics/captioning.py``): a prediction identical to its
reference is producible, and the metrics see the tokens pycocoevalcap would be given.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


# One normaliser and one pre-tokenizer, used by the trained tokenizer and by caption_text alike.
_NORMALIZER = normalizers.Lowercase()
_PRE_TOKENIZER = pre_tokenizers.Whitespace()


def caption_words(text: str) -> list[str]:
    """The words of ``text`` under the caption tokenisation (lower-cased, punctuation split off).

    >>> caption_words("Nike Men's T-Shirt, Blue")
    ['nike', 'men', "'", 's', 't', '-', 'shirt', ',', 'blue']
    """
    return [word for word, _ in _PRE_TOKENIZER.pre_tokenize_str(_NORMALIZER.normalize_str(text))]


def caption_text(text: str) -> str:
    """``text`` in the caption tokenisation: its :func:`caption_words` joined by single spaces (idempotent).

    >>> caption_text("Quechua  Men Sweat-Proof T-shirt")
    'quechua men sweat - proof t - shirt'
    """
    return " ".join(caption_words(text))


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A lower-casing word-level tokenizer; the special tokens get ids 0-3 in the order above."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = _NORMALIZER
    tokenizer.pre_tokenizer = _PRE_TOKENIZER
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS, UNK], min_frequency=1)
    tokenizer.train_from_iterator(sorted(texts), trainer=trainer)  # sorted: same vocabulary ids on every run
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str], max_len: int, bos_eos: bool = False) -> torch.Tensor:
    """Token ids [N, max_len], padded with PAD_ID and truncated; with bos_eos the rows are BOS w1 .. wk EOS."""
    out = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    room = max_len - 2 if bos_eos else max_len
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = encoding.ids[:room]
        if bos_eos:
            ids = [BOS_ID, *ids, EOS_ID]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def decode(tokenizer: Tokenizer, ids: torch.Tensor) -> list[str]:
    """Strings from id rows, stopping at EOS and dropping special tokens."""
    texts = []
    for row in ids.tolist():
        words = []
        for i in row:
            if i == EOS_ID:
                break
            if i > UNK_ID:
                words.append(tokenizer.id_to_token(i))
        texts.append(" ".join(words))
    return texts
