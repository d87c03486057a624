"""rc_offline.demo_trust: the demo's trust-gate check on constructed per-frame figures; the fault inputs."""

import os

import pytest

from rc_offline.demo_trust import TrustSection, shuffled_split, trust_section


def frame(i, delta1, filled, could_fill=True):
    return {'stem': f'{i:06d}', 'absrel': 1 - delta1, 'delta1': delta1, 'overlap': 0.5,
            'could_fill': could_fill, 'filled': filled}


def test_a_faulty_student_passes_only_if_its_disagreeing_fill_stops_within_a_second():
    # 15 Hz: 15 disagreeing frames with the fill on is exactly 1 s; 16 is too long.
    quick = [frame(i, 0.5, i < 15) for i in range(30)]
    slow = [frame(i, 0.5, i < 16) for i in range(30)]
    agreeing = [frame(i, 0.9, True) for i in range(30)]   # a "fault" that happens to agree keeps its fill
    assert TrustSection(quick, {}, 'constant', 15.0, 0.75).check()[1] is True
    assert TrustSection(slow, {}, 'constant', 15.0, 0.75).check()[1] is False
    assert TrustSection(agreeing, {}, 'shuffled', 15.0, 0.75).check()[1] is True
    assert TrustSection(slow, {}, 'constant', 15.0, 0.75).disagreeing_fill_s() == pytest.approx(16 / 15)


def test_the_real_student_must_keep_its_fill_where_there_were_holes():
    frames = [frame(i, 0.9, i != 3) for i in range(20)] + [frame(20, 0.9, False, could_fill=False)]
    section = TrustSection(frames, {}, None, 15.0, 0.75)
    assert section.kept_share() == pytest.approx(19 / 20)   # the frame without holes does not count
    assert section.check()[1] is True
    frames[5]['filled'] = False
    assert TrustSection(frames, {}, None, 15.0, 0.75).check()[1] is False


def test_section_reads_the_fusion_nodes_diagnostics_and_writes_its_lines():
    diags = {'depth_fusion_node: depth fusion': {'student fill': 'withheld', 'trust': 'student disagrees',
                                                 'unrelated': 'x'},
             'student_trt_node: student inference': {'student fill': 'not this one'}}
    section = trust_section([frame(0, 0.5, False)], diags, 'constant', 15.0, 0.75)
    assert section.node == {'student fill': 'withheld', 'trust': 'student disagrees'}
    text = '\n'.join(section.lines())
    assert '| fusion node: student fill | withheld |' in text
    assert 'PASS' in text and '| 000000 | 0.500 | 0.500 | 50 % | no |' in text


def test_shuffled_split_pairs_each_tof_frame_with_another_frames_image(tmp_path):
    split = tmp_path / 'split'
    for sub in ('rgb', 'tof', 'depth'):
        (split / sub).mkdir(parents=True)
        for i in range(4):
            (split / sub / f'{i:06d}.png').write_text(f'{sub}{i}')
    (split / 'camera.yaml').write_text('camera')
    out = shuffled_split(split, tmp_path / 'shuffled')
    assert [(out / 'rgb' / f'{i:06d}.png').read_text() for i in range(4)] == ['rgb2', 'rgb3', 'rgb0', 'rgb1']
    assert (out / 'tof' / '000001.png').read_text() == 'tof1'
    assert (out / 'camera.yaml').read_text() == 'camera'
    assert os.path.islink(out / 'rgb' / '000000.png'), 'the copy links to the split, it does not duplicate it'
