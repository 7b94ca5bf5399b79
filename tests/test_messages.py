"""Messages that say the right thing (issue 14, items 7 and 9 to 12)."""

import pickle

import pytest
import torch

from fewshot_cli.checkpoint import load_checkpoint
from fewshot_cli.errors import FewshotError


class Payload:
    def __reduce__(self):
        return exec, ("raise SystemExit('payload ran')",)


@pytest.mark.parametrize("content, message", [
    (b"hello, this is a text file\n", "not a PyTorch checkpoint at all (it is a text file)"),
    (b"(dp0\nS'text that looks like a protocol-0 pickle'\n", "not a PyTorch checkpoint at all"),
    (b"", "not a PyTorch checkpoint at all (the file is empty)"),
    (bytes(range(256)) * 4, "not a PyTorch checkpoint at all (its content is neither"),
])
def test_a_file_that_is_no_checkpoint_is_not_called_unsafe(tmp_path, content, message):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(FewshotError) as error:
        load_checkpoint(path)
    assert message in str(error.value) and "could run code" not in str(error.value)


def test_unsafe_and_damaged_checkpoints_are_told_apart(tmp_path):
    unsafe_zip, unsafe_pickle, damaged = (tmp_path / n for n in ("zip.pt", "pickle.pt", "cut.pt"))
    torch.save({"algorithm": "protonet", "model": Payload()}, unsafe_zip)
    unsafe_pickle.write_bytes(pickle.dumps(Payload()))
    torch.save({"algorithm": "protonet", "model": {"w": torch.zeros(50)}}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(FewshotError, match="more than tensors and plain data.*could run code"):
        load_checkpoint(unsafe_zip)
    with pytest.raises(FewshotError, match="a Python pickle.*could run code"):
        load_checkpoint(unsafe_pickle)
    with pytest.raises(FewshotError, match="damaged or truncated PyTorch checkpoint") as error:
        load_checkpoint(damaged)
    assert "could run code" not in str(error.value)
