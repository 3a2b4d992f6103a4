"""ExecuTorch (XNNPACK): real exports and sessions on tiny timm models, the delegation facts, PT2E int8 and its
verdict on real photos through real EfficientNet-Lite0 weights, the missing extra and an unsupported operator."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests import realweights
from vischoose.deploy import verdict
from vischoose.errors import DeployError, MissingExtraError, UsageError
from vischoose.models.loading import load_model
from vischoose.report.flags import flag_of
from vischoose.runtimes import agreement
from vischoose.runtimes.executorch import MAX_BATCH, ExecuTorch

pytest.importorskip("executorch")
SIZE = 160  # test_resnet's native input side
THREADS = 2  # every session in this process: the XNNPACK threadpool is process-wide
BOUND = 8  # the fp32 program's largest batch (max_batch); int8 is built at the default, batch 1


@pytest.fixture(scope="module")
def resnet():
    return load_model("test_resnet", weights="random")


@pytest.fixture(scope="module")
def built(resnet, tmp_path_factory):
    """test_resnet at fp32 for 1 to BOUND images a call, and at int8 (random calibration) and fp32 for batch 1 (the
    default), built once for the module."""
    out = tmp_path_factory.mktemp("et")
    return {"fp32": ExecuTorch().build(resnet, "fp32", out / "test_resnet-fp32.pte", SIZE, None, max_batch=BOUND),
            "fp32-1": ExecuTorch().build(resnet, "fp32", out / "test_resnet-fp32-1.pte", SIZE, None),
            "int8": ExecuTorch().build(resnet, "int8", out / "test_resnet-int8.pte", SIZE, None)}


@pytest.mark.slow
def test_fp32_program_matches_eager_and_says_what_xnnpack_took(resnet, built):
    art = built["fp32"]
    assert (art.runtime, art.precision, art.recipe, art.calibration, art.input_size) == (
        "executorch", "fp32", None, "none", SIZE)
    assert art.path.endswith(".pte") and 0.5 < art.file_mb < 5  # 0.47 M fp32 parameters
    facts = art.facts
    assert (facts["batch"], facts["max_batch"]) == ("dynamic", BOUND)
    assert 0 < facts["delegated_nodes"] < facts["operator_nodes"]
    # XNNPACK does not take test_resnet's avg_pool2d (ceil_mode downsampling): it stays on the portable kernels
    assert facts["portable_ops"] == {"aten.avg_pool2d.default": 3}
    assert art.note.startswith(f"partly delegated: XNNPACK runs {facts['delegated_nodes']} of "
                               f"{facts['operator_nodes']} operator nodes; aten.avg_pool2d.default x3 run on")
    batch = agreement.random_batch(SIZE, 3)
    reference = agreement.eager_logits(resnet.model, batch)
    logits = ExecuTorch().session(art, THREADS)(batch)
    assert logits.shape == (3, 1000)
    assert agreement.fp32_matches(agreement.compare(reference, logits), reference)


@pytest.mark.slow
def test_the_program_takes_a_real_batch_in_one_call(resnet, built):
    """The file itself, at batch 1, 2 and BOUND in one call each (ExecuTorch's own Method, no chunking), gives eager's
    logits; the planned bound is the file's, and a batch above it is refused by the program, not by vischoose."""
    import torch
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(built["fp32"].path)
    method = program.load_method("forward")
    for n in (1, 2, BOUND):
        batch = agreement.random_batch(SIZE, n)
        (out,) = method.execute([torch.from_numpy(batch)])
        reference = agreement.eager_logits(resnet.model, batch)
        assert out.shape == (n, 1000)
        assert agreement.fp32_matches(agreement.compare(reference, out.numpy()), reference)
    with pytest.raises(RuntimeError):
        method.execute([torch.from_numpy(agreement.random_batch(SIZE, BOUND + 1))])
    assert ExecuTorch().inspect(built["fp32"].path).batch == (1, BOUND)
    larger = agreement.random_batch(SIZE, BOUND + 1)  # a session splits what one call cannot take
    assert ExecuTorch().session(built["fp32"], THREADS)(larger).shape == (BOUND + 1, 1000)


@pytest.mark.slow
def test_the_bound_is_what_was_asked_and_costs_planned_memory(built):
    """A batch-1 build (the default: what a phone app deploys) is a static batch-1 program, and the larger bound plans
    more buffer memory for the same model; a bound outside 1..MAX_BATCH is refused before anything is built."""
    one, bounded = built["fp32-1"], built["fp32"]
    assert ExecuTorch().inspect(one.path).batch == (1, 1) and (one.facts["batch"], one.facts["max_batch"]) == (1, 1)
    assert ExecuTorch().max_call_batch(one.facts) == 1 and ExecuTorch().max_call_batch(bounded.facts) == BOUND
    assert one.facts["memory_plan"]["planned_mb"] < bounded.facts["memory_plan"]["planned_mb"]
    assert one.facts["portable_ops"] == bounded.facts["portable_ops"]  # the same delegation either way
    with pytest.raises(DeployError) as caught:
        ExecuTorch().build(None, "fp32", one.path, SIZE, None, max_batch=MAX_BATCH + 1)
    assert str(caught.value) == f"ExecuTorch (XNNPACK) programs take 1 to {MAX_BATCH} images per call, not {MAX_BATCH + 1}."


@pytest.mark.slow
def test_int8_program_runs_and_random_calibration_stays_unverified(resnet, built):
    art = built["int8"]
    assert (art.precision, art.recipe, art.calibration, art.calibration_images) == (
        "int8", "xnnpack-pt2e-symmetric-per-channel", "random", 0)
    assert art.quantize_s > 0 and art.file_mb < built["fp32"].file_mb / 2
    batch = agreement.random_batch(SIZE, 4)
    found = agreement.compare(agreement.eager_logits(resnet.model, batch), ExecuTorch().session(art, THREADS)(batch))
    assert found.cosine > 0.99
    assert verdict.judge(found, real_images=False, pretrained=False).status == verdict.UNVERIFIED


@pytest.mark.slow
def test_session_sets_the_threadpool_to_exactly_the_threads_asked_and_then_keeps_it(built):
    """In a new process: the pool gets 1 worker; once a method holds it, another size is refused, not freed under it
    (resizing it then was a use-after-free that crashed the process later, anywhere)."""
    code = """if True:
        import json, sys
        from executorch.extension.pybindings import portable_lib as pl
        from vischoose.errors import DeployError
        from vischoose.deploy import verdict
        from vischoose.runtimes import agreement
        from vischoose.runtimes.artifact import Artifact
        from vischoose.runtimes.executorch import ExecuTorch
        art = Artifact.from_dict(json.loads(sys.argv[1]))
        batch = agreement.random_batch(int(sys.argv[2]), 2)
        first = ExecuTorch().session(art, 1)
        before = first(batch)
        print(pl._threadpool_get_thread_count())
        try:
            ExecuTorch().session(art, 2)
        except DeployError as err:
            print(err)
        assert (ExecuTorch().session(art, None)(batch) == before).all() and (first(batch) == before).all()
        print(pl._threadpool_get_thread_count())
    """
    import json

    done = subprocess.run([sys.executable, "-c", code, json.dumps(built["fp32"].to_dict()), str(SIZE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[-3:]
    assert lines[0] == "1" and lines[2] == "1"
    assert lines[1] == ("ExecuTorch's thread pool size is fixed at 1 in this process once a program has loaded "
                        "(XNNPACK holds it); measure 2 threads in a new process.")


@pytest.mark.slow
def test_lite0_int8_verdict_on_real_photos(lite0, tmp_path):
    from vischoose.inference.calibration import load_calibration, preprocessing

    loaded = load_model(realweights.TAG, weights="pretrained")
    size = loaded.input_size
    photos = load_calibration(realweights.labelled_folder(tmp_path / "photos"), preprocessing(loaded, size)).batch
    art = ExecuTorch().build(loaded, "int8", tmp_path / "lite0-int8.pte", size, photos)
    assert (art.calibration, art.calibration_images) == ("images", len(photos))
    found = agreement.compare(agreement.eager_logits(loaded.model, photos), ExecuTorch().session(art, THREADS)(photos))
    result = verdict.judge(found, real_images=True, pretrained=True)
    expected = verdict.OK if found.top1_agreement >= verdict.MIN_AGREEMENT else verdict.REJECTED
    assert result.status == expected and found.n_images == len(photos)
    if expected == verdict.REJECTED:
        assert result.note.startswith(f"top-1 agreement {found.top1_agreement:.1%} < 99.0%")


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(ExecuTorch, "module", "executorch_not_installed_here")
    with pytest.raises(MissingExtraError) as caught:
        ExecuTorch().require()
    assert caught.value.exit_code == 2
    assert caught.value.hint == "pip install 'vischoose[mobile]'"
    assert caught.value.render(flag_of)[0] == "--runtime executorch is not available here: ExecuTorch (XNNPACK) is not installed."


@pytest.mark.slow
def test_unsupported_operator_is_named(tmp_path):
    # test_vit resizes its position embeddings with antialiased bicubic interpolation (dynamic_img_size),
    # which is not in the Core ATen opset ExecuTorch lowers
    loaded = load_model("test_vit", weights="random")
    with pytest.raises(DeployError) as caught:
        ExecuTorch().build(loaded, "fp32", tmp_path / "vit.pte", SIZE, None)
    assert str(caught.value).startswith("lowering to XNNPACK of test_vit.r160_in1k for ExecuTorch failed at operator "
                                        "aten._upsample_bicubic2d_aa.default: ")
    assert not (tmp_path / "vit.pte").exists()


@pytest.mark.slow
def test_a_built_program_opened_as_written_reads_its_shape_and_runs_the_same(built, cached_model, runner, tmp_path):
    """evaluate --graph on a .pte: batches and input side from the program's input, precision from what XNNPACK
    runs (int8 values in its payloads), the logits are the file's."""
    import json

    from tests.inference.test_evaluation import synset_folder
    from vischoose.cli import app

    batch = agreement.random_batch(SIZE, 3)
    art = built["int8"]
    opened = ExecuTorch().open_file(art.path, "int8")
    assert (opened.precision, opened.input_size, opened.facts["batch"]) == ("int8", SIZE, 1)
    assert (ExecuTorch().session(opened, THREADS)(batch) == ExecuTorch().session(art, THREADS)(batch)).all()
    unlabelled = ExecuTorch().open_file(art.path)
    assert (unlabelled.precision, unlabelled.note) == ("int8", None)  # read from the program, not a guess
    assert ExecuTorch().open_file(built["fp32"].path).precision == "fp32"
    with pytest.raises(UsageError) as caught:
        ExecuTorch().open_file(art.path, "fp32")
    assert str(caught.value).startswith("test_resnet-int8.pte is an int8 ExecuTorch (XNNPACK) file, not ")
    cached_model("test_resnet.r160_in1k")
    result = runner.invoke(app, ["evaluate", str(synset_folder(tmp_path / "data")), "-m", "test_resnet.r160_in1k",
                                 "--graph", art.path, "--precision", "int8", "--json", "--no-save"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    assert (out["runtime"], out["dtype"], out["images"]) == ("executorch", "int8", 6)


@pytest.mark.slow
def test_ranks_pt2e_layers_and_keeps_the_excluded_modules_in_float(tmp_path):
    """ExecuTorch (random weights): every conv and linear module is ranked, by module name; the two worst,
    excluded, stay float in PT2E's graph while the rest stay int8, and the program built so runs and carries their
    weights in float."""
    import numpy as np
    import torch

    from vischoose.models.loading import load_model
    from vischoose.runtimes import pt2e

    runtime = ExecuTorch()
    loaded = load_model("test_resnet.r160_in1k", weights="random")
    size, images = loaded.input_size, agreement.random_batch(loaded.input_size, n=2)
    plain = runtime.build(loaded, "int8", tmp_path / "net-int8.pte", size, images)
    ranked = runtime.rank_layers(loaded, plain, plain, images, images)  # from the model: no fp32 file is read
    convs = {name for name, m in loaded.model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert {layer.node for layer in ranked} == convs
    assert [layer.added_db for layer in ranked] == sorted((layer.added_db for layer in ranked), reverse=True)
    kept = [layer.node for layer in ranked[:2]]
    program = torch.export.export(loaded.model, (torch.zeros(1, 3, size, size),)).module()
    assert set(pt2e.layers(pt2e.converted(program, images, kept), quantized_only=True)) == convs - set(kept)
    mixed = runtime.build_excluding(loaded, plain, tmp_path / "net-mixed.pte", images, kept)
    batch = agreement.random_batch(size, n=2, seed=5)
    assert np.isfinite(runtime.session(mixed, THREADS)(batch)).all()
    # the kept layers' weights are 4 bytes a parameter in the program instead of 1. (Their logits may equal plain
    # int8's to the bit: the next layer still quantizes a kept layer's output, and with random weights the int8
    # weight error is often below that step; 4 of 6 random models here.)
    modules = dict(loaded.model.named_modules())
    kept_params = sum(modules[name].weight.numel() for name in kept)
    grown = (tmp_path / "net-mixed.pte").stat().st_size - (tmp_path / "net-int8.pte").stat().st_size
    assert grown >= 2 * kept_params


def _std_stem():
    """A hybrid's stem in small: a 'SAME'-padded and a plainly padded weight-standardised convolution."""
    import torch
    from timm.layers.std_conv import StdConv2d, StdConv2dSame

    torch.manual_seed(0)
    return torch.nn.Sequential(StdConv2dSame(3, 8, 3, stride=2, eps=1e-8), torch.nn.ReLU(),
                               StdConv2d(8, 4, 3, padding=1, bias=True)).eval()


def test_standardized_convs_compute_the_same_and_are_put_back():
    import torch

    from vischoose.runtimes.torchexport import standardized_convs

    stem, x = _std_stem(), torch.randn(1, 3, 33, 33)  # odd side: 'SAME' pads unevenly
    originals = [stem[0], stem[2]]
    with torch.no_grad():
        before = stem(x)
        with standardized_convs(stem) as swapped:
            assert swapped == 2 and not any("Std" in type(m).__name__ for m in stem.modules())
            during = stem(x)
    assert torch.allclose(during, before, atol=1e-5)
    assert [stem[0], stem[2]] == originals


@pytest.mark.slow
def test_a_weight_standardised_stem_is_delegated_whole():
    # exported as it is, the standardisation makes the convolution's weight a computed tensor, which XNNPACK does not
    # take: the stem then ran on portable kernels, 36-130x slower than in torch
    import torch

    from vischoose.runtimes.executorch import _lowered
    from vischoose.runtimes.torchexport import standardized_convs

    stem, example = _std_stem(), (torch.zeros(1, 3, 32, 32),)
    with torch.no_grad():
        _, as_is = _lowered(None, torch.export.export(stem, example), 1)  # (the program's bytes, its delegation)
        with standardized_convs(stem):
            _, folded = _lowered(None, torch.export.export(stem, example), 1)
    assert "aten.convolution.default" in as_is["portable_ops"]
    assert folded["portable_ops"] == {} and folded["delegated_subgraphs"] == 1


def _static_program(path, delegate: bool) -> None:
    """A program built elsewhere: a tiny conv net exported at a static batch of 1, on XNNPACK or on the portable
    kernels alone (no delegate payload says what precision it runs)."""
    import torch
    from executorch.exir import to_edge, to_edge_transform_and_lower

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10)).eval()
    program = torch.export.export(net, (torch.zeros(1, 3, 16, 16),))
    if delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    else:
        edge = to_edge(program)
    path.write_bytes(edge.to_executorch().buffer)


@pytest.mark.slow
def test_a_static_batch_1_program_built_elsewhere_runs_image_by_image_and_says_so(tmp_path):
    path = tmp_path / "static.pte"
    _static_program(path, delegate=True)
    facts = ExecuTorch().inspect(path)
    assert (facts.batch, facts.input_size, facts.precision) == ((1, 1), 16, "fp32")
    opened = ExecuTorch().open_file(path)
    assert ExecuTorch().max_call_batch(opened.facts) == 1
    assert ExecuTorch().session(opened, THREADS)(agreement.random_batch(16, 3)).shape == (3, 10)


@pytest.mark.slow
def test_a_program_whose_operators_do_not_show_its_precision_is_unknown_never_fp32(tmp_path):
    path = tmp_path / "portable.pte"
    _static_program(path, delegate=False)
    assert ExecuTorch().inspect(path).precision == "unknown"
    opened = ExecuTorch().open_file(path)
    assert opened.precision == "unknown"
    assert opened.note == ("the ExecuTorch (XNNPACK) file does not show its precision: labelled unknown (pass "
                           "`precision` if you know it)")
    assert ExecuTorch().open_file(path, "int8").precision == "int8"
class Cumsum(torch.nn.Module):
    """An operator XNNPACK does not take: planted before the head, it runs on a portable kernel."""

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.cumsum(x, dim=-1)


@pytest.mark.slow
def test_layer_profile_reads_xnnpack_and_names_the_portable_kernels(tmp_path):
    """ETDump through the devtools Inspector: XNNPACK's own operators per delegate call, and the portable kernels
    named off the fast path: test_resnet's avg_pool2d and a planted cumsum."""
    loaded = load_model("test_resnet", weights="random")
    loaded.model.fc = torch.nn.Sequential(Cumsum(), loaded.model.fc)
    planted = ExecuTorch().build(loaded, "fp32", tmp_path / "planted.pte", SIZE, None)
    found = ExecuTorch().layer_profile(planted, 1, THREADS, runs=3)
    assert found.profiler.startswith("ExecuTorch ") and found.profiler.endswith(" ETDump (devtools Inspector)")
    slow = {layer.op for layer in found.off_fast_path}
    assert slow == {"avg_pool2d", "cumsum"}
    assert all(layer.kernel == "portable kernel" for layer in found.off_fast_path)
    xnnpack = [layer for layer in found.layers if layer.kernel == "XNNPACK"]
    assert any(layer.op == "Convolution" and "[call 1]" in layer.name for layer in xnnpack)
    assert found.total_ms > 0 and found.accounted_ms > 0 and found.runs == 3
