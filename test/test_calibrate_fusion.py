"""calibrate_fusion end to end: dataset folders and rosbag2 recordings (sqlite3, mcap) the tests write."""

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from depth_fusion.calibration import read_calibration
from rc_offline.calibrate import main
from rc_offline.dataset import write_depth, write_image

ALPHA, BETA = 1.15, -0.12
STUDENT_SHAPE, TOF_SHAPE = (60, 80), (120, 160)
TS = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = 'sensor_msgs/msg/Image'


def scene(i: int):
    """True depth; the student's view of it (off by ALPHA, BETA); a 2x ToF with holes, outliers and a
    confidence image that is low where the ToF is wrong."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[:TOF_SHAPE[0], :TOF_SHAPE[1]]
    true = (0.6 + 3.0 * yy / TOF_SHAPE[0] + 0.5 * np.sin(xx / (9.0 + i))).astype(np.float32)
    tof_m = true * rng.normal(1.0, 0.005, TOF_SHAPE).astype(np.float32)
    wrong = rng.random(TOF_SHAPE) < 0.2
    tof_m[wrong] *= 1.8                             # multipath: confidently wrong for half of them
    conf = np.where(wrong & (rng.random(TOF_SHAPE) < 0.5), 20, 220).astype(np.uint8)
    tof_m[rng.random(TOF_SHAPE) < 0.1] = np.nan     # dropouts
    mm = np.nan_to_num(np.round(tof_m * 1000), nan=0).astype(np.uint16)
    student = ((true[1::2, 1::2] - BETA) / ALPHA).astype(np.float32)
    return student, mm, conf


def make_dataset(root, frames=5, confidence=True):
    for i in range(frames):
        student, mm, conf = scene(i)
        write_image(root / 'student' / f'{i:06d}.npy', student)
        write_image(root / 'tof' / f'{i:06d}.png', mm)
        if confidence:
            write_image(root / 'confidence' / f'{i:06d}.png', conf)
    return root


def image_msg(arr, encoding, sec, nanosec, bigendian=False, pad=0):
    h, w = arr.shape
    itemsize = arr.dtype.itemsize
    data = arr.astype(arr.dtype.newbyteorder('>' if bigendian else '<')).view(np.uint8).reshape(h, -1)
    if pad:
        data = np.concatenate([data, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    stamp = TS.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
    header = TS.types['std_msgs/msg/Header'](stamp=stamp, frame_id='camera_color_optical_frame')
    return TS.types[IMAGE](header=header, height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                           step=w * itemsize + pad, data=np.ascontiguousarray(data).reshape(-1))


def make_bag(path, plugin, frames=6, topics=('/student/depth', '/camera/depth', '/camera/depth/confidence'),
             bigendian=False, pad=0, drop_tof_of=None):
    student_t, tof_t, conf_t = topics
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {t: writer.add_connection(t, IMAGE, typestore=TS) for t in topics}
        for i in range(frames):
            student, mm, conf = scene(i)
            sec, ns = 100 + i // 10, (i % 10) * 100_000_000  # 10 Hz
            t = (sec * 10**9 + ns)
            if i != drop_tof_of:
                writer.write(conns[tof_t], t + 1_000_000,
                             TS.serialize_cdr(image_msg(mm, '16UC1', sec, ns, bigendian, pad), IMAGE))
                writer.write(conns[conf_t], t + 1_500_000,
                             TS.serialize_cdr(image_msg(conf, 'mono8', sec, ns), IMAGE))
            # The student depth arrives later (inference) with a stamp 10 ms after the ToF's.
            writer.write(conns[student_t], t + 40_000_000,
                         TS.serialize_cdr(image_msg(student, '32FC1', sec, ns + 10_000_000), IMAGE))
    return path


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def check_fit(path, out):
    cal = read_calibration(path)
    assert cal.alpha == pytest.approx(ALPHA, abs=0.01) and cal.beta == pytest.approx(BETA, abs=0.02), \
        f'expected alpha {ALPHA}, beta {BETA}; got {cal.alpha}, {cal.beta}\n{out}'
    fit = cal.fit
    assert fit['rmse_after'] < fit['rmse_before'], fit  # over all pixels, outliers included
    assert fit['rmse_after_inliers'] < 0.05, fit
    assert 0.8 < fit['inlier_share'] < 1.0, fit
    for text in ('as is', 'median scale', 'affine fit', 'inlier share', 'RMSE', f'wrote {path}'):
        assert text in out, f'report lacks {text!r}:\n{out}'
    return cal


def test_dataset_folder(tmp_path, capsys):
    root = make_dataset(tmp_path / 'set')
    code, out, err = run([root, '--output', tmp_path / 'cal.yaml', '--confidence-threshold', 128,
                          '--range-max', 5.0, '--outlier-threshold', 0.05], capsys)
    assert code == 0, err
    cal = check_fit(tmp_path / 'cal.yaml', out)
    assert cal.fit['pairs'] == 5 and cal.fit['input'] == 'dataset', cal.fit
    assert '5 student depth images' in out


def test_confidence_matters(tmp_path, capsys):
    """Without the confidence gate, the confidently-wrong half of the multipath pixels stays in, the other
    half too: more outliers, a lower inlier share."""
    root = make_dataset(tmp_path / 'set')
    shares = []
    for flag in ('--confidence', '--no-confidence'):
        code, out, err = run([root, '-o', tmp_path / f'{flag}.yaml', flag, '--confidence-threshold', 128,
                              '--range-max', 10.0, '--outlier-threshold', 0.05], capsys)
        assert code == 0, err
        shares.append(read_calibration(tmp_path / f'{flag}.yaml').fit['inlier_share'])
    assert shares[0] > shares[1] + 0.03, f'inlier share with / without confidence: {shares}'


def test_student_as_16bit_png_millimetres(tmp_path, capsys):
    root = make_dataset(tmp_path / 'set', frames=3, confidence=False)
    for i in range(3):
        student = np.load(root / 'student' / f'{i:06d}.npy')
        (root / 'student' / f'{i:06d}.npy').unlink()
        write_depth(root / 'student' / f'{i:06d}.png', student)
    code, out, err = run([root, '-o', tmp_path / 'cal.yaml', '--range-max', 5.0, '--outlier-threshold', 0.3],
                         capsys)
    assert code == 0, err
    cal = read_calibration(tmp_path / 'cal.yaml')
    assert cal.alpha == pytest.approx(ALPHA, abs=0.02) and cal.beta == pytest.approx(BETA, abs=0.03)


@pytest.mark.parametrize('plugin', [StoragePlugin.SQLITE3, StoragePlugin.MCAP], ids=['sqlite3', 'mcap'])
def test_rosbag2(tmp_path, capsys, plugin):
    bag = make_bag(tmp_path / 'bag', plugin, drop_tof_of=2)
    code, out, err = run([bag, '-o', tmp_path / 'cal.yaml', '--confidence-threshold', 128, '--range-max', 5.0,
                          '--outlier-threshold', 0.05], capsys)
    assert code == 0, err
    cal = check_fit(tmp_path / 'cal.yaml', out)
    assert cal.fit['pairs'] == 5 and cal.fit['input'] == 'bag', cal.fit
    assert '6 student depth images, 1 without a ToF frame in tolerance' in out, out


def test_rosbag2_custom_topics_file_path_and_codec_details(tmp_path, capsys):
    """Topic names from the command line; the bag given by one of its files; a big-endian ToF image with a
    padded step decodes through the package's codec like any other."""
    topics = ('/robot/student', '/robot/tof', '/robot/tof_conf')
    bag = make_bag(tmp_path / 'bag', StoragePlugin.MCAP, topics=topics, bigendian=True, pad=6)
    mcap = next(bag.glob('*.mcap'))
    code, out, err = run([mcap, '-o', tmp_path / 'cal.yaml', '--student-topic', topics[0], '--tof-topic',
                          topics[1], '--confidence-topic', topics[2], '--confidence-threshold', 128,
                          '--range-max', 5.0, '--outlier-threshold', 0.05], capsys)
    assert code == 0, err
    check_fit(tmp_path / 'cal.yaml', out)


def test_tolerance_decides_pairing(tmp_path, capsys):
    bag = make_bag(tmp_path / 'bag', StoragePlugin.SQLITE3)
    code, out, err = run([bag, '--max-time-diff', 0.005], capsys)  # stamps are 10 ms apart
    assert code == 1 and 'no student depth could be paired' in err, err


@pytest.mark.parametrize('case, message', [
    ('missing', 'does not exist'),
    ('no tof folder', "has no 'tof/' folder"),
    ('bag without topic', 'has no student depth topic /student/depth (topics: /camera/depth'),
    ('sizes', 'confidence image is 70x50 and its ToF depth 160x120: they must be the same size'),
    ('single depth', 'fit failed: ill-conditioned'),
    ('required confidence absent', 'no student depth could be paired'),
    ('bad range', 'range_min (5.0) must be >= 0 and smaller than range_max (1.0)'),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys, case, message):
    args = []
    if case == 'missing':
        src = tmp_path / 'nothing'
    elif case == 'no tof folder':
        src = make_dataset(tmp_path / 'set', frames=1)
        for f in (src / 'tof').iterdir():
            f.unlink()
        (src / 'tof').rmdir()
    elif case == 'bag without topic':
        src = make_bag(tmp_path / 'bag', StoragePlugin.SQLITE3, frames=1)
        args = ['--student-topic', '/student/depth']
        src_bag = tmp_path / 'bag2'
        with Writer(src_bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
            writer.add_connection('/camera/depth', IMAGE, typestore=TS)
        src = src_bag
    elif case == 'sizes':
        src = make_dataset(tmp_path / 'set', frames=1)
        write_image(src / 'confidence' / '000000.png', np.ones((50, 70), np.uint8))
    elif case == 'single depth':
        src = tmp_path / 'flat'
        write_image(src / 'student' / 'a.npy', np.full((40, 40), 2.0, np.float32))
        write_image(src / 'tof' / 'a.png', np.full((40, 40), 2300, np.uint16))
        args = ['--min-inliers', 100]
    elif case == 'required confidence absent':
        src = make_dataset(tmp_path / 'set', frames=2, confidence=False)
        args = ['--confidence']
    else:
        src = make_dataset(tmp_path / 'set', frames=1)
        args = ['--range-min', 5.0, '--range-max', 1.0]
    code, out, err = run([src, *args], capsys)
    assert code == 1, f'expected exit code 1, got {code}; stderr: {err}'
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('calibrate_fusion: error: ') and message in lines[0], err
    assert 'Traceback' not in err


def test_usage_error_exits_2(capsys):
    code, _, err = run(['--bogus'], capsys)
    assert code == 2, f'expected exit 2 for bad arguments, got {code}'
    assert err.startswith('calibrate_fusion: error: ') and err.count('\n') == 1, \
        f'expected one error line, got:\n{err}'
