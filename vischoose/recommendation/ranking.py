"""The pure recommendation core's entry points: figures + preset + what is known -> Recommendation. No I/O, no torch,
no registry or catalog loading: the catalog and the runtimes' facts come in as a Known, so the same figures give the
same answer on any machine, whichever extras it has installed.

The parts: figures (each figure and where it comes from), constraints (limits broken, by how much), candidates (each
model judged at every deployed variant, one kept), choose (the choice, runners-up, rejections, Pareto front) and
wording (what the answer says).
"""

from vischoose.recommendation.candidates import (
           Candidate,
           build_candidates,
           preference_order,
           rank_key,
)
from vischoose.recommendation.choose import (
           Recommendation,
           dominated_by,
           pareto_front,
           recommend,
)
from vischoose.recommendation.constraints import CONSTRAINTS
from vischoose.recommendation.figures import (
           TORCH_FP32,
           Deployable,
           Figure,
           Known,
           matching_profiles,
)
from vischoose.recommendation.wording import float_layers, missed_limit

__all__ = ["CONSTRAINTS", "TORCH_FP32", "Candidate", "Deployable", "Figure", "Known", "Recommendation",
           "build_candidates", "dominated_by", "float_layers", "matching_profiles", "missed_limit", "pareto_front",
           "preference_order", "rank_key", "recommend"]
