"""Report sections, one module per capability; the order of ``ORDER`` is report order.

Each module registers its sections with :func:`advlab.reporting.registry.section`
and ships one template per section in ``templates/sections/<key>.html.j2``.
"""

import importlib

#: modules in report order: the foundation, then why adversarial examples exist,
#: transfer and black box, the real world, evaluation, defenses (photo_* are the ImageNet sections)
ORDER = ("basics", "photo_attacks", "analysis", "photo_maps", "transfer", "physical", "spam",
         "evaluation", "defenses", "text", "claims", "robust_sweep", "detectors")

for _name in ORDER:
    importlib.import_module(f"advlab.reporting.sections.{_name}")
