"""LAIC's relational features (seed 004), training-free: each image represented by its row of the
image-text relation matrix instead of by retrieved text features.

LAIC's Figure 1 observes that text features retrieved for different images are nearly alike (CLIP's
text embeddings crowd together), while the *relations* of an image to many texts stay discriminative.
The summary does not give C's exact form; inferred here, with the measurement in the README:

- columns: the nouns the semantic space selected (TAC's selection, as ``tac-notrain`` uses);
- C_ij = cos(x_i, u_j), each row centred (its mean over the texts removed): an image's response to
  text in general is one offset shared by all its entries (the modality gap's share), and only its
  preferences among the texts say what it shows; k-means by cosine on the centred rows is then
  k-means on the correlation of relation profiles. LAIC's adaptive semantic centres (prompt
  learning) need a trainable text tower and are left out.
"""

from __future__ import annotations

import numpy as np
import torch

from ..arrays import unit_rows
from ..device import as_tensor, resolve_device


def relation_features(image_embeddings: np.ndarray, text_embeddings: np.ndarray,
                      device: str | torch.device = "auto", block_rows: int = 65536) -> np.ndarray:
    """(N, S) rows of the image-text cosine matrix, each centred over the texts and L2-normalised.

    ``image_embeddings`` (N, d) and ``text_embeddings`` (S, d) are normalised first. Memory O(N * S).
    """
    dev = resolve_device(device)
    texts = torch.nn.functional.normalize(as_tensor(text_embeddings, dev), dim=1)
    rows = []
    for start in range(0, len(image_embeddings), block_rows):
        images = torch.nn.functional.normalize(as_tensor(image_embeddings[start:start + block_rows], dev), dim=1)
        relation = images @ texts.T
        rows.append((relation - relation.mean(dim=1, keepdim=True)).cpu().numpy())
    return unit_rows(np.concatenate(rows))
