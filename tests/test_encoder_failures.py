"""Why a pretrained tag did not load reaches the user: the network, the disk, the GPU and a corrupt file each
get their own message with the real cause, chained to the original exception (a fake failing loader)."""

from __future__ import annotations

import errno
import urllib.error

import open_clip
import pytest
import torch

from cae_core import CaeError
from cae_core.inputs.encoders import load_clip


def failing_loader(error: BaseException, cause: BaseException | None = None):
    """A stand-in for open_clip's loader that fails as a download or load would (wrapped as open_clip does)."""
    def create(*args, **kwargs):
        if cause is None:
            raise error
        raise error from cause
    return create


CASES = {
    "network": (RuntimeError("Failed to download weights for tag 'openai'"),
                urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                ("the network failed", "URLError", "name resolution", "pass --pretrained /path/to/checkpoint.pt")),
    "disk": (RuntimeError("Failed to download weights for tag 'openai'"),
             OSError(errno.ENOSPC, "No space left on device", "/hub/models--timm/blobs/abc"),
             ("cannot store", "free disk space", "/hub/models--timm/blobs/abc")),
    "gpu": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 600.00 MiB"), None,
            ("free the GPU", "CUDA out of memory", "--device cpu")),
    "corrupt": (RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory"),
                None, ("may be corrupt", "PytorchStreamReader failed reading zip archive", "delete it")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_tag_names_its_real_cause(monkeypatch, case):
    error, cause, fragments = CASES[case]
    monkeypatch.setattr(open_clip, "create_model_and_transforms", failing_loader(error, cause))
    with pytest.raises(CaeError) as raised:
        load_clip("ViT-B-32", "openai", "cpu")
    message = str(raised.value)
    assert "\n" not in message and "'openai' weights of ViT-B-32" in message
    for fragment in fragments:
        assert fragment in message, message
    for other in set(CASES) - {case}:  # no other cause's advice: each case is told apart
        assert CASES[other][2][0] not in message, message
    assert raised.value.__cause__ is error  # chained: --debug shows the whole story


def test_a_checkpoint_file_of_another_architecture_keeps_its_cause(monkeypatch, tmp_path):
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"x")
    error = RuntimeError("Error(s) in loading state_dict for CLIP: size mismatch for positional_embedding")
    monkeypatch.setattr(open_clip, "create_model_and_transforms", failing_loader(error))
    with pytest.raises(CaeError) as raised:
        load_clip("ViT-B-32", str(checkpoint), "cpu")
    assert f"the checkpoint {checkpoint} does not load into ViT-B-32" in str(raised.value)
    assert "size mismatch for positional_embedding" in str(raised.value)
    assert "network" not in str(raised.value)
    assert raised.value.__cause__ is error


def test_the_real_offline_hub_is_reported_as_a_network_failure(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest sets it too: no test waits on the network
    with pytest.raises(CaeError, match="the network failed") as raised:
        load_clip("ViT-B-32", "openai", "cpu")
    assert raised.value.__cause__ is not None
