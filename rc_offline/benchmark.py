"""benchmark: latency, memory, depth error and segmentation IoU of every exported student model in a folder.

Finds every ONNX model (.onnx) and TensorRT engine (.engine / .plan, with the .json sidecar export_trt
writes beside it) in --engine-dir and measures each one in a fresh Python process (so memory deltas belong
to that model alone):

  latency         backend.infer on one preprocessed camera frame: --warmup runs, then --iterations timed
                  runs: mean, p50, p90, p99, FPS (1000 / mean). TensorRT: including the input's host->device
                  and the outputs' device->host copies, and again without them (compute only:
                  execute_async_v3 + synchronize); ONNX Runtime on the CPU has no device copies.
  pre+infer+post  the same frame through Preprocessor, infer and Postprocessor (at the model's size), each
                  stage timed: what the node's worker does per frame, without the ROS message conversions.
  memory          TensorRT: the engine's device memory per execution context (device_memory_size_v2 or
                  device_memory_size) and the drop in cudaMemGetInfo free memory from before loading (CUDA
                  context already made) to after the timed runs; every backend: the process's resident
                  memory (RSS) growth over the same span, the runtime library already imported.
  accuracy        on --eval-data (rgb/, depth/, labels/; default: the built-in held-out synthetic driving
                  sequence, --eval-frames frames): depth RMSE (m), AbsRel, delta < 1.25, IoU per class and
                  mean, at the model's output size with the ground truth sampled at the output pixel centres
                  (rc_offline.evaluation).
  machine         CPU, cores, memory, GPU, TensorRT / ONNX Runtime / numpy versions, load; on a Jetson the
                  model, L4T release, power mode (nvpmodel -q) and CPU / GPU clocks. "n/a: why" where absent.

Writes a markdown report (printed, and saved beside --output with the suffix .md), a JSON file (--output)
with every figure and the raw latency samples, and a PNG of the latency distributions (--plot). The table
ends with the Jetson figures of the deployment document this package was specified from, as reference rows
(not measured by this run; --no-reference leaves them out). A figure that cannot be measured for a backend
says why ("n/a: ..."), never a blank.

Examples:
  benchmark --engine-dir exported/                       # every model there, default held-out set
  benchmark --engine-dir exported/ --eval-data data/corridor --iterations 500 --output corridor.json
  benchmark --engine-dir exported/ --backend onnxruntime --threads 4 --eval-frames 0   # latency only

Exit codes: 0 all found models measured (those this machine cannot run are listed as skipped); 1 bad input
(folder, evaluation set) or a model that failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rc_offline.benchmark_report import markdown_report, write_plot
from rc_offline.cli import ArgumentParser, ToolError, UsageError, run_tool
from rc_offline.evaluation import na
from rc_offline.machine import MIB, load_average, machine_facts, peak_rss_mib, rss_mib

__all__ = ['BenchmarkError', 'DEFAULT_HELDOUT_FRAMES', 'REFERENCE_ROWS', 'REFERENCE_SOURCE', 'UsageError',
           'build_parser', 'discover_models', 'latency_stats', 'machine_facts', 'main', 'markdown_report',
           'measure_model', 'timed', 'write_plot']

DEFAULT_ITERATIONS = 200
DEFAULT_WARMUP = 20
DEFAULT_HELDOUT_FRAMES = 60
DEFAULT_OUTPUT = 'benchmark_results.json'
PROG = 'benchmark'

REFERENCE_SOURCE = ('the deployment document this package was specified from (shared/seeds/000: '
                    'benchmark_jetson.py on a Jetson Orin Nano 8 GB, TensorRT); not measured by this run; '
                    'the source does not say which latency statistic it reports or how it measured memory')
#: The source's Jetson table; 'n/r' marks a figure it does not report.
REFERENCE_ROWS: tuple[dict, ...] = (
    {'model': 'DA3-Small FP16', 'backend': 'tensorrt', 'precision': 'fp16', 'input': '308x308',
     'latency_ms': 4.6, 'fps': 218, 'gpu_mem_mb': 2700, 'rmse_m': 0.522,
     'note': 'teacher-sized model; RMSE on the source\'s corridor set (implied by its footnote); 218 FPS as '
             'the source states'},
    {'model': 'V9 student FP16', 'backend': 'tensorrt', 'precision': 'fp16', 'input': '240x320',
     'latency_ms': 2.1, 'fps': None, 'gpu_mem_mb': 890, 'rmse_m': 0.382,
     'note': 'RMSE 0.382 m is on LILocBench, not the corridor set (1.418 m there)'},
    {'model': 'V9 student INT8 (random calibration)', 'backend': 'tensorrt', 'precision': 'int8',
     'input': '240x320', 'latency_ms': 1.4, 'fps': None, 'gpu_mem_mb': 640, 'rmse_m': None,
     'note': 'calibrated on random noise (poor quality, the source warns); RMSE not reported'},
)


class BenchmarkError(ToolError):
    """Unusable input (folder, evaluation set) or nothing that can be measured (exit code 1)."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- statistics

def latency_stats(samples_ms: list[float] | np.ndarray) -> dict:
    """Mean, p50, p90, p99, min, max, std (ms), FPS (1000 / mean) and the samples themselves."""
    arr = np.asarray(samples_ms, np.float64)
    if arr.size == 0:
        raise ValueError('no latency samples')
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    mean = float(arr.mean())
    return {'iterations': int(arr.size), 'mean_ms': round(mean, 4), 'p50_ms': round(float(p50), 4),
            'p90_ms': round(float(p90), 4), 'p99_ms': round(float(p99), 4),
            'min_ms': round(float(arr.min()), 4), 'max_ms': round(float(arr.max()), 4),
            'std_ms': round(float(arr.std()), 4), 'fps': round(1000.0 / mean, 2) if mean > 0 else na('zero'),
            'samples_ms': np.round(arr, 4).tolist()}


# ----------------------------------------------------------------------------------------------- models

@dataclass(frozen=True)
class ModelFile:
    """A model found in --engine-dir: measured when ``skip`` is empty, else listed with the reason."""

    path: Path
    kind: str          # 'onnx' or 'engine'
    backend: str       # the backend to measure it with ('' when skipped)
    skip: str = ''


def discover_models(folder: str | Path, backend: str = 'auto',
                    tensorrt: tuple[bool, str] | None = None) -> list[ModelFile]:
    """Every .onnx, .engine and .plan directly in ``folder``, sorted by name, each with the backend that
    measures it here or the reason it is skipped.

    Args:
        folder: the export folder.
        backend: 'auto' (ONNX with ONNX Runtime, engines with TensorRT where it runs here), 'onnxruntime' or
            'tensorrt' (only the models that backend runs).
        tensorrt: (usable, why) for TensorRT + a CUDA GPU here; probed when None and an engine is found.

    Raises:
        BenchmarkError: ``folder`` is missing, not a folder, or holds no model; or ``backend`` is 'tensorrt'
            and TensorRT cannot run here.
    """
    from student_trt.backends import ENGINE_SUFFIXES
    root = Path(folder)
    files = _model_files(root)
    has_engines = any(p.suffix.lower() in ENGINE_SUFFIXES for p in files)
    if tensorrt is None and has_engines and backend != 'onnxruntime':
        from student_trt.backends import probe_tensorrt_gpu
        tensorrt = probe_tensorrt_gpu()
    if backend == 'tensorrt' and has_engines and not tensorrt[0]:
        raise BenchmarkError(f'--backend tensorrt, but TensorRT cannot run here: {tensorrt[1]} (install '
                             'TensorRT and cuda-python; JetPack ships TensorRT)')
    models = [_classify(path, backend, tensorrt) for path in files]
    if backend == 'tensorrt' and not any(m.backend for m in models):
        raise BenchmarkError(f'--backend tensorrt: {root} holds no TensorRT engine (.engine, .plan); build '
                             'them on this device with export_trt')
    return models


def _model_files(root: Path) -> list[Path]:
    """The model files in ``root``, sorted; raises BenchmarkError naming what is there when none."""
    from student_trt.backends import ENGINE_SUFFIXES, ONNX_SUFFIXES
    if not root.exists():
        raise BenchmarkError(f'--engine-dir {root} does not exist (export models with: export_trt '
                             '--checkpoint <student.pt> --output-dir <dir>)')
    if not root.is_dir():
        raise BenchmarkError(f'--engine-dir {root} is not a directory')
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in ONNX_SUFFIXES +
                   ENGINE_SUFFIXES)
    if not files:
        present = sorted(p.name for p in root.iterdir())
        shown = ', '.join(present[:5]) + (f' and {len(present) - 5} more' if len(present) > 5 else '')
        raise BenchmarkError(f"--engine-dir {root} holds no model (.onnx, .engine, .plan); found "
                             f"{shown or 'nothing'}; export with: export_trt --checkpoint <student.pt> "
                             f'--output-dir {root}')
    return files


def _classify(path: Path, backend: str, tensorrt: tuple[bool, str] | None) -> ModelFile:
    """The backend that measures ``path`` here, or why it is skipped."""
    from student_trt.backends import ONNX_SUFFIXES
    from student_trt.engine_sidecar import sidecar_path
    if path.suffix.lower() in ONNX_SUFFIXES:
        if backend == 'tensorrt':
            return ModelFile(path, 'onnx', '', 'ONNX model: --backend tensorrt measures engines (build them '
                                               'with export_trt --from-onnx)')
        return ModelFile(path, 'onnx', 'onnxruntime')
    if backend == 'onnxruntime':
        return ModelFile(path, 'engine', '', 'TensorRT engine: --backend onnxruntime runs only the .onnx '
                                             'models')
    if not sidecar_path(path).is_file():
        return ModelFile(path, 'engine', '', f'no sidecar {sidecar_path(path).name} beside it (rebuild it '
                                             'with export_trt on this device)')
    if not tensorrt[0]:
        return ModelFile(path, 'engine', '', f'TensorRT engine, and TensorRT cannot run here ({tensorrt[1]})')
    return ModelFile(path, 'engine', 'tensorrt')


def _gpu_free_mib() -> float:
    """Free device memory (cudaMemGetInfo) of the current device, in MiB; the first call makes the CUDA
    context."""
    from student_trt import cuda_buffers
    free, _total = cuda_buffers.call('cudaMemGetInfo')
    return int(free) / MIB


def timed(fn: Callable[[], object], warmup: int, iterations: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``iterations`` times; the timed calls' milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _evaluation_frame(eval_dir: str | None, eval_frames: int | None) -> tuple[np.ndarray | None, str]:
    """The frame the latency runs use: the first evaluation frame (a real camera-size image); None without
    an evaluation set."""
    if eval_dir is None or eval_frames == 0:
        return None, ''
    from rc_offline.dataset import read_rgb
    from rc_offline.evaluation import select_frames
    frame = select_frames(eval_dir, eval_frames)[0]
    rgb = read_rgb(frame.paths['rgb'])
    return rgb, f'{rgb.shape[0]}x{rgb.shape[1]} frame {frame.stem} of the evaluation set'


def _synthetic_frame(spec) -> tuple[np.ndarray, str]:
    """Noise at twice the model's input size, for latency without an evaluation set."""
    rgb = np.random.default_rng(0).integers(0, 256, (2 * spec.height, 2 * spec.width, 3), dtype=np.uint8)
    return rgb, f'{rgb.shape[0]}x{rgb.shape[1]} synthetic noise image (no evaluation set)'


def measure_model(config: dict) -> dict:
    """Measure one model (meant to run in a fresh process: see ``main``); returns its JSON-ready record.

    Args:
        config: ``model`` (path), ``backend`` ('onnxruntime' or 'tensorrt'), ``iterations``, ``warmup``,
            ``threads``, ``eval_data`` (folder or None), ``eval_frames`` (None = all, 0 = skip accuracy).

    Raises:
        BackendError, DatasetError: the model or the evaluation set cannot be used.
    """
    from student_trt.backends import open_backend

    path = Path(config['model'])
    trt = config['backend'] == 'tensorrt'
    # Read the frame (importing Pillow), import the runtime and make the CUDA context before the baselines:
    # the deltas are the model's.
    frame, frame_source = _evaluation_frame(config['eval_data'], config['eval_frames'])
    __import__('tensorrt' if trt else 'onnxruntime')
    before = _MemoryMarks(trt)
    notes: list[str] = []
    start = time.perf_counter()
    backend = open_backend(path, config['backend'], num_threads=int(config['threads']), log=notes.append)
    try:
        load_s = time.perf_counter() - start
        loaded = _MemoryMarks(trt)
        if frame is None:
            frame, frame_source = _synthetic_frame(backend.spec)
        latency = {'frame': frame_source,
                   **_latency(backend, frame, int(config['warmup']), int(config['iterations']))}
        memory = _memory(backend, before, loaded, _MemoryMarks(trt))
        spec = backend.spec
        return {
            'file': path.name, 'path': str(path), 'status': 'measured', 'backend': backend.name,
            'backend_description': backend.description, 'selection': backend.selection_reason,
            'precision': backend.precision, 'input': f'{spec.height}x{spec.width}',
            'classes': list(spec.class_names), 'calibration': spec.calibration or na('not quantized'),
            'load_s': round(load_s, 3), 'latency': latency, 'memory': memory,
            'accuracy': _accuracy(backend, config), 'notes': notes,
        }
    finally:
        backend.close()


class _MemoryMarks:
    """Resident memory (and free GPU memory for TensorRT) at one moment of a measurement."""

    def __init__(self, gpu: bool) -> None:
        self.rss = rss_mib()
        self.gpu_free = _gpu_free_mib() if gpu else None


def _latency(backend, frame: np.ndarray, warmup: int, iterations: int) -> dict:
    """Inference alone, compute alone (TensorRT), and the node's pre + infer + post stages on ``frame``."""
    from student_trt.postprocess import Postprocessor
    from student_trt.preprocess import Preprocessor
    pre, post = Preprocessor(backend.spec), Postprocessor(backend.spec)
    x = pre(frame, 'rgb8')
    latency: dict = {'inference': latency_stats(timed(lambda: backend.infer(x), warmup, iterations))}
    if backend.name == 'tensorrt':
        backend.infer(x)  # the device input now holds the real frame
        latency['compute_only'] = latency_stats(timed(backend.execute_only, warmup, iterations))
        latency['copies'] = ('inference includes the pinned host->device input copy and the '
                             'device->host output copies; compute_only excludes them')
    else:
        latency['compute_only'] = latency['copies'] = na('CPU backend has no device copies')
    stages: dict[str, list[float]] = {'preprocess': [], 'infer': [], 'postprocess': [], 'total': []}

    def pipeline() -> None:
        t0 = time.perf_counter()
        tensor = pre(frame, 'rgb8')
        t1 = time.perf_counter()
        out = backend.infer(tensor)
        t2 = time.perf_counter()
        post(out.depth, out.seg_logits)
        t3 = time.perf_counter()
        for key, value in (('preprocess', t1 - t0), ('infer', t2 - t1), ('postprocess', t3 - t2),
                           ('total', t3 - t0)):
            stages[key].append(value * 1e3)

    timed(pipeline, warmup, iterations)
    latency['end_to_end'] = latency_stats(stages['total'][warmup:])
    for key in ('preprocess', 'infer', 'postprocess'):
        latency[f'pipeline_{key}'] = latency_stats(stages[key][warmup:])
    return latency


def _memory(backend, before: _MemoryMarks, loaded: _MemoryMarks, after: _MemoryMarks) -> dict:
    """RSS growth (load and whole run), peak RSS; TensorRT: engine device memory and free-memory drops."""
    memory: dict = {}
    no_proc = na('/proc/self/status not readable (not Linux)')
    readable = None not in (before.rss, loaded.rss, after.rss)
    memory['rss_delta_mib'] = round(after.rss - before.rss, 2) if readable else no_proc
    memory['rss_load_delta_mib'] = round(loaded.rss - before.rss, 2) if readable else no_proc
    peak = peak_rss_mib()
    memory['rss_peak_mib'] = round(peak, 2) if peak is not None else na('peak RSS not readable')
    if backend.name != 'tensorrt':
        for key in ('engine_device_mib', 'gpu_mem_delta_mib', 'gpu_mem_load_delta_mib'):
            memory[key] = na('CPU backend')
        return memory
    size = backend.device_memory_size
    memory['engine_device_mib'] = round(size / MIB, 2) if size is not None else \
        na('this TensorRT exposes neither device_memory_size_v2 nor device_memory_size')
    memory['gpu_mem_delta_mib'] = round(before.gpu_free - after.gpu_free, 2)
    memory['gpu_mem_load_delta_mib'] = round(before.gpu_free - loaded.gpu_free, 2)
    return memory


def _accuracy(backend, config: dict) -> dict:
    from rc_offline.evaluation import EvalResult, evaluate
    if config['eval_data'] is None or config['eval_frames'] == 0:
        return EvalResult(backend.spec.class_names).summary('accuracy not evaluated (--eval-frames 0)')
    return evaluate(backend, config['eval_data'], config['eval_frames']).summary()


def _measure_one_main(config_path: str, result_path: str) -> int:
    """``python -m rc_offline.benchmark --measure-one CONFIG RESULT``: the per-model child process."""
    from rc_offline.dataset import DatasetError
    from student_trt.backends import BackendError
    config = json.loads(Path(config_path).read_text())
    try:
        record = measure_model(config)
    except (BackendError, DatasetError, ValueError, OSError) as exc:
        Path(result_path).write_text(json.dumps({'error': str(exc)}))
        return 1
    except ImportError as exc:
        Path(result_path).write_text(json.dumps({'error': f'{exc} (install it to measure this model)'}))
        return 1
    Path(result_path).write_text(json.dumps(record))
    return 0


#: A measuring process that runs longer than this is stopped and its model reported as failed (a
#: TensorRT engine build on a Jetson may take several minutes; a hang must not stall the whole run).
MEASURE_TIMEOUT_S = 1800


def run_isolated(config: dict) -> dict:
    """``measure_model(config)`` in a fresh Python process; on failure a record with ``error``."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (package_root, env.get('PYTHONPATH', '')) if p)
    with tempfile.TemporaryDirectory(prefix='rc_perception_benchmark_') as tmp:
        config_path, result_path = Path(tmp) / 'config.json', Path(tmp) / 'result.json'
        config_path.write_text(json.dumps(config))
        try:
            done = subprocess.run([sys.executable, '-m', 'rc_offline.benchmark', '--measure-one',
                                   str(config_path), str(result_path)], capture_output=True, text=True,
                                  env=env, check=False, timeout=MEASURE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            done = None
        if done is None:
            record = {'error': f'the measuring process did not finish within {MEASURE_TIMEOUT_S} s'}
        elif result_path.is_file():
            record = json.loads(result_path.read_text())
        else:
            lines = [line for line in (done.stderr or '').strip().splitlines() if line.strip()]
            record = {'error': f'the measuring process exited with code {done.returncode}'
                               + (f': {lines[-1].strip()}' if lines else '')}
    if 'error' in record:
        path = Path(config['model'])
        record.update({'file': path.name, 'path': str(path), 'status': 'failed',
                       'backend': config['backend']})
    return record


# -------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = ArgumentParser(prog=PROG, description=summary, epilog=details,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('--engine-dir', required=True, metavar='DIR',
        help='folder with the exported models (.onnx, .engine/.plan + .json sidecar), e.g. exported/')
    add('--eval-data', metavar='DIR', default=None,
        help='evaluation set: a folder with rgb/, depth/ (16-bit PNG mm or .npy m) and labels/ (default: the '
             'built-in held-out synthetic driving sequence, generated once and cached)')
    add('--eval-frames', type=int, default=None, metavar='N',
        help=f'frames to evaluate: of the held-out set (default {DEFAULT_HELDOUT_FRAMES}), or N spread '
             'evenly over --eval-data (default all); 0 skips the accuracy figures')
    add('--iterations', type=int, default=DEFAULT_ITERATIONS, metavar='N',
        help=f'timed runs per latency measurement (default {DEFAULT_ITERATIONS})')
    add('--warmup', type=int, default=DEFAULT_WARMUP, metavar='N',
        help=f'untimed runs before each latency measurement (default {DEFAULT_WARMUP})')
    add('--threads', type=int, default=0, metavar='N',
        help='ONNX Runtime intra-op threads (default 0: one per physical core)')
    add('--backend', choices=('auto', 'onnxruntime', 'tensorrt'), default='auto',
        help='auto (default): ONNX models with ONNX Runtime, engines with TensorRT where it runs here; '
             'onnxruntime or tensorrt: only the models that backend runs')
    add('--output', metavar='FILE', default=DEFAULT_OUTPUT,
        help=f'JSON results (default {DEFAULT_OUTPUT}); the markdown report goes beside it as .md')
    add('--plot', metavar='FILE', default=None,
        help='PNG of the latency distributions (default: beside --output, <name>_latency.png)')
    add('--no-reference', action='store_true',
        help="leave out the reference rows (the deployment document's Jetson figures)")
    return parser


def _check_numbers(args: argparse.Namespace) -> None:
    problems = []
    if args.iterations < 1:
        problems.append(f'--iterations must be >= 1, got {args.iterations}')
    if args.warmup < 0:
        problems.append(f'--warmup must be >= 0, got {args.warmup}')
    if args.threads < 0:
        problems.append(f'--threads must be >= 0, got {args.threads}')
    if args.eval_frames is not None and args.eval_frames < 0:
        problems.append(f'--eval-frames must be >= 0, got {args.eval_frames}')
    if problems:
        raise UsageError('; '.join(problems))


def _evaluation_set(args: argparse.Namespace) -> tuple[str | None, int | None, str]:
    """(folder, frames, description) of the evaluation set; generates the held-out split if needed.

    Raises:
        BenchmarkError: --eval-data is not a usable evaluation set.
    """
    from rc_offline.dataset import DatasetError
    from rc_offline.evaluation import GT_SAMPLING, select_frames
    if args.eval_frames == 0:
        return None, 0, 'skipped (--eval-frames 0): accuracy columns are n/a'
    if args.eval_data is not None:
        try:
            chosen = select_frames(args.eval_data, args.eval_frames)
        except DatasetError as exc:
            raise BenchmarkError(f'--eval-data: {exc}') from None
        return str(args.eval_data), args.eval_frames, (f'{len(chosen)} frames of {args.eval_data}; '
                                                        f'{GT_SAMPLING}')
    from rc_offline.heldout import HELDOUT_SEED, ensure_split
    frames = args.eval_frames or DEFAULT_HELDOUT_FRAMES

    def progress(done: int, ms: float) -> None:
        if done == 1 or done % 10 == 0 or done == frames:
            _say(f'generating the held-out set: {done}/{frames} frames ({ms:.0f} ms each)')

    folder = ensure_split('heldout', frames, progress=progress)
    return str(folder), None, (f'built-in held-out synthetic driving sequence (rc_offline.heldout, seed '
                               f'{HELDOUT_SEED}), {frames} frames, {folder}; {GT_SAMPLING}')


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The benchmark for parsed arguments; returns the exit code.

    Raises:
        UsageError, BenchmarkError: reported by ``main`` as one line.
    """
    _check_numbers(args)
    models = discover_models(args.engine_dir, args.backend)
    for m in models:
        if m.skip:
            _say(f'skipping {m.path.name}: {m.skip}')
    if not any(m.backend for m in models):
        raise BenchmarkError(f'no model in {args.engine_dir} can be measured here (see the lines above)')
    output = Path(args.output)
    if not output.parent.is_dir():
        raise BenchmarkError(f'--output {output}: folder {output.parent} does not exist')
    eval_dir, eval_frames, evaluation = _evaluation_set(args)
    machine = machine_facts()
    records = [_measure(model, args, eval_dir, eval_frames) for model in models]
    report = {
        'tool': 'rc_perception benchmark', 'format': 1,
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'command': [PROG, *argv],
        'machine': {**machine, 'load_average_end': load_average('at end')},
        'settings': {'engine_dir': str(args.engine_dir), 'backend': args.backend,
                     'iterations': args.iterations, 'warmup': args.warmup, 'threads': args.threads,
                     'eval_data': eval_dir, 'eval_frames': eval_frames, 'evaluation': evaluation},
        'models': records,
    }
    if not args.no_reference:
        report['reference_source'] = REFERENCE_SOURCE
        report['reference'] = [dict(r) for r in REFERENCE_ROWS]
    _write_outputs(report, output, Path(args.plot) if args.plot else None)
    failed = [r['file'] for r in records if r['status'] == 'failed']
    if failed:
        _say(f"{PROG}: error: {len(failed)} model(s) failed: {', '.join(failed)}")
        return 1
    return 0


def _measure(model: ModelFile, args: argparse.Namespace, eval_dir: str | None,
             eval_frames: int | None) -> dict:
    """One model's record: measured in its own process, or skipped with the reason."""
    if model.skip:
        return {'file': model.path.name, 'path': str(model.path), 'status': 'skipped', 'skip': model.skip}
    _say(f'measuring {model.path.name} with {model.backend} ...')
    record = run_isolated({'model': str(model.path), 'backend': model.backend, 'iterations': args.iterations,
                           'warmup': args.warmup, 'threads': args.threads, 'eval_data': eval_dir,
                           'eval_frames': eval_frames})
    if record['status'] == 'failed':
        _say(f"{PROG}: error: {model.path.name}: {record['error']}")
    return record


def _write_outputs(report: dict, output: Path, plot: Path | None) -> None:
    """The plot, the JSON and the markdown beside it; prints the markdown."""
    text = markdown_report(report)
    plot = plot or output.with_name(f'{output.stem}_latency.png')
    try:
        write_plot(report, plot)
        report['plot'] = str(plot)
    except ImportError:
        report['plot'] = na('matplotlib not installed (pip install matplotlib)')
        _say(f"{PROG}: warning: no plot: {report['plot']}")
    except OSError as exc:
        raise BenchmarkError(f'--plot {plot}: cannot write ({exc})') from None
    markdown = output.with_suffix('.md')
    try:
        output.write_text(json.dumps(report, indent=1) + '\n')
        markdown.write_text(text)
    except OSError as exc:
        raise BenchmarkError(f'--output {output}: cannot write ({exc})') from None
    print(text, flush=True)
    _say(f'wrote {output}, {markdown}' + (f', {plot}' if report['plot'] == str(plot) else ''))


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 1 bad input or a failed model, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--measure-one'] and len(argv) == 3:
        return _measure_one_main(argv[1], argv[2])
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args, argv))


if __name__ == '__main__':
    sys.exit(main())
