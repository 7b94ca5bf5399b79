"""The captured training step (algorithms.maml_graph) and the run's precision (run.precision).

On CPU: when a run captures its step (--cuda-graph auto/on/off), refusals, the optimizer made
capturable, the warm-up undone, channels-last inputs, TF32 flags applied and restored. On CUDA:
the captured step's losses and weights after 20 iterations against the eager vmap step's.
"""

import copy
from types import SimpleNamespace

import pytest
import torch

from fewshot_cli.algorithms import maml_family, maml_vmap
from fewshot_cli.algorithms.maml_graph import (
    GraphedStep,
    restore_state,
    save_state,
    set_capturable,
    static_buffers,
    to_channels_last,
    use_cuda_graph,
)
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.precision import PRECISIONS, apply_precision, precision, restore_precision

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
# Adam(capturable=True) stepping outside a graph warns: the eager side of a comparison must.
EAGER_CAPTURABLE = pytest.mark.filterwarnings("ignore:.*running without CUDA graph capture")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: a second CPU thread only adds hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kept_flags():
    """The TF32 and cuDNN flags as they were, whatever a test does to them."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic) = flags


def random_tasks(tasks, ways, shots, queries, seed=0, dtype=torch.float32, device="cpu"):
    generator = torch.Generator().manual_seed(seed)

    def labels(per_class):
        return torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).clone()

    return maml_vmap.TaskBatch(
        torch.rand(tasks, ways * shots, 1, 28, 28, generator=generator, dtype=dtype), labels(shots),
        torch.rand(tasks, ways * queries, 1, 28, 28, generator=generator, dtype=dtype),
        labels(queries)).to(device)


def paper_model(ways, seed=0, dtype=torch.float32, device="cpu"):
    torch.manual_seed(seed)
    network = maml_family.network(ways, "conv4-strided")
    return maml_vmap.without_running_stats(network).to(device, dtype)


def run_config(cuda_graph="auto", engine="vmap"):
    return SimpleNamespace(cuda_graph=cuda_graph, engine=engine, inner_steps=1, inner_lr=0.4,
                           first_order=False)


# --- when a run captures its step ---------------------------------------------------------------

@pytest.mark.parametrize("setting,device,engine,world,expected", [
    ("auto", "cpu", "vmap", 1, False),
    ("off", "cpu", "vmap", 1, False),
    ("auto", "cuda", "vmap", 1, True),  # the decision alone: no CUDA device is touched
    ("on", "cuda", "vmap", 1, True),
    ("off", "cuda", "vmap", 1, False),
    ("auto", "cuda", "l2l", 1, False),
    ("auto", "cuda", None, 1, False),  # ProtoNet: no engine
    ("auto", "cuda", "vmap", 2, False),
])
def test_auto_captures_on_cuda_with_the_vmap_engine_in_one_process(setting, device, engine, world,
                                                                   expected):
    assert use_cuda_graph(setting, device, engine, world) is expected


@pytest.mark.parametrize("device,engine,world,why", [
    ("cpu", "vmap", 1, "it needs a CUDA device (this run's is cpu)"),
    ("cuda", "l2l", 1, "it captures the vmap engine's step (this run's engine is l2l)"),
    ("cuda", None, 1, "this run's engine is none"),
    ("cuda", "vmap", 4, "data-parallel"),
])
def test_on_where_it_does_not_apply_is_refused_in_one_line(device, engine, world, why):
    with pytest.raises(FewshotError) as error:
        use_cuda_graph("on", device, engine, world)
    message = str(error.value)
    assert message.startswith("--cuda-graph on does not apply: ") and why in message
    assert "\n" not in message


def test_an_unknown_setting_is_refused():
    with pytest.raises(FewshotError, match="unknown --cuda-graph 'yes' .choose from auto, on, off"):
        use_cuda_graph("yes", "cpu", "vmap")


def test_for_run_gives_no_graph_on_cpu_and_refuses_on():
    model = paper_model(5)
    optimizer = torch.optim.Adam(model.parameters())
    assert GraphedStep.for_run(model, optimizer, run_config("auto"), "cpu") is None
    assert GraphedStep.for_run(model, optimizer, run_config("off"), "cpu") is None
    with pytest.raises(FewshotError, match="needs a CUDA device"):
        GraphedStep.for_run(model, optimizer, run_config("on"), "cpu")
    with pytest.raises(FewshotError, match="engine is l2l"):
        GraphedStep.for_run(model, optimizer, run_config("on", "l2l"), "cuda")


def test_a_captured_step_refuses_a_model_on_the_cpu():
    model = paper_model(5)
    with pytest.raises(FewshotError, match="needs a CUDA device"):
        GraphedStep(model, torch.optim.Adam(model.parameters()), 1, 0.4)


# --- the optimizer, made capturable; the warm-up, undone ---------------------------------------

def test_set_capturable_overrides_what_a_checkpoint_brings_back():
    model = paper_model(5)
    plain = torch.optim.Adam(model.parameters())
    maml_vmap.meta_step(model, plain, random_tasks(2, 5, 1, 1), 1, 0.4)
    restored = torch.optim.Adam(model.parameters(), capturable=True)
    restored.load_state_dict(plain.state_dict())
    assert restored.param_groups[0]["capturable"] is False  # why set_capturable exists
    set_capturable(restored, True)
    assert all(group["capturable"] for group in restored.param_groups)
    set_capturable(restored, False)
    steps = [state["step"] for state in restored.state.values()]
    assert steps and all(step.device.type == "cpu" and step.item() == 1 for step in steps)
    with pytest.raises(FewshotError, match="SGD cannot be captured"):
        set_capturable(torch.optim.SGD(model.parameters(), lr=0.1), True)


@pytest.mark.parametrize("stepped_before", [0, 2])
def test_restore_state_undoes_steps_exactly(stepped_before):
    """What the warm-up before capture relies on: restored weights and Adam state (zeros where
    Adam had none yet) go on exactly as if the warm-up steps had never been taken."""
    batches = [random_tasks(2, 5, 1, 1, seed=s) for s in range(6)]
    model = paper_model(5)
    twin = copy.deepcopy(model)
    optimizer, twin_optimizer = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (model, twin))
    for batch in batches[:stepped_before]:
        maml_vmap.meta_step(model, optimizer, batch, 1, 0.4)
        maml_vmap.meta_step(twin, twin_optimizer, batch, 1, 0.4)
    saved = save_state(model, optimizer)
    tensors = [p for p in model.parameters()] + [
        v for s in optimizer.state.values() for v in s.values()]
    for batch in batches[3:]:  # the warm-up
        maml_vmap.meta_step(model, optimizer, batch, 1, 0.4)
    restore_state(model, optimizer, saved)
    after = [p for p in model.parameters()]
    assert all(a is b for a, b in zip(after, tensors))  # in place: a graph reads these tensors
    for batch in batches[stepped_before:stepped_before + 2]:
        assert maml_vmap.meta_step(model, optimizer, batch, 1, 0.4) == \
            maml_vmap.meta_step(twin, twin_optimizer, batch, 1, 0.4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_meta_update_is_meta_step_without_reading_back():
    batch = random_tasks(2, 5, 1, 1)
    model = paper_model(5)
    twin = copy.deepcopy(model)
    optimizer, twin_optimizer = (torch.optim.Adam(m.parameters()) for m in (model, twin))
    loss, accuracy = maml_vmap.meta_update(model, optimizer, batch, 1, 0.4)
    assert loss.dim() == 0 and not loss.requires_grad
    assert (loss.item(), accuracy.item()) == maml_vmap.meta_step(twin, twin_optimizer, batch, 1, 0.4)


# --- channels-last -----------------------------------------------------------------------------

def test_channels_last_model_and_buffers_compute_the_same_meta_step():
    batch = random_tasks(3, 5, 1, 2, dtype=torch.float64)
    model = paper_model(5, dtype=torch.float64)
    twin = to_channels_last(copy.deepcopy(model))
    conv = next(p for p in twin.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    static = static_buffers(batch, channels_last=True)
    for name in ("support", "support_labels", "query", "query_labels"):
        getattr(static, name).copy_(getattr(batch, name))
    assert static.support[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(static.support, batch.support)
    optimizer, twin_optimizer = (torch.optim.Adam(m.parameters()) for m in (model, twin))
    for _ in range(2):
        ours = maml_vmap.meta_step(twin, twin_optimizer, static, 1, 0.4)
        theirs = maml_vmap.meta_step(model, optimizer, batch, 1, 0.4)
        assert ours == pytest.approx(theirs, rel=1e-12)
    for (name, a), b in zip(twin.named_parameters(), model.parameters()):
        if not name.endswith("conv.bias"):  # rounding noise before BatchNorm, scaled up by Adam
            assert torch.allclose(a, b, atol=1e-12), name


# --- precision ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,on", [("fp32", False), ("tf32", True)])
def test_precision_sets_both_tf32_flags_and_restores_them(kept_flags, name, on):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (not on, not on)
    before = apply_precision(name)
    assert before == (not on, not on)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (on, on)
    restore_precision(before)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (not on,
                                                                                      not on)


def test_precision_block_restores_even_after_an_error(kept_flags):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # torch's
    with pytest.raises(RuntimeError, match="inside"):
        with precision("tf32"):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            raise RuntimeError("inside")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)


def test_an_unknown_precision_is_refused(kept_flags):
    with pytest.raises(FewshotError, match=r"unknown precision 'bf16' \(choose from fp32, tf32\)"):
        apply_precision("bf16")
    assert PRECISIONS == ("fp32", "tf32")


# --- on CUDA: the captured step against the eager one ------------------------------------------

def eager_and_captured(iterations, channels_last=False, first_order=False, seed=0):
    """Losses and final weights of the eager vmap step and of the captured step, from the same
    weights on the same ``iterations`` batches, with a learning rate halved every 7 iterations (so the
    graph's rate tensor must follow the scheduler). Both use Adam(capturable=True): the same
    optimizer arithmetic, so the two differ by nothing but the capture."""
    batches = [random_tasks(4, 5, 1, 1, seed=seed + i, device="cuda") for i in range(iterations)]
    model = paper_model(5, seed=seed, device="cuda")
    twin = copy.deepcopy(model)
    results = []
    for graphed in (False, True):
        network = twin if graphed else model
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, capturable=True)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.5)
        step = GraphedStep(network, optimizer, 1, 0.4, first_order, channels_last) if graphed \
            else None
        losses = []
        for batch in batches:
            if graphed:
                losses.append(step.step(batch))
            else:
                losses.append(maml_vmap.meta_step(network, optimizer, batch, 1, 0.4, first_order))
            scheduler.step()
        results.append((losses, {k: v.detach().cpu() for k, v in network.named_parameters()}))
    return results


@CUDA
@EAGER_CAPTURABLE
@pytest.mark.parametrize("first_order", [False, True])
def test_captured_step_matches_the_eager_vmap_step_on_cuda(kept_flags, first_order):
    apply_precision("fp32")
    torch.backends.cudnn.deterministic = True  # the same convolution kernels in both
    (eager_losses, eager), (graph_losses, graph) = eager_and_captured(20, first_order=first_order)
    assert graph_losses == pytest.approx(eager_losses, abs=1e-5)
    start = paper_model(5)
    assert any((eager[k] - start.state_dict()[k]).abs().max() > 1e-3 for k in eager)  # it trained
    for name, value in eager.items():
        assert torch.allclose(graph[name], value, atol=1e-5, rtol=0), name


@CUDA
@EAGER_CAPTURABLE
def test_captured_step_in_channels_last_matches_on_cuda(kept_flags):
    apply_precision("fp32")
    torch.backends.cudnn.deterministic = True
    (eager_losses, eager), (graph_losses, graph) = eager_and_captured(10, channels_last=True)
    assert graph_losses == pytest.approx(eager_losses, rel=1e-4, abs=1e-5)
    for name, value in eager.items():
        if not name.endswith("conv.bias"):  # other kernels: rounding noise before BatchNorm,
            # which Adam scales up to whole steps, differs (tests/test_engine.py)
            assert torch.allclose(graph[name], value, atol=1e-4, rtol=0), name


@CUDA
def test_captured_step_refuses_a_batch_of_another_shape_on_cuda():
    model = paper_model(5, device="cuda")
    optimizer = torch.optim.Adam(model.parameters(), capturable=True)
    step = GraphedStep.for_run(model, optimizer, run_config("on"), "cuda")
    loss, accuracy = step.step(random_tasks(2, 5, 1, 1, device="cuda"))
    assert loss > 0 and 0 <= accuracy <= 1
    with pytest.raises(FewshotError, match="takes batches of support"):
        step.step(random_tasks(3, 5, 1, 1, device="cuda"))


@CUDA
def test_captured_step_refuses_an_optimizer_not_capturable_on_cuda():
    model = paper_model(5, device="cuda")
    with pytest.raises(FewshotError, match="capturable=True"):
        GraphedStep(model, torch.optim.Adam(model.parameters()), 1, 0.4)


# --- the benchmark -----------------------------------------------------------------------------

def test_benchmark_on_cpu_says_capture_needs_cuda_and_times_the_eager_step(capsys):
    from benchmarks import graph

    graph.main(["--cells", "5w1s", "--meta-batch", "1", "--iterations", "1",
                "--precisions", "fp32,tf32"])  # no --threads: it would set the suite's
    out = capsys.readouterr().out
    assert "the captured step needs CUDA: timing the eager vmap step only" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("5w1s")]
    assert [row[:3] for row in rows] == [["5w1s", "1", "fp32"], ["5w1s", "1", "tf32"]]
    assert all(len(row) == 4 and float(row[3]) > 0 for row in rows)
