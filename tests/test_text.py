"""Adversarial and virtual adversarial training on word embeddings: the normalisation, the two
losses, the flip share, nearest words, the corpus reader and the lecture section, on tiny
sentences made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advlab.analysis import text as tx

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "is", "a", "plot", "and"]


def _vectors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(WORDS), 8)).astype(np.float32)


def _sentences(n: int = 160, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        lab = i % 2
        word = rng.choice(["good", "great", "fine"] if lab else ["bad", "awful", "poor"])
        fill = ["the", "movie", "is", "a", "plot", "and"]
        filler = " ".join(rng.choice(fill, size=int(rng.integers(2, 6))))
        texts.append(f"{filler} {word} {filler}")
        labels.append(lab)
    return texts, torch.tensor(labels)


def _corpus() -> tx.Corpus:
    texts, y = _sentences()
    return tx.build_corpus(texts, y, WORDS, _vectors(), max_len=16)


def test_corpus_ids_padding_unknown_words_and_glove_share() -> None:
    c = tx.build_corpus(["good movie", "zzz good"], torch.tensor([1, 1]), WORDS, _vectors(), max_len=4)
    good = c.vocab.index("good")
    assert c.ids[0].tolist() == [good, c.vocab.index("movie"), 0, 0]
    assert torch.allclose(c.vectors[good], torch.as_tensor(_vectors()[0]))
    assert c.glove_share == pytest.approx(3 / 4)  # "zzz" is not in the vectors
    assert c.vectors[0].abs().sum() == 0  # padding
    with pytest.raises(ValueError, match="labels"):
        tx.build_corpus(["a"], torch.tensor([1, 0]), WORDS, _vectors())


def test_normalised_table_has_frequency_weighted_zero_mean_and_unit_variance() -> None:
    c = _corpus()
    t = tx.TextCNN(c.vectors, c.freq).normalized_table().detach()
    f = c.freq[:, None]
    mean = (f * t).sum(0)
    var = (f * (t - mean) ** 2).sum(0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(var, torch.ones_like(var), atol=1e-3)
    # scaling the raw vectors changes nothing: a perturbation of fixed size keeps its meaning
    t2 = tx.TextCNN(10 * c.vectors, c.freq).normalized_table().detach()
    assert torch.allclose(t, t2, atol=1e-4)


def test_adversarial_and_virtual_losses() -> None:
    c = _corpus()
    torch.manual_seed(0)
    m = tx.TextCNN(c.vectors, c.freq).eval()
    ids, y = c.ids[:32], c.y[:32]
    clean = F.cross_entropy(m(ids), y)
    assert tx.adversarial_loss(m, ids, y, eps=0.5) > clean  # the step goes up the loss
    assert float(tx.adversarial_loss(m, ids, y, eps=1e-6).detach()) == pytest.approx(float(clean), abs=1e-4)
    g = torch.Generator().manual_seed(0)
    v = tx.vat_loss(m, ids, eps=1.0, generator=g)
    assert v >= 0 and float(tx.vat_loss(m, ids, eps=1e-5, generator=g).detach()) < 1e-6 < float(v.detach())
    # the losses reach the model's parameters, the embeddings included
    tx.adversarial_loss(m, ids, y, 0.5).backward()
    assert m.emb.weight.grad is not None and m.emb.weight.grad.abs().sum() > 0


def test_flip_share_is_zero_at_zero_and_grows_with_eps() -> None:
    c = _corpus()
    m = tx.train_text(c, torch.arange(120), "baseline", eps=1.0, epochs=10, lr=1e-2)
    ids, y = c.ids[120:], c.y[120:]
    shares = [tx.worst_case_flip_share(m, ids, y, e) for e in (1e-9, 2.0, 50.0)]
    assert shares[0] == 0.0 and shares[0] <= shares[1] <= shares[2] and shares[2] > 0.5


@pytest.mark.parametrize("method", tx.METHODS)
def test_every_method_learns_the_toy_task(method: str) -> None:
    c = _corpus()
    m = tx.train_text(c, torch.arange(120), method, eps=0.5, epochs=10, seed=1, lr=1e-2)
    with torch.no_grad():
        err = float((m(c.ids[120:]).argmax(1) != c.y[120:]).float().mean())
    assert err < 0.1


def test_train_text_rejects_what_does_not_apply() -> None:
    c = _corpus()
    with pytest.raises(ValueError, match="method"):
        tx.train_text(c, torch.arange(10), "magic")
    with pytest.raises(ValueError, match="unlabeled"):
        tx.train_text(c, torch.arange(10), "baseline", unlabeled_idx=torch.arange(10, 20))
    with pytest.raises(ValueError, match="eps"):
        tx.train_text(c, torch.arange(10), "adversarial", eps=0.0)


def test_nearest_words_known_answer() -> None:
    table = torch.tensor([[0.0, 0], [0, 0], [1.0, 0], [0.9, 0.1], [0, 1.0], [-1.0, 0]])
    vocab = ["<pad>", "<unk>", "good", "great", "plot", "bad"]
    assert tx.nearest_words(table, vocab, "good", k=3) == ["great", "plot", "bad"]
    with pytest.raises(ValueError, match="vocabulary"):
        tx.nearest_words(table, vocab, "zzz")


def test_polarity_reader(tmp_path: Path) -> None:
    f = tmp_path / "pol.csv"
    f.write_text('\ufeff"1","a fine movie ."\n"-1","an awful plot ."\n', encoding="utf-8")
    texts, y = tx.load_polarity(f)
    assert texts == ["a fine movie .", "an awful plot ."] and y.tolist() == [1, 0]
    (tmp_path / "rt").mkdir()
    (tmp_path / "rt" / "rt-polarity.pos").write_text("good one\n", encoding="latin-1")
    (tmp_path / "rt" / "rt-polarity.neg").write_text("bad one\nworse\n", encoding="latin-1")
    texts, y = tx.load_polarity(tmp_path / "rt")
    assert y.tolist() == [1, 0, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text('"pos","x"\n', encoding="utf-8")
    with pytest.raises(tx.TextUnavailable, match="label"):
        tx.load_polarity(bad)
    with pytest.raises(tx.TextUnavailable, match="python3-pattern"):
        tx.load_polarity(tmp_path / "missing.csv")


def test_the_section_runs_and_renders_or_says_how_to_install(digits_train, digits_test, tmp_path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from advlab.reporting.html import render_report
    from advlab.reporting.lecture import LectureContext, run_sections

    meta = {"version": "0", "dataset": "digits", "mode": "quick", "seconds": 0.0, "seed": 0,
            "notices": [], "date": "today"}
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    monkeypatch.setattr(tx, "load_polarity", lambda: _sentences(300))
    monkeypatch.setattr(tx, "load_glove", lambda: (WORDS, _vectors()))
    (sec,) = run_sections(ctx, ["text_vat"])
    assert [r["method"] for r in sec.data["rows"]] == list(tx.METHODS)
    assert "good" in sec.data["neighbours"]["baseline"]
    html = render_report("t", [sec], meta)
    assert "data:image/png;base64" in html and "7.33%" in html and "Miyato" in html

    def missing() -> tuple[list[str], np.ndarray]:
        raise tx.TextUnavailable("GloVe word vectors missing: pip install 'advlab[text]'")

    monkeypatch.setattr(tx, "load_glove", missing)
    (sec,) = run_sections(ctx, ["text_vat"])
    assert "advlab[text]" in sec.data["note"] and "advlab[text]" in render_report("t", [sec], meta)


def test_text_vat_leaves_the_global_rng_alone() -> None:
    c = _corpus()
    torch.manual_seed(7)
    before = torch.get_rng_state()
    d = tx.text_vat(c, eps=0.5, epochs=1, seeds=(0,), few_labels=20)
    assert torch.equal(torch.get_rng_state(), before)
    assert [r["method"] for r in d["rows"]] == list(tx.METHODS)
