"""Our Conv-4 blocks are learn2learn's ``ConvBase``: same parameters, initial values and outputs.

``algorithms.backbone`` writes the blocks out so that a ProtoNet need not import learn2learn;
checkpoints and seeded runs from before must stay the same.
"""

import pytest
import torch

from fewshot_cli.algorithms.backbone import Conv4
from fewshot_cli.l2l import l2l


@pytest.mark.parametrize("variant", ["conv4", "conv4-strided"])
def test_conv4_is_learn2learns_convbase(variant):
    torch.manual_seed(3)
    ours = Conv4(variant).features
    after_ours = torch.rand(1)
    torch.manual_seed(3)
    theirs = l2l.vision.models.ConvBase(hidden=64, channels=1, layers=4,
                                        max_pool=variant == "conv4")
    assert torch.rand(1) == after_ours  # the same random draws, in the same order
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for name, value in theirs_state.items():
        assert torch.equal(ours_state[name], value), name
    images = torch.rand(6, 1, 28, 28)
    for train in (True, False):
        ours.train(train), theirs.train(train)
        expected = theirs(images)
        assert expected.shape[-1] == (1 if variant == "conv4" else 2)
        assert torch.equal(ours(images), expected)
