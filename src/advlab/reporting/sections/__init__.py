"""Report sections, one module per capability; import order is report order.

Each module registers its sections with :func:`advlab.reporting.lecture.section`
and ships one template per section in ``templates/sections/<key>.html.j2``.
"""

from advlab.reporting.sections import (
    analysis,  # noqa: F401  (issue 5)
    basics,  # noqa: F401  (foundation)
    defenses,  # noqa: F401  (issue 4)
    evaluation,  # noqa: F401  (issue 3)
    physical,  # noqa: F401  (issue 7)
    transfer,  # noqa: F401  (issue 6)
)
