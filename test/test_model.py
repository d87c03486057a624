"""The student network (size, outputs, TensorRT-friendly operators) and its checkpoint format."""

import numpy as np
import pytest

from student_trt.metadata import ModelSpec

torch = pytest.importorskip('torch')

from rc_offline.checkpoint import (  # noqa: E402  (after the torch skip)
    FORMAT,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from rc_offline.model import StudentConfig, StudentNet, count_parameters, estimate_gflops  # noqa: E402

ALLOWED_OPS = {'Conv', 'Relu', 'Resize', 'Add', 'Sigmoid', 'Mul', 'Constant', 'Concat'}


def small_net(seed: int = 0, **config) -> StudentNet:
    torch.manual_seed(seed)
    return StudentNet(StudentConfig(**config)).eval()


def test_default_size_within_budget():
    net = StudentNet(StudentConfig())
    params, gflops = count_parameters(net), estimate_gflops(net, 240, 320)
    assert params <= 2_000_000 and gflops <= 2.0, f'budget 2 M / 2 GFLOPs, got {params} / {gflops:.2f}'
    assert 300_000 <= params <= 1_000_000, f'default aims at ~0.5 M parameters, got {params}'
    assert 0.5 <= gflops <= 1.0, f'default aims at 0.5-1 GFLOPs at 240x320, got {gflops:.3f}'


def test_gflops_counts_conv_macs_twice():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    expected = 2 * 10 * 12 * 8 * 3 * 9 / 1e9
    assert estimate_gflops(conv, 10, 12) == pytest.approx(expected), 'FLOPs = 2 x outputs x Cin x k x k'
    grouped = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
    grouped_input = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), grouped)
    assert estimate_gflops(grouped_input, 10, 12) == pytest.approx(2 * 120 * (4 * 3 + 8 * 2 * 9) / 1e9)


def test_outputs_shapes_and_depth_range():
    net = StudentNet(StudentConfig(base_channels=8, num_classes=7), depth_min=0.3, depth_max=6.0).eval()
    x = torch.randn(2, 3, 64, 96) * 50  # extreme inputs drive the sigmoid to its ends
    with torch.no_grad():
        depth, seg = net(x)
    assert depth.shape == (2, 1, 64, 96) and seg.shape == (2, 7, 64, 96), f'got {depth.shape}, {seg.shape}'
    assert depth.dtype == torch.float32 and seg.dtype == torch.float32
    assert float(depth.min()) >= 0.3 and float(depth.max()) <= 6.0, \
        f'depth must stay in [0.3, 6.0], got [{float(depth.min())}, {float(depth.max())}]'


def test_input_size_must_be_multiple_of_stride():
    net = small_net(base_channels=8)
    assert net.config.stride == 16
    with pytest.raises(ValueError, match='multiple of the network stride 16') as info:
        net(torch.zeros(1, 3, 250, 320))
    assert '250x320' in str(info.value), f'message should name the size: {info.value}'
    StudentConfig().check_input_size(240, 320)


@pytest.mark.parametrize('bad', [{'base_channels': 2}, {'num_classes': 0}, {'encoder_blocks': (1,)},
                                 {'encoder_blocks': (0, -1, 1)}, {'head_channels': -1}])
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError, match='invalid student config'):
        StudentConfig(**bad)


def test_config_dict_round_trip_and_unknown_fields():
    config = StudentConfig(base_channels=12, num_classes=3, encoder_blocks=(1, 0, 2), head_channels=8)
    data = config.to_dict()
    assert data['encoder_blocks'] == [1, 0, 2], 'to_dict must hold plain lists'
    assert StudentConfig.from_dict(data) == config
    assert StudentConfig.from_dict({'base_channels': 12}) == StudentConfig(base_channels=12)
    with pytest.raises(ValueError, match='unknown student config field.*depth'):
        StudentConfig.from_dict({**data, 'depth': 3})


def test_exports_only_tensorrt_friendly_operators():
    pytest.importorskip('onnx')
    from rc_offline.export import export_fp32
    net = small_net(base_channels=8)
    proto = export_fp32(net, ModelSpec(height=32, width=48), opset=17)
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= ALLOWED_OPS, f'unexpected operators: {sorted(ops - ALLOWED_OPS)}'
    resize = [n for n in proto.graph.node if n.op_type == 'Resize']
    wanted = ('mode', 'coordinate_transformation_mode')
    modes = {(a.name, a.s) for n in resize for a in n.attribute if a.name in wanted}
    assert modes == {('mode', b'linear'), ('coordinate_transformation_mode', b'half_pixel')}, f'got {modes}'
    assert {'Conv', 'Resize', 'Sigmoid'} <= ops, f'got {sorted(ops)}'


# --- checkpoint format -------------------------------------------------------------------------------------


def spec_for(net: StudentNet, **changes) -> ModelSpec:
    names = tuple(f'c{i}' for i in range(net.config.num_classes))
    return ModelSpec(height=64, width=96, class_names=names, depth_min=net.depth_min,
                     depth_max=net.depth_max, **changes)


def test_checkpoint_round_trip(tmp_path):
    net = StudentNet(StudentConfig(base_channels=8, num_classes=3), depth_min=0.2, depth_max=8.0)
    with torch.no_grad():  # non-default BN statistics, so that a missed buffer would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    net.eval()
    spec = spec_for(net, color_order='bgr', precision='int8', calibration='x', extra={'data': 'corridor'})
    path = tmp_path / 'sub' / 'student.pt'
    save_checkpoint(path, net, spec, extra={'epochs': np.int64(3), 'loss': np.float32(0.25), 'hist': (1, 2)})
    loaded, loaded_spec = load_checkpoint(path)
    assert loaded_spec == spec.with_(precision='fp32', calibration=''), f'got {loaded_spec}'
    assert loaded.config == net.config and (loaded.depth_min, loaded.depth_max) == (0.2, 8.0)
    assert not loaded.training, 'load_checkpoint returns an eval-mode model'
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b), 'loaded model must compute exactly what the saved one did'
    ckpt = read_checkpoint(path)
    assert ckpt.extra == {'epochs': 3, 'loss': 0.25, 'hist': [1, 2]}, f'got {ckpt.extra}'
    raw = torch.load(path, weights_only=True)
    assert raw['format'] == FORMAT and set(raw) == {'format', 'config', 'spec', 'state_dict', 'extra'}
    assert not list(tmp_path.glob('sub/*.tmp')), 'temporary file left behind'


def test_subclasses_of_plain_types_are_stored_as_the_plain_types(tmp_path):
    """torch.__version__ is a TorchVersion (a str subclass) and IntEnum members are ints: weights_only
    loading refuses both classes, so the checkpoint must hold plain str and int."""
    import enum

    class Stage(enum.IntEnum):
        FINAL = 2

    net = StudentNet(StudentConfig(base_channels=8))
    path = tmp_path / 'student.pt'
    extra = {'torch': torch.__version__, 'stage': Stage.FINAL, 'nested': [{'v': torch.__version__}]}
    save_checkpoint(path, net, spec_for(net), extra=extra)
    ckpt = read_checkpoint(path)  # raised CheckpointError ("weights-only") when the subclasses were kept
    assert ckpt.extra == {'torch': str(torch.__version__), 'stage': 2,
                          'nested': [{'v': str(torch.__version__)}]}, f'got {ckpt.extra}'
    kinds = (type(ckpt.extra['torch']), type(ckpt.extra['stage']), type(ckpt.extra['nested'][0]['v']))
    assert kinds == (str, int, str), f'expected plain (str, int, str), got {kinds}'


def test_save_rejects_spec_that_disagrees_with_model(tmp_path):
    net = StudentNet(StudentConfig(base_channels=8, num_classes=3))
    with pytest.raises(ValueError, match='names 5 classes'):
        save_checkpoint(tmp_path / 'a.pt', net, ModelSpec(height=64, width=96))
    with pytest.raises(ValueError, match='multiple of the network stride'):
        save_checkpoint(tmp_path / 'a.pt', net, spec_for(net).with_(height=60))
    with pytest.raises(ValueError, match='depth range'):
        save_checkpoint(tmp_path / 'a.pt', net, spec_for(net).with_(depth_max=20.0))
    with pytest.raises(ValueError, match=r'extra\.fn: builtin_function_or_method cannot be stored'):
        save_checkpoint(tmp_path / 'a.pt', net, spec_for(net), extra={'fn': print})
    assert not (tmp_path / 'a.pt').exists()


def _saved(tmp_path, mutate) -> str:
    net = StudentNet(StudentConfig(base_channels=8))
    path = tmp_path / 'ok.pt'
    save_checkpoint(path, net, spec_for(net))
    data = torch.load(path, weights_only=True)
    mutate(data)
    bad = tmp_path / 'bad.pt'
    torch.save(data, bad)
    return str(bad)


def test_load_names_unknown_missing_and_misshapen_tensors(tmp_path):
    def mutate(data):
        data['state_dict']['bogus.weight'] = torch.zeros(2)
        del data['state_dict']['seg_head.1.bias']
        data['state_dict']['depth_head.1.weight'] = torch.zeros(1, 9, 1, 1)
    path = _saved(tmp_path, mutate)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    for part in (path, 'bogus.weight', 'seg_head.1.bias', 'depth_head.1.weight (1, 9, 1, 1)'):
        assert part in message, f'expected {part!r} in: {message}'


def test_load_rejects_weights_of_another_architecture(tmp_path):
    other = StudentNet(StudentConfig(base_channels=16)).state_dict()
    path = _saved(tmp_path, lambda data: data.__setitem__('state_dict', other))
    with pytest.raises(CheckpointError, match='wrong shape'):
        load_checkpoint(path)


@pytest.mark.parametrize('mutate, message', [
    (lambda d: d.__setitem__('format', 'other/2'), "format tag 'other/2'"),
    (lambda d: d.__setitem__('optimizer', {}), 'unknown key.*optimizer'),
    (lambda d: d.pop('spec'), 'missing key.*spec'),
    (lambda d: d['config'].__setitem__('width_mult', 2), 'unknown student config field.*width_mult'),
    (lambda d: d['spec'].__setitem__('class_names', ['a']), 'names 1 classes'),
])
def test_load_rejects_malformed_checkpoints(tmp_path, mutate, message):
    path = _saved(tmp_path, mutate)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert path in str(info.value), f'message must name the file: {info.value}'


def test_load_rejects_non_checkpoints(tmp_path):
    raw = tmp_path / 'raw.pt'
    torch.save(StudentNet(StudentConfig(base_channels=8)).state_dict(), raw)
    with pytest.raises(CheckpointError, match='not an rc_perception student checkpoint'):
        load_checkpoint(raw)
    text = tmp_path / 'text.pt'
    text.write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match='cannot be read as a weights-only torch checkpoint'):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(tmp_path / 'missing.pt')


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / 'evil.pt'
    torch.save({'format': FORMAT, 'obj': StudentConfig()}, path)  # a class instance: not weights-only
    with pytest.raises(CheckpointError, match='weights-only'):
        load_checkpoint(path)
