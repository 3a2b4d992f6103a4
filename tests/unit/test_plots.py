"""plots.py: the Pareto front, what gets plotted, and a figure that reads well (labels do not overlap)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from tests.unit.test_store import make_profile
from vischoose.errors import UsageError
from vischoose.report import plots


def three_models():
    """ResNet-50, ViT-B/16 and the R50+ViT-B/16 hybrid, CPU figures of the right magnitude."""
    return [make_profile("resnet50", latency_ms_p50=33.1, throughput_img_s=41.2, peak_memory_mb=180.0, top1=80.38),
            make_profile("vit_b16", latency_ms_p50=73.5, throughput_img_s=16.8, peak_memory_mb=420.0, top1=85.11),
            make_profile("r50_vit_b16", latency_ms_p50=260.0, throughput_img_s=4.9, peak_memory_mb=560.0,
                         top1=84.99, input_size=384)]


def test_pareto_front_both_directions():
    xy = [(41.2, 80.4), (16.8, 85.1), (4.9, 85.0), (30.0, 80.0)]
    assert plots.pareto_front(xy, higher_x_is_better=True) == [0, 1]
    lat = [(33.1, 80.4), (73.5, 85.1), (260.0, 85.0), (30.0, 79.0)]
    assert plots.pareto_front(lat, higher_x_is_better=False) == [0, 1, 3]
    assert plots.pareto_front([(1.0, 1.0), (1.0, 1.0)], True) == [0, 1]  # ties dominate neither


def test_plot_points_skip_failed_and_incomplete_and_prefer_measured_top1():
    profiles = [*three_models(), make_profile("vit_l16", error="OutOfMemoryError"),
                make_profile("x", top1=None), make_profile("y", throughput_img_s=None)]
    points = plots.plot_points(profiles, "throughput", top1={("resnet50", "torch", "float32"): 78.5})
    assert [(p.profile.model, p.y, p.measured_top1) for p in points] == [
        ("resnet50", 78.5, True), ("vit_b16", 85.11, False), ("r50_vit_b16", 84.99, False)]


def test_latency_points_collapse_batch_sizes():
    profiles = [make_profile(batch_size=b, throughput_img_s=10.0 * b) for b in (1, 8, 64)]
    assert len(plots.plot_points(profiles, "latency")) == 1
    assert len(plots.plot_points(profiles, "throughput")) == 3


def test_conditions_text_shared_and_varying():
    shared, varying = plots.conditions_text(three_models())
    assert varying == ["input_size"]
    assert shared == ("machine aaaaaaaaaaaa, cpu (Test CPU), torch, float32, 2 threads, channels_last, "
                      "torch.compile, throughput at batch 8, torch 2.14.1, timm 1.0.31")
    graph = replace(three_models()[0], runtime="onnxruntime", dtype="int8", layout="contiguous", compiled=False)
    _, varying = plots.conditions_text([three_models()[0], graph])
    assert varying[:2] == ["runtime", "dtype"]  # an int8 graph and the eager model are told apart in the labels


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_pareto_writes_png_and_svg(tmp_path, suffix, magic):
    out = plots.plot_pareto(three_models(), tmp_path / f"p{suffix}")
    assert out.read_bytes()[:5].startswith(magic)


def test_png_size_and_labels_do_not_overlap(tmp_path):
    """Three models plus two crowded points: every label is drawn, inside the figure, without overlaps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text
    from PIL import Image

    profiles = [*three_models(), make_profile("resnet50", batch_size=64, throughput_img_s=44.0, top1=80.38),
                make_profile("resnet34", throughput_img_s=43.0, top1=80.1, peak_memory_mb=90.0)]
    out = plots.plot_pareto(profiles, tmp_path / "p.png")
    width, height = Image.open(out).size
    assert 1000 < width < 2000 and 700 < height < 1200
    fig = plots._figure(plots.plot_points(profiles), "throughput", 0)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t, canvas.get_renderer()) for t in ax.texts]  # the text, not its leader line
    assert [t.get_text() for t in ax.texts].count("resnet50 (b64, 224px)") == 1 and len(boxes) == 5
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Throughput, img/s (log scale)"
    assert ax.get_ylabel() == "ImageNet-1k top-1, % (published, pretrained fp32)"


def test_latency_axis_label(tmp_path):
    fig = plots._figure(plots.plot_points(three_models(), "latency"), "latency", 0)
    assert fig.axes[0].get_xlabel() == "Latency p50, ms per image at batch 1 (log scale)"
    assert "throughput at batch" not in fig.axes[0].get_title()


def test_plot_errors(tmp_path):
    with pytest.raises(UsageError, match=r"^Cannot write a plot as '\.pdf': use a \.png or \.svg file name\.$"):
        plots.plot_pareto(three_models(), tmp_path / "p.pdf")
    with pytest.raises(UsageError, match=r"^Unknown plot axis 'memory' \(expected one of: throughput, latency\)\.$"):
        plots.plot_pareto(three_models(), tmp_path / "p.png", x="memory")
    with pytest.raises(UsageError, match=r"^Nothing to plot: none of the 1 results has both a top-1 and a latency"):
        plots.plot_pareto([make_profile(latency_ms_p50=None)], tmp_path / "p.png", x="latency")
    with pytest.raises(UsageError, match=r"^Cannot write the plot .*missing.*p\.png: No such file or directory\.$"):
        plots.plot_pareto(three_models(), tmp_path / "missing" / "p.png")
