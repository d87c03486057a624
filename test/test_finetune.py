"""Fine-tuning from recordings: labels only where the fusion trusts the ToF, a loss that never sees the other
pixels, an honest time split, hidden-block scoring, and the finetune_student tool end to end on a tiny
recorded bag (sqlite3 and mcap, written with rosbags)."""

import json

import numpy as np
import pytest

from rc_offline import fill_eval
from rc_offline.recording import LabelRule, Recording, label_on_grid, load_recording, time_split
from student_trt.metadata import ModelSpec

torch = pytest.importorskip('torch')
rosbag2 = pytest.importorskip('rosbags.rosbag2', reason='rosbags writes the test bags')

from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from rc_offline import finetune  # noqa: E402
from rc_offline.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from rc_offline.model import StudentConfig, StudentNet  # noqa: E402
from rc_perception import codecs  # noqa: E402

ABSURD = np.array([1e6, -5.0, np.nan, np.inf], np.float32)


# ------------------------------------------------------------------------------------------------ loss

def test_loss_is_l1_of_log_depth_over_labelled_pixels_only():
    pred = torch.full((2, 3, 4), 2.0, requires_grad=True)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[0, 0, :2] = True      # two labelled pixels at 1 m: |log 2 - log 1| each
    mask[1, 2, 3] = True       # one at 4 m: |log 2 - log 4|
    results = []
    for filler in (ABSURD, np.array([1.0, 2.0, 3.0, 0.5], np.float32)):
        target = torch.from_numpy(np.resize(filler, (2, 3, 4)).astype(np.float32))
        target[0, 0, :2] = 1.0
        target[1, 2, 3] = 4.0
        pred.grad = None
        loss = finetune.sparse_depth_loss(pred, target, mask)
        loss.backward()
        results.append((loss.detach().clone(), pred.grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert loss_a.item() == pytest.approx(np.log(2.0)), f'expected log 2 = 0.6931, got {loss_a.item()}'
    assert torch.equal(loss_a, loss_b), f'loss depends on unlabelled pixels: {loss_a} vs {loss_b}'
    assert torch.equal(grad_a, grad_b), 'gradient depends on unlabelled pixels'
    assert torch.isfinite(grad_a).all() and int((grad_a != 0).sum()) == 3, \
        f'expected a gradient at the 3 labelled pixels only, got {int((grad_a != 0).sum())} non-zero'
    # d/dpred |log pred - log t| / 3 = sign / (3 pred): +1/6 where t = 1, -1/6 where t = 4.
    assert grad_a[0, 0, 0].item() == pytest.approx(1 / 6) and grad_a[1, 2, 3].item() == pytest.approx(-1 / 6)


def test_loss_without_any_label_is_zero_with_zero_gradient():
    pred = torch.full((1, 2, 2), 3.0, requires_grad=True)
    nothing = torch.zeros(1, 2, 2, dtype=torch.bool)
    loss = finetune.sparse_depth_loss(pred, torch.full((1, 2, 2), float('nan')), nothing)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


# --------------------------------------------------------------------------------------------- labels

def test_labels_are_the_pixels_the_fusion_trusts_sampled_on_the_student_grid():
    # 4 x 6 ToF in mm with mono8 confidence onto a 2 x 3 grid: grid pixel (i, j) is ToF pixel (2i+1, 2j+1).
    tof = np.full((4, 6), 1500, np.uint16)
    tof[1, 1] = 0          # no reading
    tof[1, 3] = 4500       # beyond range_max 4.0
    tof[3, 1] = 2000       # confident: a label
    tof[3, 3] = 2500       # low confidence
    tof[3, 5] = 50         # under range_min 0.1
    conf = np.full((4, 6), 200, np.uint8)
    conf[3, 3] = 10
    got = label_on_grid(tof, '16UC1', conf, LabelRule(0.1, 4.0, 50), 2, 3)
    # millimetres convert as float32(mm) / 1000 (correctly rounded), as everywhere in the package
    expected = np.array([[np.nan, np.nan, 1500], [2000, np.nan, np.nan]], np.float32) / np.float32(1000)
    np.testing.assert_array_equal(got, expected, err_msg=f'labels {got} expected {expected}')


def test_a_wide_camera_is_labelled_where_the_letterbox_puts_it():
    # A 16:9 camera (36 x 64) into a 4:3 model grid (24 x 32): the image fills 18 rows starting at row 3
    # (student_trt.geometry.letterbox), 2 camera pixels per model pixel, so content row r is camera row
    # 2r + 1; the ToF here has half the camera's resolution (18 x 32): its row r.
    tof = (np.arange(18, dtype=np.float32)[:, None] * 0.1 + 1.0).repeat(32, 1)
    got = label_on_grid(tof, '32FC1', None, LabelRule(), 24, 32, camera=(36, 64))
    assert np.isnan(got[:3]).all() and np.isnan(got[21:]).all(), 'padding rows must carry no label'
    np.testing.assert_array_equal(got[3:21, 0], tof[:, 0], err_msg='content row r <- ToF row r')
    assert np.array_equal(got[3:21, 5], got[3:21, 0]), 'every column of a row carries the same depth here'


def test_absurd_float_tof_values_never_become_labels():
    tof = np.resize(np.concatenate([ABSURD, [2.0, 3.0]]), (2, 6)).astype(np.float32)
    got = label_on_grid(tof, '32FC1', None, LabelRule(), 2, 6)
    assert np.array_equal(np.isfinite(got), np.isin(tof, [2.0, 3.0])), f'labels {got} from {tof}'


def test_time_split_holds_out_the_last_share_of_the_time_span():
    stamps = (np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) * 1e9).astype(np.int64)
    train, held = time_split(stamps, 0.2)           # held out: t >= 0.8 * 9 s = 7.2 s
    assert held.tolist() == [False] * 8 + [True] * 2 and np.array_equal(train, ~held)
    uneven = np.array([0, 1, 2, 10]) * 10**9          # by time, not by count: only the last frame
    assert time_split(uneven, 0.5)[1].tolist() == [False, False, False, True]


# ------------------------------------------------------------------------------------------ fill eval

def test_hidden_blocks_cover_the_share_only_on_valid_pixels_reproducibly():
    valid = np.zeros((96, 128), bool)
    valid[10:90, 20:100] = True
    valid[50, 60] = False
    hidden = fill_eval.hide_blocks(valid, np.random.default_rng(3), share=0.2, block=16)
    assert not np.any(hidden & ~valid), 'hidden pixels must be valid pixels'
    assert hidden.sum() >= 0.2 * valid.sum(), f'{hidden.sum()} hidden of {valid.sum()}, expected >= 20 %'
    assert hidden.sum() <= 0.2 * valid.sum() + 16 * 16, 'one block past the share at most'
    assert np.array_equal(hidden, fill_eval.hide_blocks(valid, np.random.default_rng(3), share=0.2, block=16))
    assert not fill_eval.hide_blocks(np.zeros((8, 8), bool), np.random.default_rng(0)).any()


def _plane_recording(frames=2, h=64, w=96, depth=2.0) -> Recording:
    tof = np.full((frames, h, w), depth, np.float16)
    tof[:, :8] = np.nan                                    # a band the ToF cannot see
    truth = np.full((frames, h, w), depth, np.float16)
    truth[:, :8] = 5.0
    return Recording('plane', np.arange(frames, dtype=np.int64), np.zeros((frames, 3, h, w), np.float16), tof,
                     truth)


def test_fill_scores_of_a_plane_match_closed_forms():
    rec = _plane_recording()
    predictions = {'good': np.full((2, 64, 96), 2.0, np.float32),
                   'far': np.full((2, 64, 96), 2.4, np.float32),      # 20 % long: delta1 still 1
                   'bad': np.full((2, 64, 96), 4.0, np.float32)}      # twice the depth: delta1 0
    scores = fill_eval.score_fill(rec, predictions, constant=1.0)
    rows = scores['rows']
    assert scores['labels'] == 2 * 56 * 96 and 0.2 * scores['labels'] <= scores['hidden'] < scores['labels']
    fill = rows['far student']['fill']
    assert fill['rmse'] == pytest.approx(0.4, abs=1e-6) and fill['absrel'] == pytest.approx(0.2, abs=1e-6)
    assert fill['delta1'] == 1.0 and fill['coverage'] == 1.0, f'2.4 / 2.0 = 1.2 < 1.25, got {fill}'
    # median scaling against the visible ToF: 2.4 * (2.0 / 2.4) = 2.0 exactly where the ToF was hidden
    assert rows['far median']['fill']['rmse'] == pytest.approx(0.0, abs=1e-5)
    assert rows['good student']['fill']['rmse'] == pytest.approx(0.0, abs=1e-6)
    # The node's fusion trusts a student that agrees with the ToF and withholds one that does not.
    assert rows['far fused']['fill']['coverage'] == 1.0
    assert rows['bad fused']['fill']['coverage'] == 0.0 and rows['bad student']['fill']['coverage'] == 1.0
    assert rows['bad student']['fill']['rmse'] == pytest.approx(2.0, abs=1e-6)
    const = rows['constant']
    assert const['fill']['rmse'] == pytest.approx(1.0) and const['tof']['absrel'] == pytest.approx(0.5)
    assert const['fill']['delta1'] == 0.0
    # ToF holes (the top band) against the truth of 5 m: the student's 2.0 is 3 m short
    assert rows['good student']['holes']['rmse'] == pytest.approx(3.0, abs=1e-3)
    table = fill_eval.format_table(scores, 'title')
    assert 'far median' in table and 'ToF holes vs ground truth' in table
    bad_fused = next(line for line in table.splitlines() if line.startswith('bad fused'))
    assert bad_fused.split()[2:6] == ['-', '-', '-', '0.0%'], bad_fused


# ------------------------------------------------------------------------------------------- the tool

H, W = 32, 48          # the tiny student's input; the camera is 2x that
RGB_STAMPS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def tiny_checkpoint(path):
    torch.manual_seed(0)
    model = StudentNet(StudentConfig(base_channels=4)).eval()
    save_checkpoint(path, model, ModelSpec(height=H, width=W), extra={'steps': 0})
    return path


#: What the unlabelled pixels hold: (depths of the invalid top rows, at confidence 0; depth of a band at
#: confidence 20, under the threshold of 50).
ABSURD_FILL = (ABSURD, 0.15)              # out of range, negative, NaN, inf; 15 cm on a plane 2-4 m away
PLAIN_FILL = (np.array([2.5, 3.5], np.float32), 3.0)


def plane_depth(rows: np.ndarray) -> np.ndarray:
    """The ToF plane: 4 m at the top of the 2H-row camera image to 1 m at the bottom."""
    return (4.0 - 3.0 * rows / (2 * H)).astype(np.float32)


def camera_frame(i: int, fill):
    """RGB (colours changing with the row), the ToF plane and its confidence; the invalid top rows and the
    low-confidence column band hold ``fill``."""
    rng = np.random.default_rng(i)
    h, w = 2 * H, 2 * W
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    depth = plane_depth(rows)
    rgb = np.clip(np.stack([rows * 3, rows * 2, 255 - rows * 3], -1) + rng.normal(0, 5, (h, w, 3)), 0, 255)
    conf = np.full((h, w), 200, np.uint8)
    conf[:, 10:16] = 20
    depth[:, 10:16] = fill[1]
    conf[:6] = 0                                          # invalid (a driver's confidence 0)
    depth[:6] = np.resize(fill[0], (6, w))
    return rgb.astype(np.uint8), depth, conf


def write_bag(path, plugin, fill=ABSURD_FILL):
    store = get_typestore(Stores.ROS2_HUMBLE)
    with rosbag2.Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {t: writer.add_connection(t, 'sensor_msgs/msg/Image', typestore=store)
                 for t in ('/camera/rgb', '/camera/depth', '/camera/depth/confidence')}
        for i, t in enumerate(RGB_STAMPS):
            rgb, depth, conf = camera_frame(i, fill)
            tof_t = t + 0.004                             # the ToF exposes 4 ms after the RGB
            for topic, stamp, image, enc in (('/camera/rgb', t, rgb, 'rgb8'),
                                             ('/camera/depth', tof_t, depth, '32FC1'),
                                             ('/camera/depth/confidence', tof_t, conf, 'mono8')):
                header = Header(frame_id='camera_color_optical_frame')
                header.stamp.sec, header.stamp.nanosec = 50, int(stamp * 1e9)
                writer.write(conns[topic], int((50 + stamp + 0.01) * 1e9),
                             serialize_message(codecs.array_to_image(image, enc, header)))
    return path


@pytest.mark.parametrize('plugin', ['SQLITE3', 'MCAP'])
def test_a_bag_pairs_every_rgb_with_its_tof_by_stamp(tmp_path, plugin):
    bag = write_bag(tmp_path / 'bag', getattr(rosbag2.StoragePlugin, plugin))
    rec = load_recording(bag, ModelSpec(height=H, width=W))
    assert len(rec) == len(RGB_STAMPS) and rec.truth is None and not rec.notes, rec.notes
    np.testing.assert_array_equal(rec.stamps, [50 * 10**9 + int(t * 1e9) for t in RGB_STAMPS])
    # Labels: the plane, grid row i from camera row 2i + 1, except invalid rows and the low-confidence band.
    expected = plane_depth(np.arange(1, 2 * H, 2, dtype=np.float32)).astype(np.float16)[:, None].repeat(W, 1)
    expected[:3] = np.nan                                   # camera rows 1, 3, 5 were invalid
    expected[:, 5:8] = np.nan                               # camera columns 11, 13, 15: low confidence
    np.testing.assert_array_equal(rec.tof[0], expected)


def test_unlabelled_pixels_never_reach_training(tmp_path):
    """Fine-tune twice on bags that differ only in what invalid and low-confidence ToF pixels hold:
    absurd values (1e6, -5, NaN, inf; 0.15 m at confidence 20 on a plane 2-4 m away) or ordinary ones; the
    weights come out bit-identical, and they did move."""
    start = tiny_checkpoint(tmp_path / 'start.pt')
    weights = []
    for name, fill in (('absurd', ABSURD_FILL), ('plain', PLAIN_FILL)):
        bag = write_bag(tmp_path / name, rosbag2.StoragePlugin.MCAP, fill)
        rec = load_recording(bag, ModelSpec(height=H, width=W))
        model, steps, _ = finetune.finetune(read_checkpoint(start).build(), rec.inputs, rec.tof, steps=3,
                                            batch_size=4, lr=1e-3, seed=0, log=lambda _: None)
        assert steps == 3
        weights.append(model.state_dict())
    before = read_checkpoint(start).state_dict
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), f'{key} differs: unlabelled pixels reached the training'
    moved = [k for k, v in weights[0].items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert moved, 'fine-tuning changed no weight'


def one_error_line(capsys, code, expected_code, *parts):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == expected_code, f'exit code {expected_code} expected, got {code}: {err}'
    assert len(lines) == 1 and lines[0].startswith('finetune_student: error: '), f'one line expected: {err!r}'
    for part in parts:
        assert part in lines[0], f'expected {part!r} in {lines[0]!r}'


def test_finetune_student_writes_an_exportable_checkpoint_and_scores_it(tmp_path, capsys):
    start = tiny_checkpoint(tmp_path / 'start.pt')
    bag = write_bag(tmp_path / 'bag', rosbag2.StoragePlugin.MCAP)
    out = tmp_path / 'tuned.pt'
    code = finetune.main(['--checkpoint', str(start), '--recording', str(bag), '--out', str(out),
                          '--steps', '2', '--batch-size', '2', '--miou-frames', '2', '--holdout', '0.3'])
    printed = capsys.readouterr().out
    assert code == 0, printed
    last = printed.strip().splitlines()[-1]
    summary = json.loads(last, parse_constant=lambda c: pytest.fail(f'{c} in the JSON line, expected null'))
    assert (summary['frames_train'], summary['frames_heldout'], summary['steps']) == (7, 3, 2), summary
    for key in ('0_constant_fill_rmse', '0_before_student_fill_delta1', '0_after_median_tof_absrel',
                '0_after_fused_fill_coverage', 'miou_after'):
        assert np.isfinite(summary[key]), f'{key} = {summary[key]}'
    assert 'hidden blocks (the fill)' in printed and (tmp_path / 'tuned_fill.png').is_file()
    extra = read_checkpoint(out).extra
    assert extra['finetune']['holdout'] == 0.3 and extra['steps'] == 2
    from rc_offline import export
    assert export.main(['--checkpoint', str(out), '--output-dir', str(tmp_path / 'exported'), '--skip-trt',
                        '--precision', 'fp32']) == 0
    assert (tmp_path / 'exported' / 'tuned_fp32.onnx').is_file()
    # Scoring it again on a larger held-out share would score frames it was trained on: refused.
    code = finetune.main(['--checkpoint', str(start), '--recording', str(bag), '--evaluate', str(out),
                          '--holdout', '0.5'])
    one_error_line(capsys, code, 2, 'fine-tuned on all but the last 30%')


@pytest.mark.parametrize(('argv', 'code', 'message'), [
    (['--holdout', '1.5', '--out', 'x.pt'], 2, '--holdout must be between 0 and 1'),
    (['--steps', '0', '--out', 'x.pt'], 2, '--steps must be >= 1'),
    ([], 2, '--out is required'),
    (['--out', 'x.pt', '--recording', 'nowhere'], 1, 'does not exist'),
])
def test_bad_arguments_give_one_line(tmp_path, capsys, argv, code, message):
    start = tiny_checkpoint(tmp_path / 'start.pt')
    recording = [] if '--recording' in argv else ['--recording', str(tmp_path)]
    got = finetune.main(['--checkpoint', str(start), *recording, *argv])
    one_error_line(capsys, got, code, message)
