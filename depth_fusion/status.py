"""What depth_fusion_node says about itself: its log lines and its /diagnostics (pure: no ROS imports).

``report`` turns the node's ``FusionState`` (read under its lock) into a level ('ok' or 'warn'), a one-line
summary and the key/values of its DiagnosticStatus. The first problem found, in this order, makes the
summary: the student silent, the ToF silent or not paired, the student's fill withheld by the trust gate,
paired ToF frames without a single valid pixel, every input dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from depth_fusion.fusion import FusionResult
from depth_fusion.pairing import Match, MatchStatus, StreamState, StreamWatch, ToFPairer

__all__ = ['COUNTS', 'FusionState', 'PairingLog', 'confidence_expected', 'fallback', 'report', 'tof_problem']

COUNTS = ('fused', 'student only', 'ToF only', 'skipped (require_tof)')


def confidence_expected(setting: str, state: StreamState, has_publisher: bool) -> bool:
    """Whether ToF frames need their confidence image: ``use_confidence`` true / false, or auto: when
    confidence images arrive (stream OK), or none yet but a publisher is there to send them."""
    if setting != 'auto':
        return setting == 'true'
    return state is StreamState.OK or (state is StreamState.WAITING and has_publisher)


def startup_line(inputs: list[str], output: str, p, config, calibration_path: str) -> str:
    """The node's one start-up line: topics, mode, correction and where it comes from."""
    return (f"fusing {', '.join(inputs)} -> {output} (mode {p.mode}, alpha {config.alpha:g}, beta "
            f"{config.beta:g} from {calibration_path or 'parameters'}, use_confidence {p.use_confidence})")


def fallback(require_tof: bool) -> str:
    """What the node does with a student depth that has no ToF to fuse."""
    return 'skipping student frames (require_tof)' if require_tof else 'publishing student-only depth'


def tof_problem(status: MatchStatus, silent_for: float, dt: float | None, max_time_diff: float,
                tof_topic: str, confidence_topic: str) -> str:
    """Why no ToF is fused (``dt``: student - nearest ToF stamp, seconds), for logs and diagnostics."""
    if status is MatchStatus.SILENT:
        return f'ToF silent for {silent_for:.1f} s on {tof_topic}'
    if status is MatchStatus.NO_MATCH:
        nearest = f' (nearest {abs(dt) * 1e3:.0f} ms)' if dt is not None else ''
        return f'no ToF within max_time_diff ({max_time_diff:g} s) of the student depth{nearest}'
    if status is MatchStatus.NO_CONFIDENCE:
        return f'no confidence image with the ToF stamp on {confidence_topic}'
    return f'no ToF received yet on {tof_topic}'


class PairingLog:
    """When pairing changes between matched and not, one log line: once per change, and each kind of
    change at most every ``period`` seconds (a pairing that flaps frame by frame must not flood the log)."""

    def __init__(self, period: float = 5.0) -> None:
        self.period = period
        self._logged: dict[MatchStatus, float] = {}  # monotonic time each status was last logged

    def line(self, last: Match | None, match: Match, now: float, watch: StreamWatch, p,
             topics: tuple[str, str]) -> str | None:
        """The line to log for ``match`` after ``last`` (None: nothing to log)."""
        if match.status is (last.status if last else None) or (last is None and match.matched):
            return None
        if now - self._logged.get(match.status, -math.inf) < self.period:
            return None
        self._logged[match.status] = now
        if match.matched:
            return 'ToF matched again: fusing'
        problem = tof_problem(match.status, watch.silent_for(now), match.dt, p.max_time_diff, *topics)
        return f'{problem}: {fallback(p.require_tof)}'


@dataclass
class FusionState:
    """What the node's callbacks update (under the node's lock) and its diagnostics read."""

    pairer: ToFPairer
    student_watch: StreamWatch
    confidence_watch: StreamWatch
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    last_match: Match | None = None
    last_result: FusionResult | None = None  # of the last student frame fused
    last_stamp: int = 0  # of that frame


def _pct(value: float | None) -> float | str:
    return 100.0 * value if value is not None and math.isfinite(value) else '-'


def _accuracy_values(result: FusionResult | None, stamp_ns: int) -> dict:
    acc = result.accuracy if result else None
    verdict = result.verdict if result else None
    smooth = verdict.smoothed if verdict else None
    corr = result.correction if result else None
    fill = '-' if verdict is None else 'on' if verdict.fill else 'withheld'
    return {
        'student AbsRel': acc.absrel if acc else '-',
        'student delta1': acc.delta1 if acc else '-',
        'overlap (%)': _pct(acc.overlap if acc else None),
        'student AbsRel (smoothed)': smooth.absrel if smooth else '-',
        'student delta1 (smoothed)': smooth.delta1 if smooth else '-',
        'overlap (%) (smoothed)': _pct(smooth.overlap if smooth else None),
        'student fill': fill,
        'trust': verdict.reason if verdict else '-',
        'verdict held for (s)': verdict.held_for(stamp_ns) if verdict else '-',
        'alpha': corr.alpha if corr else '-',
        'beta': corr.beta if corr else '-',
        'correction': f'{corr.status}: {corr.detail}' if corr else '-',
        'inlier share': corr.inlier_share if corr else '-',
        'holes scaled / holes': f'{corr.holes_scaled} / {corr.holes}' if corr else '-',
        'floor plane': _ground(result),
    }


def _ground(result: FusionResult | None) -> str:
    if result is None or result.ground is None:
        return 'none fitted (off, or no floor-like plane in the valid ToF)'
    return f'{result.ground.inliers} ToF inliers, {result.ground_pixels} student pixels placed on it'


def report(state: FusionState, p, now: float, topics: tuple[str, str], info: dict) -> tuple[str, str, dict]:
    """(level 'ok' | 'warn', summary, values) for /diagnostics. ``p``: the parameter values; ``topics``:
    the ToF and confidence topics; ``info``: more values shown as they are (``dropped`` among them)."""
    watch, result, match = state.pairer.watch, state.last_result, state.last_match
    tof_state, tof_silent_for = watch.state(now), watch.silent_for(now)
    student_state = state.student_watch.state(now)
    tof_share = result.tof_pixels / result.depth.size if result is not None else None
    status = match.status if match else None
    dt = match.dt if match else None
    unmatched = status is not None and status is not MatchStatus.MATCHED
    values = {
        'mode': p.mode,
        'confidence': f'{p.use_confidence}: ' + ('used' if state.pairer.use_confidence else 'validity alone'),
        **_accuracy_values(result, state.last_stamp),
        'ToF state': f'silent for {tof_silent_for:.1f} s' if tof_state is StreamState.SILENT
        else status.value if unmatched else tof_state.value,
        'student state': student_state.value,
        'ToF share of last fused frame (%)': _pct(tof_share),
        'last student - ToF stamp (ms)': dt * 1e3 if dt is not None else '-',
        **state.counts, **info,
    }
    if student_state is StreamState.SILENT:
        tail = 'publishing ToF-only depth' if p.publish_tof_only and tof_state is StreamState.OK \
            else 'publishing nothing'
        return 'warn', f'no student depth for {state.student_watch.silent_for(now):.1f} s: {tail}', values
    if tof_state is StreamState.SILENT or unmatched:
        problem = MatchStatus.SILENT if tof_state is StreamState.SILENT else status
        text = tof_problem(problem, tof_silent_for, dt, p.max_time_diff, *topics)
        return 'warn', f'{text}: {fallback(p.require_tof)}', values
    if result is not None and not result.verdict.fill:
        return 'warn', (f'student fill withheld for {result.verdict.held_for(state.last_stamp):.1f} s: '
                        f'{result.verdict.reason}'), values
    if status is MatchStatus.MATCHED and tof_share == 0.0:
        return 'warn', ('ToF frames are paired but none of their pixels passes range_min / range_max / '
                        "confidence_threshold (is the threshold in the confidence image's units?)"), values
    if info.get('dropped') and not any(state.counts.values()):
        return 'warn', 'every input so far was dropped', values
    if status is None:
        return 'ok', 'waiting for student depth', values
    return 'ok', f'fusing ToF and student depth (mode {p.mode})', values
