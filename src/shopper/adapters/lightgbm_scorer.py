"""A LightGBM model as the learned ranker's scorer: built from the model's text (what a
model store keeps), scoring on one thread (the processor's micro-batch shares two cores
with the page path)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import numpy.typing as npt


class LightGBMScorer:
    def __init__(self, text: str) -> None:
        self._booster = lgb.Booster(model_str=text)

    @property
    def feature_names(self) -> list[str]:
        return list(self._booster.feature_name())

    def predict(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if len(features) == 0:
            return np.zeros(0)
        scores = self._booster.predict(features, num_threads=1)
        return np.asarray(scores, dtype=np.float64)
