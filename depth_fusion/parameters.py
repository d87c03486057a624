"""depth_fusion_node's parameters (the node declares these; config/perception.yaml and doc/fusion.md
list them)."""

from __future__ import annotations

from depth_fusion.calibration import ALPHA_RANGE, BETA_RANGE
from depth_fusion.fusion import MODES, OUTPUT_GRIDS, FusionConfig
from depth_fusion.trust import BLIND_POLICIES
from rc_perception.params import ParamSpec

__all__ = ['CONFIDENCE_SETTINGS', 'PARAMS']

CONFIDENCE_SETTINGS = ('auto', 'true', 'false')
_D = FusionConfig()  # the defaults live in one place
_BIG = 10_000_000

PARAMS = (
    ParamSpec('mode', _D.mode,
              'Correction of the student depth before it fills ToF holes: gated (as is), affine '
              '(alpha * d + beta), median (per-frame ratio of ToF to student medians), online_affine '
              '(per-frame robust fit of alpha, beta, smoothed; falls back to the calibrated values), local '
              '(online_affine, then each hole scaled by the ToF / student ratio on its valid ToF border).',
              choices=MODES),
    ParamSpec('use_confidence', 'auto',
              'Gate the ToF depth with its confidence image (same stamp, on camera/depth/confidence): auto '
              '(when confidence images arrive, or a publisher is waiting to send them; validity alone '
              "otherwise), true (always: a ToF frame without its confidence image is not used), false "
              '(never). A string: quote true / false in YAML.', choices=CONFIDENCE_SETTINGS),
    ParamSpec('confidence_threshold', _D.confidence_threshold,
              "ToF pixels with confidence >= this are trusted, in the confidence image's own units "
              '(0-255 for mono8, 0-65535 for mono16/16UC1, as published for 32FC1).', min=0.0, max=65535.0),
    ParamSpec('range_min', _D.range_min, 'ToF readings below this (metres) are invalid; must be below '
              'range_max.', min=0.0, max=100.0),
    ParamSpec('range_max', _D.range_max, 'ToF readings above this (metres) are invalid.',
              min=0.0, max=1000.0),
    ParamSpec('alpha', _D.alpha, 'Scale of the affine correction d = alpha * d_student + beta (affine mode; '
              'the start and fallback of online_affine and local). Ignored when calibration_file is set.',
              min=ALPHA_RANGE[0], max=ALPHA_RANGE[1]),
    ParamSpec('beta', _D.beta, 'Offset (metres) of the affine correction; ignored when calibration_file is '
              'set.', min=BETA_RANGE[0], max=BETA_RANGE[1]),
    ParamSpec('calibration_file', '',
              'YAML written by calibrate_fusion whose alpha, beta replace the parameters; empty: use the '
              'alpha and beta parameters. Read at start-up and when set to another path (set it to an empty '
              'string and back to re-read a rewritten file). A file that cannot be used stops start-up / '
              'rejects the change.'),
    ParamSpec('max_time_diff', 0.05, 'Largest |student stamp - ToF stamp| (seconds) fused together; also '
              'how long a student frame waits for a ToF frame at or after its stamp.', min=0.0, max=10.0),
    ParamSpec('require_tof', False, 'Skip (publish nothing for) student frames without a matching ToF frame '
              'instead of publishing the student depth alone.'),
    ParamSpec('publish_source_map', True, 'Also publish perception/fused_depth/source (mono8: 0 none, 1 ToF, '
              '2 student).'),
    ParamSpec('publish_tof_only', False, 'When the student depth is silent for student_timeout, publish each '
              'ToF frame alone (ToF header, at the ToF rate).'),
    ParamSpec('tof_timeout', 1.0, 'Seconds without a ToF depth (or, for use_confidence auto, a confidence '
              'image) after which that stream counts as silent.', min=0.01, max=60.0),
    ParamSpec('student_timeout', 1.0, 'Seconds without a student depth after which it counts as silent.',
              min=0.01, max=60.0),
    ParamSpec('tof_buffer_size', 10, 'ToF depth (and confidence) frames kept for pairing; must cover the '
              "student's latency at the ToF rate.", min=1, max=100),
    ParamSpec('output_grid', _D.output_grid, "Grid of the output: 'student' (the ToF sampled onto it by "
              "nearest neighbour) or 'tof' (the student sampled onto the ToF grid); any sizes and aspects.",
              choices=OUTPUT_GRIDS),
    ParamSpec('median_min_pixels', _D.median_min_pixels, 'median mode: sampled pixels with both depths '
              'needed for a correction (else none).', min=1, max=_BIG),
    ParamSpec('fit_sample_size', _D.fit_sample_size, 'Pixels the per-frame statistics look at (0 = every '
              'pixel): the fits of median, online_affine and local and the floor plane at this many fixed, '
              'seeded random positions; the live accuracy on evenly spaced rows giving about as many.',
              min=0, max=_BIG),
    ParamSpec('online_smoothing', _D.online_smoothing, 'online_affine / local: weight of the previous '
              "estimate in the exponential smoothing of alpha, beta (0 = each frame's fit as is).",
              min=0.0, max=0.99),
    ParamSpec('online_min_inliers', _D.online_min_inliers, 'online_affine / local: fewer inliers make the '
              'fit fail (calibrated values used).', min=2, max=_BIG),
    ParamSpec('online_outlier_threshold', _D.online_outlier_threshold, 'online_affine / local: a pixel is '
              'an inlier when |alpha * d_student + beta - d_tof| <= this share of d_tof.',
              min=0.001, max=1.0),
    ParamSpec('online_min_spread', _D.online_min_spread, min=0.0, max=100.0,
              description="online_affine / local: the inliers' student depths must spread (standard "
                          'deviation) at least this many metres, else the fit is ill-conditioned.'),
    ParamSpec('local_min_ring', _D.local_min_ring, min=1, max=_BIG,
              description='local: valid ToF pixels bordering a hole needed to scale it by their ToF / '
                          "student ratio (else the frame's fit)."),
    ParamSpec('min_student_delta1', _D.min_student_delta1, "Trust gate: the student's fill is withheld "
              '(NaN, source 0) while the smoothed share of pixels where the corrected student is within a '
              'factor 1.25 of the valid ToF falls below this; 0 turns the gate off.', min=0.0, max=1.0),
    ParamSpec('trust_hysteresis', _D.trust_hysteresis, 'Trust gate: a withheld fill returns when the '
              'smoothed delta1 reaches min_student_delta1 + this.', min=0.0, max=1.0),
    ParamSpec('trust_min_overlap', _D.trust_min_overlap, 'Trust gate: share of the output pixels with both '
              'a valid ToF and a student depth needed to judge a frame; below it trust_when_blind applies.',
              min=0.0, max=1.0),
    ParamSpec('trust_when_blind', _D.trust_when_blind, 'Trust gate, for frames it cannot judge (too little '
              'overlap, or no ToF): last (keep the last verdict; fill before any), trust (fill) or withhold.',
              choices=BLIND_POLICIES),
    ParamSpec('accuracy_smoothing', _D.accuracy_smoothing, 'Weight of the previous value in the exponential '
              'smoothing of the live accuracy over judged frames (0 = this frame only).', min=0.0, max=0.99),
    ParamSpec('ground_tolerance', _D.ground_tolerance, 'Student pixels at or beyond (1 - this) of the '
              "depth of the floor plane fitted to the valid ToF along their ray take the plane's depth: what "
              "the student puts within this share of the camera's height above the floor, or below it (0.25: "
              '5 cm for a camera 0.2 m up). 0 turns it off.', min=0.0, max=0.9),
    ParamSpec('ground_contact', _D.ground_contact, 'Experimental (issue 13): student obstacles whose '
              "column rises from the floor are scaled to the floor plane's depth at their foot (only nearer, "
              "ratio >= 0.5). Off: on the held-out drives it raises the dark block's recall but adds floor "
              'and phantom '

              'cells (doc/fusion.md).'),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)
