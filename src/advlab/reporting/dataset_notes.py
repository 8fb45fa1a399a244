"""What each lecture section's numbers owe to the dataset, and what they do not.

``advlab lecture --dataset fashion-mnist`` (or any dataset but MNIST) runs every section on
that dataset with models trained on it. Each section then carries one note: which of its
numbers change with the dataset, and which phenomenon should hold on any dataset. The notes
state the lecture's claims, not results: the section's own numbers show whether they held.
"""

from __future__ import annotations

__all__ = ["DATASET_NOTES", "dataset_note"]

_CHANGE = "Changes with the dataset: "
_HOLD = " Should not change: "

#: section key -> (numbers that change with the dataset, the phenomenon that should hold)
DATASET_NOTES: dict[str, tuple[str, str]] = {
    "panda": ("the example image, its classes and the confidences.",
              "a perturbation below what a person would notice flips a confident prediction."),
    "fgsm": ("the clean accuracies and the FGSM error at eps = 0.25 (0.25 of the pixel range is a "
             "larger change on textured clothes than on thin strokes).",
             "one FGSM step breaks both the shallow softmax model and the CNN."),
    "curves": ("where each curve falls and how far PGD lies below FGSM.",
               "accuracy falls with eps for every model, and the iterative attack is stronger."),
    "cross_sections": ("the logits, the winning wrong class and the number of linear pieces.",
                       "along the FGSM direction the logits are close to piecewise linear over a wide span."),
    "decision_maps": ("which wrong classes the maps show.",
                      "adversarial examples fill broad regions, not thin pockets, along the FGSM direction."),
    "same_norm": ("the classes compared (here labels 3 and 7 of this dataset) and the error rates.",
                  "at the same L2 norm a max-norm-shaped perturbation does far more than a random one."),
    "linear_models": ("the two classes (labels 3 and 7 of this dataset), the weights' picture and "
                      "the error rates.",
                      "a linear model is fooled by eps * sign(w) at small eps."),
    "class_sweep": ("the source image (label 9 of this dataset) and the classes reached.",
                    "a targeted attack reaches every class on the softmax model; the RBF model resists."),
    "rbf": ("the accuracies and the confidences.",
            "the RBF network resists FGSM far better than a linear softmax model, and costs accuracy."),
    "rubbish_noise": ("which class takes most of noise space, and its share.",
                      "noise is classified, often confidently, as some class rather than as nothing."),
    "subspace": ("the dimension estimates.",
                 "adversarial directions span a subspace of many dimensions, shared across models."),
    "generative": ("the likelihoods and posteriors.",
                   "two inputs of equal likelihood can get very different posteriors."),
    "model_based": ("the images found and their scores.",
                    "optimising the input against the model finds inputs the model scores highly but that "
                    "do not look like the class."),
    "transfer_matrix": ("every transfer rate.",
                        "adversarial examples transfer across model families, most between similar models."),
    "transfer_cross_data": ("the transfer rates.",
                            "examples transfer between models trained on disjoint halves of the data."),
    "transfer_ensemble": ("the rates.", "fooling an ensemble transfers better to a held-out model."),
    "blackbox": ("the substitute's agreement and the success rate.",
                 "a substitute trained only on the oracle's labels yields examples that fool the oracle."),
    "universal": ("the perturbation's picture and the fooling rate.",
                  "one image-agnostic perturbation fools a large share of inputs."),
    "physical": ("the destruction rates.",
                 "a camera-like transform destroys some adversarial examples, fewer for stronger attacks."),
    "rlpolicy": ("nothing: the policies do not read this dataset.",
                 "the section is the same on every dataset."),
    "fgsm_not_enough": ("the accuracies.",
                        "an FGSM-trained model looks robust to FGSM and is broken by a strong attack."),
    "adv_training": ("the curves.",
                     "adversarial training raises robust accuracy at some cost in clean accuracy."),
}


def dataset_note(key: str, dataset: str) -> str | None:
    """The note for section ``key`` when the lecture runs on ``dataset`` (``None`` on MNIST or
    for a section that names its own data, such as the ImageNet photo sections)."""
    if dataset == "mnist" or key not in DATASET_NOTES:
        return None
    change, hold = DATASET_NOTES[key]
    return f"On {dataset}. {_CHANGE}{change}{_HOLD}{hold}"
