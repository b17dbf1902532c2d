"""Encoders and fusion modules on tiny batches: shapes, gradients, masks, save/reload."""

import pytest
import torch

from symptomfuse.models.multimodal import MultimodalClassifier, load, save
from symptomfuse.models.registry import available, build

ENCODERS = {
    "audio": {"name": "logmel_cnn", "n_mels": 16, "channels": [4, 8], "dim": 8},
    "video": {"name": "frames_cnn", "channels": [4, 8], "dim": 8},
    "keypoints": {"name": "keypoints_tcn", "n_features": 127, "channels": 8, "dim": 8, "levels": 2},
    "table": {"name": "mlp", "n_features": 5, "hidden": [8], "dim": 8},
}
FUSIONS = ["concat", "gated", "attention", "uncertainty"]


def batch(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, 16, 40, generator=g),
            "video": torch.randint(0, 255, (b, 6, 24, 32, 3), generator=g, dtype=torch.uint8),
            "keypoints": torch.randn(b, 20, 127, generator=g),
            "table": torch.randn(b, 5, generator=g)}


def test_registry_lists_and_rejects():
    assert {"logmel_cnn", "frames_cnn", "keypoints_tcn"} <= set(available("encoder"))
    assert set(FUSIONS) <= set(available("fusion"))
    with pytest.raises(ValueError, match="available"):
        build("encoder", {"name": "nope"})


@pytest.mark.parametrize("modality", list(ENCODERS))
def test_encoder_shapes_and_rebuild(modality):
    enc = build("encoder", ENCODERS[modality])
    x = batch()[modality]
    enc.fit_normalizer(enc.prepare(x))
    out = enc(x)
    assert out.shape == (3, 8)
    again = build("encoder", enc.config())
    again.load_state_dict(enc.state_dict())
    enc.eval(), again.eval()
    torch.testing.assert_close(enc(x), again(x))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_gradients_reach_every_encoder(fusion):
    torch.manual_seed(0)
    model = MultimodalClassifier(ENCODERS, {"name": fusion, "dim": 8} if fusion != "attention"
                                 else {"name": fusion, "dim": 8, "heads": 2}, n_classes=2)
    logits = model(batch())
    assert logits.shape == (3, 2)
    logits.sum().backward()
    for m, enc in model.encoders.items():
        grads = [p.grad for p in enc.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reached {m}"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_masked_modality_does_not_change_the_output(fusion):
    """What an absent modality holds must not matter: change its input, the output stays the same."""
    torch.manual_seed(0)
    model = MultimodalClassifier(ENCODERS, {"name": fusion, "dim": 8} if fusion != "attention"
                                 else {"name": fusion, "dim": 8, "heads": 2}, n_classes=2).eval()
    x, y = batch(seed=1), batch(seed=2)
    mask = {"audio": torch.tensor([True, False, True]), "video": torch.tensor([True, True, False]),
            "keypoints": torch.tensor([False, True, True]), "table": torch.tensor([True, False, False])}
    mixed = {m: torch.where(mask[m].view(-1, *[1] * (x[m].dim() - 1)), x[m], y[m]) for m in x}
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), model(mixed, mask))
        # leaving a modality out entirely is the same as masking it for every sample
        only = {"audio": x["audio"], "video": x["video"]}
        m2 = {"audio": torch.ones(3, dtype=torch.bool), "video": torch.ones(3, dtype=torch.bool)}
        full = {**m2, "keypoints": torch.zeros(3, dtype=torch.bool), "table": torch.zeros(3, dtype=torch.bool)}
        torch.testing.assert_close(model(only, m2), model(x, full))
    with pytest.raises(ValueError, match="at least one"):
        none = {m: torch.zeros(3, dtype=torch.bool) for m in x}
        model(x, none)


def test_save_and_reload_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    model = MultimodalClassifier(ENCODERS, {"name": "gated", "dim": 8}, n_classes=3)
    for m, enc in model.encoders.items():
        enc.fit_normalizer(enc.prepare(batch(8)[m]))
    model.eval()
    save(model, tmp_path / "m")
    again = load(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(model(batch()), again(batch()), rtol=0, atol=0)
    assert not list(tmp_path.glob("m/*.pt")) and (tmp_path / "m" / "model.safetensors").exists()


@pytest.mark.parametrize("modality", ["audio", "video", "keypoints"])
def test_prepare_then_network_is_the_whole_encoder_and_augmentation_keeps_shapes(modality):
    """Training prepares inputs once and augments the prepared tensors (with the modality's own
    augmentation for the encoder's input kind); inference runs ``forward``."""
    from symptomfuse import modalities

    enc = build("encoder", ENCODERS[modality])
    x = batch()[modality]
    h = enc.prepare(x)
    enc.fit_normalizer(h)
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x), enc.forward_prepared(h), rtol=0, atol=0)
    augmented = modalities.get(modality).augmentations[enc.input_kind](h, torch.Generator().manual_seed(0))
    assert augmented.shape == h.shape and augmented.dtype == torch.float32
    assert not torch.equal(augmented, h)


def test_logmel_peak_norm_ignores_recording_level():
    """With peak_norm, the same sound recorded 20 dB quieter gives the same embedding."""
    enc = build("encoder", {**ENCODERS["audio"], "peak_norm": True})
    x = batch()["audio"]
    enc.fit_normalizer(enc.prepare(x))
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x - 20.0), enc(x))
        plain = build("encoder", ENCODERS["audio"]).eval()
        assert not torch.allclose(plain(x - 20.0), plain(x))


def test_mlp_imputes_missing_values_with_training_means_and_flags_them():
    enc = build("encoder", ENCODERS["table"])
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1)) * 3 + 10
    x[::4, 2] = float("nan")
    x[1, 0] = float("inf")
    enc.fit_normalizer(enc.prepare(x))
    finite = x[:, 2][torch.isfinite(x[:, 2])]
    torch.testing.assert_close(enc.norm.mean[2], finite.mean())  # statistics of the present values only
    enc.eval()
    with torch.no_grad():
        out = enc(x)
        assert torch.isfinite(out).all()
        filled = x.clone()
        filled[0, 2] = enc.norm.mean[2]
        # an imputed value is not the same input as that value observed: the indicator tells them apart
        assert not torch.allclose(enc(x[:1]), enc(filled[:1]))


def test_the_augmentation_s_loudness_peak_is_torch_quantile_to_the_bit():
    """Audio augmentation takes each spectrogram's 99th percentile from its top values (topk) rather than
    torch.quantile's full sort: the same numbers, ties and odd sizes included."""
    from symptomfuse.modalities.audio import _upper_quantile

    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        x = torch.randn(7, 64 * 31 + trial, generator=g) * 20 - 40
        if trial % 3 == 0:
            x = torch.round(x)  # ties
        for q in (0.99, 0.9, 0.5):
            assert torch.equal(_upper_quantile(x, q), torch.quantile(x, q, dim=1))


def test_the_fast_max_pool_gives_nn_max_pool_s_values_and_gradients_to_the_bit():
    """The encoders' 2x2 max-pooling runs through the channels-last kernel: the same outputs and the same
    gradients (which input of a window gets it: the first maximum) as nn.MaxPool2d(2), ties, odd sizes and
    one channel included; exported, it is nn.MaxPool2d itself."""
    from symptomfuse.models.encoders import MaxPool2x2

    g = torch.Generator().manual_seed(0)
    for shape in [(4, 8, 16, 30), (3, 1, 7, 9), (2, 5, 6, 75), (6, 3, 2, 2)]:
        for ties in (False, True):
            x = torch.randn(shape, generator=g)
            if ties:
                x = torch.round(x).relu()  # many equal values in a window
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = MaxPool2x2()(a), torch.nn.MaxPool2d(2)(b)
            assert torch.equal(ya, yb)
            grad = torch.randn(ya.shape, generator=g)
            ya.backward(grad)
            yb.backward(grad)
            assert torch.equal(a.grad, b.grad)
    with torch.no_grad():  # inference too
        assert torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))
    traced = torch.jit.trace(MaxPool2x2(), torch.randn(1, 2, 4, 4))
    assert "max_pool2d" in str(traced.graph) and "PythonOp" not in str(traced.graph)
