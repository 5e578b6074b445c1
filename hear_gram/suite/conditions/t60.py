"""`t60`: reverberation time (T60) on the T60 task of each source, binaural and Ambisonic;
median absolute error (s) (arXiv 2506.00934 sec. 5)."""

from __future__ import annotations

from hear_gram.suite.condition import register
from hear_gram.suite.conditions.spatial import SpatialCondition


class T60(SpatialCondition):
    name = "t60"
    title = "T60"
    target = "t60"
    metric = "median_abs_error_s"
    caption = "T60 median absolute error (s)"
    columns = (("T60 (s)", None),)
    digits = 3


T60_CONDITION = register(T60())
