"""An independent reference for the transport plan: POT's log-domain Sinkhorn on the same problem
(uniform marginals, cost 1 - cos, regularisation epsilon), each row rescaled to one. Tests compare what
the app and the engine show as "mass" with it, so a wrong plan or a wrong row is caught."""

from __future__ import annotations

import numpy as np
import ot

from cae_core.method.alignment import EPSILON


def row_shares(images: np.ndarray, texts: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """(N, S): the share of each image's mass that the plan sends to each text."""
    x = images / np.linalg.norm(images, axis=1, keepdims=True)
    t = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    cost = 1.0 - x.astype(np.float64) @ t.astype(np.float64).T
    plan = ot.sinkhorn(np.full(len(x), 1 / len(x)), np.full(len(t), 1 / len(t)), cost, epsilon,
                       method="sinkhorn_log", stopThr=1e-9, numItermax=20_000)
    return plan / plan.sum(axis=1, keepdims=True)


def heaviest(shares: np.ndarray, image: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` texts image ``image`` sends most mass to, heaviest first, and their shares."""
    order = np.argsort(-shares[image], kind="stable")[:n]
    return order, shares[image, order]
