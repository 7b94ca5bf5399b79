"""The vmap MAML engine against learn2learn's loop: same meta-gradients, same adapted predictions.

The reference is ``fewshot_cli.algorithms.maml`` (``l2l.algorithms.MAML``) through the seam's
training step and classifier (queries classified together with the support set) on the same network, built with
BatchNorm that keeps no running statistics (the MAML paper's), from the same weights and tasks.
Comparisons run in float64, where the two engines agree to ~1e-14; the tolerance (1e-9 of the
largest component) is far below the ~1e-3 error that ``F.batch_norm`` inside vmap gives.
"""

import copy
from types import SimpleNamespace

import pytest
import torch

from fewshot_cli.algorithms import maml, maml_family, maml_vmap
from fewshot_cli.algorithms.base import step_on_episodes
from fewshot_cli.data.episodes import Episode, EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: a second CPU thread only adds hand-offs (10x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_tasks(tasks, ways, shots, queries, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def labels(per_class):
        return torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).clone()

    return maml_vmap.TaskBatch(
        torch.rand(tasks, ways * shots, 1, 28, 28, generator=generator, dtype=dtype), labels(shots),
        torch.rand(tasks, ways * queries, 1, 28, 28, generator=generator, dtype=dtype), labels(queries))


def episodes_of(batch):
    """The seam's ``Episode``s of a ``TaskBatch``."""
    ways = int(batch.support_labels.max()) + 1
    return [Episode(batch.support[i], batch.support_labels[i], batch.query[i],
                    batch.query_labels[i], ways) for i in range(len(batch))]


def paper_model(ways, backbone="conv4-strided", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return maml_vmap.without_running_stats(maml_family.network(ways, backbone)).to(dtype)


def both_meta_steps(model, batch, steps, inner_lr, first_order, device="cpu"):
    """Each engine's meta_step on its own copy of ``model``, SGD with lr 1 (so steps compare too)."""
    l2l_model, vmap_model = copy.deepcopy(model).to(device), copy.deepcopy(model).to(device)
    batch = batch.to(device)
    config = SimpleNamespace(inner_steps=steps, inner_lr=inner_lr, first_order=first_order)
    l2l_out = step_on_episodes(maml.ALGORITHM, l2l_model,
                               torch.optim.SGD(l2l_model.parameters(), lr=1.0),
                               episodes_of(batch), config)
    vmap_out = maml_vmap.meta_step(vmap_model, torch.optim.SGD(vmap_model.parameters(), lr=1.0),
                                   batch, steps, inner_lr, first_order)
    return (l2l_model, l2l_out), (vmap_model, vmap_out)


def assert_same_meta_step(l2l_side, vmap_side, rtol=1e-9):
    (l2l_model, (l2l_loss, l2l_acc)), (vmap_model, (vmap_loss, vmap_acc)) = l2l_side, vmap_side
    assert vmap_loss == pytest.approx(l2l_loss, rel=1e-9)
    assert vmap_acc == pytest.approx(l2l_acc, abs=1e-6)  # l2l's accuracies are float32
    l2l_params, vmap_params = dict(l2l_model.named_parameters()), dict(vmap_model.named_parameters())
    assert l2l_params.keys() == vmap_params.keys()
    scale = max(p.grad.abs().max().item() for p in l2l_params.values())
    assert scale > 1e-4, "meta-gradient vanished: the comparison would be empty"
    for name, p in l2l_params.items():
        q = vmap_params[name]
        assert (q.grad.double().cpu() - p.grad.double().cpu()).abs().max().item() <= rtol * scale, name
        assert (q.double().cpu() - p.double().cpu()).abs().max().item() <= rtol * scale, name
        if name.endswith("conv.bias"):
            # BatchNorm subtracts the batch mean right after: the loss cannot depend on these.
            assert q.grad.abs().max().item() <= 1e-12, name


@pytest.mark.parametrize("backbone", ["conv4", "conv4-strided"])
@pytest.mark.parametrize("ways,steps,inner_lr", [(5, 1, 0.4), (5, 5, 0.4), (20, 1, 0.1), (20, 5, 0.1)])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_meta_gradient_matches_l2l(backbone, ways, steps, inner_lr, first_order):
    model = paper_model(ways, backbone)
    batch = random_tasks(2, ways, 1, 1, seed=ways + steps)
    assert_same_meta_step(*both_meta_steps(model, batch, steps, inner_lr, first_order))


def test_second_order_differs_from_first_order():
    model = paper_model(5)
    batch = random_tasks(2, 5, 1, 1)
    grads = {}
    for first_order in (False, True):
        m = copy.deepcopy(model)
        losses, _ = maml_vmap.meta_loss(m, batch, 1, 0.4, first_order)
        losses.mean().backward()
        grads[first_order] = torch.cat([p.grad.flatten() for p in m.parameters()])
    assert (grads[False] - grads[True]).abs().max() > 1e-4


def test_meta_loss_takes_episodes_and_leaves_the_model_alone(tiny_data):
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "train"), 5, 1, 1, seed=0)
    episodes = [sampler[i] for i in range(3)]
    model = paper_model(5, dtype=torch.float32)
    before = copy.deepcopy(model.state_dict())
    losses, accuracies = maml_vmap.meta_loss(model, episodes, 1, 0.4)
    assert losses.shape == accuracies.shape == (3,)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    batch = maml_vmap.stack_episodes(episodes)
    assert batch.support.shape == (3, 5, 1, 28, 28) and batch.query_labels.shape == (3, 5)


def adapted_logits_l2l(model, batch, steps, inner_lr, bn_mode):
    """What evaluation.evaluate does, episode by episode, on a copy of ``model``."""
    model = copy.deepcopy(model)
    model.train(bn_mode == "batch")
    config = SimpleNamespace(inner_lr=inner_lr, test_inner_steps=steps)
    out = []
    for i in range(len(batch)):
        ways = int(batch.support_labels[i].max()) + 1
        fitted = maml.classifier(model, batch.support[i], batch.support_labels[i], ways, config)
        with torch.no_grad():
            out.append(fitted(batch.query[i]))
    return torch.stack(out)


def tracking_model(ways, dtype):
    """A network keeping running statistics, given non-trivial ones (as after training)."""
    torch.manual_seed(1)
    model = maml_family.network(ways, "conv4-strided").to(dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
@pytest.mark.parametrize("ways,steps,inner_lr", [(5, 3, 0.4), (20, 5, 0.1)])
def test_adapted_predictions_match_l2l(bn_mode, ways, steps, inner_lr):
    batch = random_tasks(5, ways, 1, 3, seed=7)
    model = tracking_model(ways, torch.float64) if bn_mode == "running" else paper_model(ways)
    before = copy.deepcopy(model.state_dict())
    expected = adapted_logits_l2l(model, batch, steps, inner_lr, bn_mode)
    # chunk=2: episodes in three vmapped calls, the last one short.
    logits = maml_vmap.adapted_logits(model, batch, steps, inner_lr, bn_mode, chunk=2)
    assert not logits.requires_grad
    assert (logits - expected).abs().max().item() <= 1e-9 * expected.abs().max().item()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_adapted_accuracies_match_l2l_in_float32():
    batch = random_tasks(8, 5, 1, 15, seed=3, dtype=torch.float32)
    model = paper_model(5, dtype=torch.float32)
    expected = adapted_logits_l2l(model, batch, 3, 0.4, "batch").argmax(-1)
    predictions, accuracies = maml_vmap.adapt_and_predict(model, batch, 3, 0.4)
    assert torch.equal(predictions, expected)
    assert torch.equal(accuracies, (expected == batch.query_labels).float().mean(1))


def test_batch_stat_norm_is_batchnorm():
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64) * 3 + 1
    norm = torch.nn.BatchNorm2d(4).double()
    torch.nn.init.uniform_(norm.weight)
    torch.nn.init.uniform_(norm.bias)
    ours = maml_vmap.BatchStatNorm(4, eps=norm.eps).double()
    ours.weight, ours.bias = norm.weight, norm.bias
    torch.testing.assert_close(ours(x), norm.train()(x))  # also fills norm's running statistics
    fixed = maml_vmap.BatchStatNorm(4, norm.eps, True, norm.running_mean, norm.running_var).double()
    fixed.weight, fixed.bias = norm.weight, norm.bias
    torch.testing.assert_close(fixed(x), norm.eval()(x))


def test_refuses_to_train_a_network_with_running_statistics():
    model = maml_family.network(5)
    batch = random_tasks(2, 5, 1, 1, dtype=torch.float32)
    with pytest.raises(FewshotError, match="running statistics") as error:
        maml_vmap.meta_step(model, torch.optim.Adam(model.parameters()), batch, 1, 0.4)
    assert "\n" not in str(error.value)
    with pytest.raises(FewshotError, match="running statistics"):
        maml_vmap.adapted_logits(paper_model(5), batch.to("cpu", torch.float64), 1, 0.4, "running")


def test_stack_episodes_refuses_mixed_shapes():
    a, b = random_tasks(1, 5, 1, 1)[0], random_tasks(1, 5, 2, 1)[0]
    with pytest.raises(FewshotError, match="one shape"):
        maml_vmap.stack_episodes([a, b])


def test_short_vmap_training_lowers_the_loss(tiny_data):
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "train"), 5, 1, 1, seed=0)
    held_out = maml_vmap.stack_episodes([sampler[i] for i in range(1000, 1016)])
    model = paper_model(5, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def held_out_loss():
        with torch.no_grad():
            return maml_vmap.meta_loss(model, held_out, 1, 0.4)[0].mean().item()

    before = held_out_loss()
    for step in range(25):
        batch = [sampler[step * 8 + i] for i in range(8)]
        maml_vmap.meta_step(model, optimizer, batch, 1, 0.4, first_order=False)
    assert held_out_loss() < 0.8 * before


@CUDA
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_meta_gradient_matches_l2l_on_cuda(first_order):
    model = paper_model(20)
    batch = random_tasks(3, 20, 1, 2, seed=1)
    l2l_side, vmap_side = both_meta_steps(model, batch, 5, 0.1, first_order, device="cuda")
    assert next(vmap_side[0].parameters()).is_cuda
    assert_same_meta_step(l2l_side, vmap_side)
    # ... and the same as on the CPU.
    _, cpu_side = both_meta_steps(model, batch, 5, 0.1, first_order)
    assert_same_meta_step(cpu_side, vmap_side)


@CUDA
def test_adapted_predictions_match_l2l_on_cuda():
    model = paper_model(5).cuda()
    batch = random_tasks(4, 5, 1, 15, seed=2).to("cuda")
    expected = adapted_logits_l2l(model, batch, 3, 0.4, "batch")
    logits = maml_vmap.adapted_logits(model, batch, 3, 0.4)
    assert logits.is_cuda
    assert (logits - expected).abs().max().item() <= 1e-9 * expected.abs().max().item()
