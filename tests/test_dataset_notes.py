"""Every MNIST-era lecture section says, on another dataset, what changes and what should not."""

from __future__ import annotations

from advlab.reporting.dataset_notes import DATASET_NOTES, dataset_note
from advlab.reporting.lecture import SECTIONS, LectureContext, load_sections, run_sections

#: the sections that read the lecture's dataset before the photo and claims sections came
MNIST_ERA = ("basics", "analysis", "transfer", "physical", "evaluation", "defenses")


def test_every_dataset_section_has_a_note() -> None:
    load_sections()
    keys = {k for k, _, fn in SECTIONS if fn.__module__.rsplit(".", 1)[-1] in MNIST_ERA}
    assert keys and keys == set(DATASET_NOTES)


def test_note_is_added_off_mnist_only(digits_train, digits_test, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert dataset_note("fgsm", "mnist") is None
    assert dataset_note("photo_panda", "fashion-mnist") is None
    note = dataset_note("fgsm", "fashion-mnist")
    assert note is not None and note.startswith("On fashion-mnist.") and "Should not change:" in note
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    (sec,) = run_sections(ctx, ["same_norm"])
    assert sec.notes[-1] == dataset_note("same_norm", "digits")
