from pathlib import Path

import pytest

from vischoose.errors import PresetError
from vischoose.presets import Variant, list_presets, load_preset

DATA = Path(__file__).parent.parent / "data" / "presets"
GUIDE = {"mobile": "resnet50", "cloud": "vit_l16", "experimental": "r50_vit_b16"}


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.name)
def test_every_shipped_preset_is_valid(preset):
    assert preset.path.stem == preset.name
    assert preset.description
    assert preset.measure.batch_sizes and all(b >= 1 for b in preset.measure.batch_sizes)
    assert preset.sort


def test_shipped_presets_follow_the_selection_guide():
    names = {p.name: p for p in list_presets()}
    assert set(GUIDE) <= set(names)
    for name, model in GUIDE.items():
        assert names[name].prefer[0] == model


def test_load_from_file_with_batch_list():
    preset = load_preset(DATA / "tiny.toml")
    assert preset.name == "tiny"
    assert preset.measure.batch_sizes == (1, 8)
    assert preset.measure.batch_size == 8
    assert preset.constraints.max_memory_mb == 50
    assert preset.families == ("resnet",)


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[constraints]\nmax_latency = 3\n",
     "[constraints]: unknown key 'max_latency' (expected one of: max_memory_mb, max_latency_ms, min_throughput, "
     "min_top1, max_params_m, max_cold_start_ms, memory_basis, latency_basis)."),
    ("[constraints]\nmax_memory_mb = 'big'\n", "[constraints]: 'max_memory_mb' must be an integer or a number (got a string)."),
    ("[constraints]\nmax_memory_mb = -5\n", "[constraints]: 'max_memory_mb' must be greater than 0 (got -5)."),
    ("[constraints]\nmin_top1 = 120\n", "[constraints]: 'min_top1' must be a percentage from 0 to 100 (got 120)."),
    ("[measure]\ndtype = 'float64'\n",
     "[measure]: unknown dtype 'float64' (expected one of: float32, bfloat16, float16)."),
    ("[measure]\nbatch_size = 0\n", "[measure]: 'batch_size' must be a positive integer or a list of them."),
    ("[measure]\ndevice = 'tpu'\n", "[measure]: unknown device 'tpu' (expected auto, cpu, cuda or cuda:N)."),
    ("[measure]\nthreads = true\n", "[measure]: 'threads' must not be a boolean."),
    ("[candidates]\nfamilies = ['mlp']\n",
     "[candidates]: unknown family 'mlp' in 'families' (expected: resnet, vit, hybrid, or a family of timm's "
     "zoo: vischoose models --zoo)."),
    ("[candidates]\nmodels = ['resnet50.a1_in1k', 'hf-hub:timm/x.y', 'my_net']\nprefer = ['my_net']\n",
     "unknown model 'my_net' in 'models'"),
    ("[candidates]\nfamilies = ['resnets']\n",
     "[candidates]: unknown family 'resnets' in 'families' (expected: resnet, vit, hybrid, or a family of "
     "timm's zoo: vischoose models --zoo). Did you mean 'resnet'?"),
    ("[candidates]\nprefer = ['resnet5O']\n",
     "[candidates]: unknown model 'resnet5O' in 'prefer' (expected a catalog alias, timm arch.tag, hf-hub:ID or "
     "local-dir:PATH). Did you mean 'resnet50'?"),
    ("[candidates]\nmodels = ['vit_b61']\n", "[candidates]: unknown model 'vit_b61' in 'models' (expected a "
     "catalog alias, timm arch.tag, hf-hub:ID or local-dir:PATH). Did you mean 'vit_b16'?"),
    ("[constraints]\nmax_latency = 3\n", "Did you mean 'max_latency_ms'?"),
    ("[deploy]\nonnxrutime = ['fp32']\n", "[deploy]: unknown runtime 'onnxrutime' (expected one of: torch, "
     "onnxruntime, executorch, litert, openvino). Did you mean 'onnxruntime'?"),
    ("[deploy]\nonnxruntime = ['int9']\n", "[deploy]: unknown precision 'int9' in 'onnxruntime' (expected one of: "
     "fp32, bf16, fp16, int8). Did you mean 'int8'?"),
    ("[rank]\nsort = ['-speed']\n", "[rank]: unknown sort key '-speed'"),
    ("colour = 'red'\n", ": unknown key 'colour'"),
    ("constraints = 3\n", ": 'constraints' must be a table (got an integer)."),
    ("[constraints\n", ": not valid TOML"),
    ("[deploy]\ntensorrt = ['fp16']\n", "[deploy]: unknown runtime 'tensorrt' (expected one of: torch, onnxruntime, "
     "executorch, litert, openvino)."),
    ("[deploy]\nonnxruntime = ['int4']\n",
     "[deploy]: unknown precision 'int4' in 'onnxruntime' (expected one of: fp32, bf16, fp16, int8)."),
    ("[deploy]\ntorch = ['int8']\n", "[deploy]: torch cannot run int8 (it runs: fp32, bf16, fp16)."),
    ("[deploy]\nonnxruntime = ['fp16']\n", "[deploy]: onnxruntime cannot run fp16 (it runs: fp32, int8)."),
    ("[deploy]\n", "[deploy]: no runtime and precision listed, so no model could be deployed"),
    ("[deploy]\ntorch = []\nonnxruntime = []\n", "[deploy]: no runtime and precision listed"),
    ("[deploy]\ntorch = 'fp32'\n", "[deploy]: 'torch' must be a list (got a string)."),
    ("[deploy]\ntorch = [32]\n", "[deploy]: 'torch' must be a list of strings."),
    ("deploy = ['onnxruntime']\n", ": 'deploy' must be a table (got a list)."),
])
def test_invalid_presets_name_file_table_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(PresetError) as info:
        load_preset("tablet")
    assert str(info.value).startswith("Unknown preset 'tablet' (known: cloud, edge, experimental, mobile, server).")


def test_missing_preset_file():
    with pytest.raises(PresetError, match="Preset file 'nope/x.toml' does not exist."):
        load_preset("nope/x.toml")


def test_overrides_replace_constraints_and_are_validated():
    original = load_preset("mobile").constraints.max_latency_ms
    preset = load_preset("mobile").with_overrides(max_memory_mb=150, max_latency_ms=None, device="cuda")
    assert preset.constraints.max_memory_mb == 150
    assert original is not None and preset.constraints.max_latency_ms == original  # None leaves the preset's limit
    assert preset.measure.device == "cuda"
    with pytest.raises(PresetError, match="max_memory_mb must be greater than 0 \\(got 0\\)."):
        load_preset("mobile").with_overrides(max_memory_mb=0)
    with pytest.raises(PresetError, match="memory_basis must be one of: weights, peak"):
        load_preset("mobile").with_overrides(memory_basis="disk")


def test_presets_dir_override(tmp_path, monkeypatch):
    (tmp_path / "only.toml").write_text("description = 'x'\n")
    monkeypatch.setenv("VISCHOOSE_PRESETS", str(tmp_path))
    assert [p.name for p in list_presets()] == ["only"]


@pytest.mark.parametrize("folder, message", [("missing", "is not a folder."), ("empty", "No preset files (*.toml) in ")])
def test_a_presets_folder_that_is_missing_or_empty_is_a_usage_error(runner, tmp_path, monkeypatch, folder, message):
    from vischoose.cli import app

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("VISCHOOSE_PRESETS", str(tmp_path / folder))
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: ") and message in result.stderr
    assert "Traceback" not in result.output


def test_deploy_table_lists_precisions_per_runtime(tmp_path):
    path = write(tmp_path, '[measure]\ndtype = "float16"\n[deploy]\ntorch = ["fp16", "fp16"]\n'
                           'onnxruntime = ["int8", "fp32"]\n')
    preset = load_preset(path)
    assert preset.variants == (Variant("torch", "fp16"), Variant("onnxruntime", "int8"),
                               Variant("onnxruntime", "fp32"))
    assert preset.plain == Variant("torch", "fp16")
    assert [v.dtype for v in preset.variants] == ["float16", "int8", "float32"]


def test_without_deploy_the_target_runs_torch_at_its_measure_dtype():
    experimental = load_preset("experimental")
    assert experimental.deploy == () and experimental.variants == (Variant("torch", "fp32"),)


def test_shipped_deploy_tables():
    labels = {p.name: [v.label for v in p.variants] for p in list_presets()}
    # phones run ExecuTorch programs (or LiteRT files, or ONNX Runtime); Intel CPU edge boxes and servers OpenVINO IR
    assert labels["mobile"] == ["executorch fp32", "executorch int8", "litert fp32", "litert int8", "onnxruntime fp32",
                                "onnxruntime int8"]
    assert labels["edge"] == ["torch fp16", "onnxruntime fp32", "onnxruntime int8", "openvino fp32", "openvino int8"]
    assert labels["server"] == ["torch fp32", "onnxruntime fp32", "onnxruntime int8", "openvino fp32",
                                "openvino int8"]
    # torch on a GPU; on a CPU an ONNX Runtime graph may serve (recommendation skips it where a GPU runs the model)
    assert labels["cloud"] == ["torch bf16", "torch fp16", "onnxruntime fp32", "onnxruntime int8"]


def test_every_model_name_form_a_preset_accepts(tmp_path):
    path = write(tmp_path, "[candidates]\nmodels = ['resnet50', 'resnet50.a1_in1k', 'efficientnet_b0.ra_in1k', "
                           "'hf-hub:timm/convnext_tiny.fb_in1k', 'local-dir:/models/mine']\n"
                           "prefer = ['efficientnet_b0.ra_in1k', 'vit_b16']\n")
    preset = load_preset(path)
    assert preset.prefer == ("efficientnet_b0.ra_in1k", "vit_b16")
    assert len(preset.models) == 5


def test_the_bundled_presets_name_only_known_models():
    for preset in list_presets():
        assert load_preset(preset.path).prefer == preset.prefer
