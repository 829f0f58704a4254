"""Stable Diffusion with genlab's samplers (the optional ``stable-diffusion`` extra): the scaled-linear
schedule and schedules read from diffusers configs; a tiny randomly initialised pipeline built offline (no
download) and saved as a diffusers folder, in which every genlab sampler gives the image of diffusers' own
scheduler; ``genlab experiment run sampler-compare --pretrained DIR`` end to end; one clear line for a
missing or malformed folder."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from genlab.cli import main
from genlab.errors import ConfigError
from genlab.experiments.registry import run_experiment
from genlab.families.diffusion.samplers import SAMPLERS
from genlab.families.diffusion.schedule import (
    NoiseSchedule,
    prediction_from_diffusers_config,
    scaled_linear_betas,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread

diffusers = pytest.importorskip("diffusers")

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
DIFFUSERS = {name: cls.diffusers_equivalent for name, cls in SAMPLERS.items()}


# ----------------------------------------------------------------- schedules
@pytest.mark.unit
def test_scaled_linear_is_stable_diffusions_schedule():
    ref = diffusers.DDPMScheduler(**SD_BETAS)
    torch.testing.assert_close(scaled_linear_betas(), ref.betas, rtol=0, atol=0)
    torch.testing.assert_close(NoiseSchedule.make("scaled_linear").alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    b = scaled_linear_betas(1000)
    assert float(b[0]) == pytest.approx(0.00085) and float(b[-1]) == pytest.approx(0.012)


@pytest.mark.unit
@pytest.mark.parametrize("config", [
    SD_BETAS,
    dict(num_train_timesteps=500, beta_start=2e-4, beta_end=0.03, beta_schedule="linear"),
    dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
    dict(num_train_timesteps=4, trained_betas=[0.1, 0.2, 0.3, 0.4]),
], ids=["scaled_linear", "linear", "cosine", "trained_betas"])
def test_schedule_from_a_diffusers_config_is_the_schedulers(config):
    ref = diffusers.DDPMScheduler(**config)
    sch = NoiseSchedule.from_diffusers_config(dict(ref.config))
    torch.testing.assert_close(sch.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)


@pytest.mark.unit
def test_unsupported_diffusers_configs_are_config_errors():
    with pytest.raises(ConfigError, match="unsupported beta_schedule 'sigmoid'"):
        NoiseSchedule.from_diffusers_config({"beta_schedule": "sigmoid"})
    with pytest.raises(ConfigError, match="zero terminal SNR"):
        NoiseSchedule.from_diffusers_config(SD_BETAS | {"rescale_betas_zero_snr": True})
    assert prediction_from_diffusers_config({"prediction_type": "v_prediction"}) == "v_prediction"
    assert prediction_from_diffusers_config({}) == "epsilon"
    with pytest.raises(ConfigError, match="prediction_type"):
        prediction_from_diffusers_config({"prediction_type": "flow"})


# ----------------------------------------------------------------- experiment options
@pytest.mark.unit
def test_sampler_compare_trains_only_without_pretrained_and_checks_its_options():
    from genlab import catalog
    exp = catalog.get("experiment", "sampler-compare")
    assert [s.name for s in exp.settings(quick=True)] == ["ddpm"]
    assert exp.settings(quick=True, options=exp.make_options({"pretrained": "sd"})) == []
    with pytest.raises(ConfigError, match="--prompt: only with --pretrained"):
        exp.make_options({"prompt": "a red cube"})
    with pytest.raises(ConfigError, match="multiple of 8"):
        exp.make_options({"pretrained": "sd", "height": 100})
    with pytest.raises(ConfigError, match="takes no options"):
        run_experiment("kl-check", options={"prompt": "a red cube"})


# ----------------------------------------------------------------- a tiny pipeline, offline
def tiny_tokenizer(folder):
    """A CLIP BPE tokenizer over single letters (no merges), from files written here."""
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A randomly initialised Stable Diffusion pipeline (8x8 images, 8x8x4 latents) saved with
    ``save_pretrained``: the layout of a real one, a few hundred kB."""
    pytest.importorskip("transformers")
    from transformers import CLIPTextConfig, CLIPTextModel
    root = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(root / "vocab")
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8,), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=8, sample_size=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32))
    scheduler = diffusers.PNDMScheduler(**SD_BETAS, skip_prk_steps=True, steps_offset=1)   # SD v1's own
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipeline")
    return root / "pipeline"


def draw(pipe, steps=6, seed=3):
    """One 8x8 image [1, 3, 8, 8] in [0, 1], with guidance and a negative prompt."""
    return pipe("a red cube", negative_prompt="blue", num_inference_steps=steps, guidance_scale=4.0,
                generator=torch.Generator().manual_seed(seed), output_type="pt").images


@pytest.mark.unit
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_genlab_sampler_in_the_pipeline_gives_diffusers_image(pipeline_dir, name):
    """The oracle: the same pipeline, seed and steps with diffusers' scheduler configured like genlab's
    sampler (its defaults on SD's schedule: e.g. DDIM with eta = 0, steps_offset 0, set_alpha_to_one)."""
    from genlab.families.diffusion.pretrained import load_pipeline, use_sampler
    pipe = load_pipeline(pipeline_dir)
    scheduler = use_sampler(pipe, name)
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.genlab_sampler == name
    ours = draw(pipe)
    assert scheduler.order == (2 if name == "heun" else 1)
    extra = {"clip_sample": False} if name in ("ddpm", "ddim") else {}
    pipe.scheduler = getattr(diffusers, DIFFUSERS[name])(**SD_BETAS, **extra, **SAMPLERS[name].diffusers_config)
    theirs = draw(pipe)
    assert ours.shape == (1, 3, 8, 8)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    use_sampler(pipe, name)     # the original schedule is read back from the diffusers scheduler's config
    torch.testing.assert_close(draw(pipe), ours, rtol=0, atol=0)


@pytest.mark.unit
def test_step_returns_what_diffusers_schedulers_return(pipeline_dir):
    from genlab.families.diffusion.pretrained import load_pipeline, use_sampler
    scheduler = use_sampler(load_pipeline(pipeline_dir), "ddim")
    scheduler.set_timesteps(4, device="cpu")
    x = torch.randn(1, 4, 8, 8)
    out = scheduler.step(torch.zeros_like(x), scheduler.timesteps[0], x)
    assert out.prev_sample.shape == x.shape
    scheduler.set_timesteps(4)
    (prev,) = scheduler.step(torch.zeros_like(x), scheduler.timesteps[0], x, return_dict=False)
    torch.testing.assert_close(prev, out.prev_sample, rtol=0, atol=0)


@pytest.mark.unit
def test_sampler_compare_on_a_pretrained_pipeline(pipeline_dir, tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["experiment", "run", "sampler-compare", "--pretrained", str(pipeline_dir), "--prompt", "a red cube",
                 "--negative-prompt", "blue", "--guidance", "3", "--steps", "2", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out)["experiment"] == "sampler-compare"
    assert summary["prompt"] == "a red cube" and summary["steps"] == [2, 3] and summary["image_size"] == [8, 8]
    assert set(summary["cells"]) == {f"{name}@{k}" for name in SAMPLERS for k in (2, 3)}
    assert all(c["seconds"] > 0 for c in summary["cells"].values())
    assert summary["cells"]["heun@3"]["model_calls"] == 5 and "fid" not in summary["cells"]["ddim@2"]
    assert (out / summary["figures"][0]).stat().st_size > 0
    assert not (out / "ddpm").exists()                  # nothing trained


@pytest.fixture
def broken_dirs(pipeline_dir, tmp_path):
    import shutil
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    no_unet = tmp_path / "no-unet"
    shutil.copytree(pipeline_dir, no_unet)
    shutil.rmtree(no_unet / "unet")
    return {"missing": (tmp_path / "nope", "no such folder"),
            "empty": (empty, "not a diffusers pipeline folder (no model_index.json)"),
            "other": (other, "holds a StableDiffusionXLPipeline, not a StableDiffusionPipeline"),
            "no-unet": (no_unet, "cannot load the Stable Diffusion pipeline")}


@pytest.mark.unit
@pytest.mark.parametrize("case", ["missing", "empty", "other", "no-unet"])
def test_a_missing_or_malformed_folder_is_one_line_and_status_2(broken_dirs, case, tmp_path, capsys):
    folder, message = broken_dirs[case]
    assert main(["experiment", "run", "sampler-compare", "--pretrained", str(folder), "--steps", "2",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.unit
def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)      # `import transformers` now fails
    assert main(["experiment", "run", "sampler-compare", "--pretrained", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'genlab[stable-diffusion]'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.unit
def test_pretrained_flags_need_pretrained(tmp_path, capsys):
    assert main(["experiment", "run", "sampler-compare", "--prompt", "a red cube", "--out", str(tmp_path)]) == 2
    assert "--prompt: only with --pretrained DIR" in capsys.readouterr().err
