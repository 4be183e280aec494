import pytest
import torch

from model.core.constants import MEAN, STD
from model.core.network import CAM_LAYERS, ResNet34, build_model, count_parameters, get_layer
from model.core.preprocess import augment, cutout, hflip, to_input


def test_to_input_normalises_and_resizes():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 128, 128).contiguous()
    x = to_input(images, 224)
    assert x.shape == (2, 1, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full_like(x[0], -MEAN / STD), atol=1e-5)
    assert torch.allclose(x[1], torch.full_like(x[1], (1 - MEAN) / STD), atol=1e-5)


def test_to_input_rejects_float():
    with pytest.raises(ValueError, match="uint8"):
        to_input(torch.zeros(1, 1, 8, 8), 8)


def test_augment_is_seeded_and_keeps_shape():
    x = to_input(torch.randint(0, 255, (4, 1, 64, 64), dtype=torch.uint8), 64)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_augment_keeps_black_background_black():
    x = to_input(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), 32)
    out = augment(x, torch.Generator().manual_seed(0), max_brightness=0, max_contrast=0)
    assert torch.allclose(out, x, atol=1e-5)


def test_resnet34_one_channel_four_classes():
    net = build_model().eval()
    assert net.conv1.in_channels == 1 and net.fc.out_features == 4
    assert 21_000_000 < count_parameters(net) < 21_400_000  # ResNet-34 less two conv1 input channels
    with torch.no_grad():
        assert net(torch.randn(2, 1, 64, 64)).shape == (2, 4)


def test_cam_layers_resolve_and_bad_layer_lists_choices():
    net = build_model()
    for path in CAM_LAYERS.values():
        assert isinstance(get_layer(net, path), torch.nn.Module)
    with pytest.raises(ValueError, match="valid choices: layer4"):
        get_layer(net, "layer9")


def test_cutout_blanks_one_square_and_leaves_the_rest():
    x = torch.ones(8, 1, 32, 32)
    out = cutout(x, torch.Generator().manual_seed(0), p=1.0, size=0.25)
    blanked = (out == 0).flatten(1).sum(1)
    assert out.shape == x.shape and (blanked > 0).all() and (blanked <= 9 * 9).all()  # side 8 -> at most 9x9
    assert ((out == 1) | (out == 0)).all()  # every other pixel untouched
    assert torch.equal(cutout(x, torch.Generator().manual_seed(0), p=0.0), x)
    a = cutout(x, torch.Generator().manual_seed(3), p=0.5)
    assert torch.equal(a, cutout(x, torch.Generator().manual_seed(3), p=0.5))  # seeded


def test_hflip_mirrors_only_the_chosen_slices_and_is_seeded():
    x = torch.arange(4 * 1 * 3 * 5, dtype=torch.float32).view(4, 1, 3, 5)
    assert torch.equal(hflip(x, p=1.0), x.flip(-1)) and torch.equal(hflip(x, p=0.0), x)
    a = hflip(x, torch.Generator().manual_seed(3), p=0.5)
    b = hflip(x, torch.Generator().manual_seed(3), p=0.5)
    assert torch.equal(a, b)
    for i in range(4):  # each slice is either untouched or exactly mirrored
        assert torch.equal(a[i], x[i]) or torch.equal(a[i], x[i].flip(-1))


def test_the_default_cam_layer_keeps_the_map_readable_at_small_inputs():
    from model.core.network import default_cam_layer

    assert default_cam_layer(224) == default_cam_layer(160) == "layer4"  # 7x7 and 5x5 maps
    assert default_cam_layer(96) == "layer3"  # layer4 would be 3x3
    assert default_cam_layer(48) == "layer2"  # layer4 2x2, layer3 3x3
    assert default_cam_layer(96, {"cam_layer": "layer2"}) == "layer2"  # a measured choice in the config wins
    assert default_cam_layer(96, {"cam_layer": "nonsense"}) == "layer3"  # ... when it names a Grad-CAM layer


def test_the_network_is_torchvisions_resnet34_weight_for_weight():
    """model.core.network writes ResNet-34 out (importing torchvision costs seconds): one seed must give the same
    state dict, bit for bit, and the same logits as torchvision's own."""
    torchvision_models = pytest.importorskip("torchvision.models")

    torch.manual_seed(3)
    ours = ResNet34(num_classes=4).eval()
    torch.manual_seed(3)
    theirs = torchvision_models.resnet34(weights=None, num_classes=4).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_a_predictor_draws_its_maps_at_the_layer_its_config_names():
    """Every caller (pages, API, CLI, benchmarks) asks the predictor, so none measures or draws another layer."""
    from model.core.assets import read_model_config
    from model.core.constants import MODEL_CONFIG_PATH
    from model.core.inference import Predictor

    net = build_model()
    assert Predictor(net, image_size=96).cam_layer == "layer3"
    assert Predictor(net, image_size=96, config={"cam_layer": "layer2"}).cam_layer == "layer2"
    cfg = read_model_config(MODEL_CONFIG_PATH)  # the shipped network's: layer2, chosen by build-faithfulness
    assert Predictor(net, image_size=cfg["image_size"], config=cfg).cam_layer == "layer2"
