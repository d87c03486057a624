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
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rc_offline.evaluation import na

__all__ = ['BenchmarkError', 'DEFAULT_HELDOUT_FRAMES', 'REFERENCE_ROWS', 'REFERENCE_SOURCE', 'UsageError',
           'build_parser', 'discover_models', 'latency_stats', 'machine_facts', 'main', 'markdown_report',
           'measure_model', 'timed', 'write_plot']

DEFAULT_ITERATIONS = 200
DEFAULT_WARMUP = 20
DEFAULT_HELDOUT_FRAMES = 60
DEFAULT_OUTPUT = 'benchmark_results.json'
MIB = 1024 * 1024
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


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class BenchmarkError(Exception):
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
    from student_trt.backends import ENGINE_SUFFIXES, ONNX_SUFFIXES
    from student_trt.engine_sidecar import sidecar_path
    root = Path(folder)
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
    has_engines = any(p.suffix.lower() in ENGINE_SUFFIXES for p in files)
    if tensorrt is None and has_engines and backend != 'onnxruntime':
        from student_trt.backends import probe_tensorrt_gpu
        tensorrt = probe_tensorrt_gpu()
    if backend == 'tensorrt' and has_engines and not tensorrt[0]:
        raise BenchmarkError(f'--backend tensorrt, but TensorRT cannot run here: {tensorrt[1]} (install '
                             'TensorRT and cuda-python; JetPack ships TensorRT)')
    models = []
    for path in files:
        if path.suffix.lower() in ONNX_SUFFIXES:
            if backend == 'tensorrt':
                models.append(ModelFile(path, 'onnx', '', 'ONNX model: --backend tensorrt measures engines '
                                        '(build them with export_trt --from-onnx)'))
            else:
                models.append(ModelFile(path, 'onnx', 'onnxruntime'))
            continue
        if backend == 'onnxruntime':
            models.append(ModelFile(path, 'engine', '', 'TensorRT engine: --backend onnxruntime runs only '
                                    'the .onnx models'))
        elif not sidecar_path(path).is_file():
            models.append(ModelFile(path, 'engine', '', f'no sidecar {sidecar_path(path).name} beside it '
                                    '(rebuild it with export_trt on this device)'))
        elif not tensorrt[0]:
            models.append(ModelFile(path, 'engine', '', f'TensorRT engine, and TensorRT cannot run here '
                                    f'({tensorrt[1]})'))
        else:
            models.append(ModelFile(path, 'engine', 'tensorrt'))
    if backend == 'tensorrt' and not any(m.backend for m in models):
        raise BenchmarkError(f'--backend tensorrt: {root} holds no TensorRT engine (.engine, .plan); build '
                             'them on this device with export_trt')
    return models


# ---------------------------------------------------------------------------------------------- machine

def _read(path: str | Path) -> str:
    return Path(path).read_text(errors='replace').strip()


def _fact(probe) -> str:
    """A probe's answer, or 'n/a: <why>' if it raised: machine facts never fail the benchmark."""
    try:
        value = probe()
    except FileNotFoundError as exc:
        return na(f'{exc.filename or exc} not present')
    except Exception as exc:  # any failure of an optional probe becomes its n/a reason
        return na(f'{type(exc).__name__}: {exc}')
    return value if value else na('not reported')


def _cpu_model() -> str:
    text = _read('/proc/cpuinfo') if Path('/proc/cpuinfo').is_file() else ''
    for key in ('model name', 'Hardware', 'Processor', 'cpu model'):
        match = re.search(rf'^{key}\s*:\s*(.+)$', text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    if text and re.search(r'^CPU implementer\s*:\s*0x41', text, re.MULTILINE):
        part = re.search(r'^CPU part\s*:\s*(0x[0-9a-f]+)', text, re.MULTILINE)
        return f'ARM (CPU part {part.group(1) if part else "?"})'
    return platform.processor() or platform.machine()


def _cores() -> str:
    logical = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else logical
    return f'{logical} logical' + (f', {usable} usable by this process' if usable != logical else '')


def _memory() -> str:
    match = re.search(r'^MemTotal:\s*(\d+) kB', _read('/proc/meminfo'), re.MULTILINE)
    return f'{int(match.group(1)) / 1024 / 1024:.1f} GiB' if match else ''


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return na(f'{name} not installed')
    except Exception as exc:  # a broken install (missing shared library)
        return na(f'{name} does not load ({type(exc).__name__})')
    return str(getattr(module, '__version__', 'unknown version'))


def _tensorrt() -> str:
    from student_trt.backends import probe_tensorrt
    ok, why = probe_tensorrt()
    return why if ok else na(why)


def _cuda_python() -> str:
    from importlib.metadata import PackageNotFoundError, version
    for dist in ('cuda-python', 'cuda-bindings'):
        try:
            return f'{dist} {version(dist)}'
        except PackageNotFoundError:
            continue
    return na('cuda-python not installed')


def _nvidia_smi_gpu() -> str | None:
    """GPU name and driver from nvidia-smi (desktop GPUs without cuda-python); None where it is absent."""
    try:
        done = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                               '--format=csv,noheader'], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = done.stdout.strip().splitlines()[:1]
    return f'{first[0]} (nvidia-smi: name, memory, driver)' if done.returncode == 0 and first else None


def _gpu() -> str:
    from student_trt import cuda_buffers
    try:
        info = cuda_buffers.device_info(0)
    except cuda_buffers.CudaUnavailable as exc:
        if 'not installed' in str(exc):
            return _nvidia_smi_gpu() or na('cuda-python not installed and no nvidia-smi: no GPU seen')
        return na(str(exc))
    except cuda_buffers.CudaError as exc:
        return na(str(exc))
    return (f'{info.name} (sm {info.sm}, {info.total_memory / MIB / 1024:.1f} GiB, CUDA runtime '
            f'{info.runtime_version // 1000}.{info.runtime_version % 1000 // 10}, driver '
            f'{info.driver_version // 1000}.{info.driver_version % 1000 // 10})')


def _device_model() -> str:
    path = Path('/proc/device-tree/model')
    if not path.is_file():
        return na('no /proc/device-tree/model (not an embedded board)')
    return path.read_bytes().rstrip(b'\0').decode(errors='replace').strip()


def _l4t() -> str:
    path = Path('/etc/nv_tegra_release')
    if not path.is_file():
        return na('no /etc/nv_tegra_release (not a Jetson)')
    return path.read_text(errors='replace').splitlines()[0].lstrip('# ').strip()


def _power_mode() -> str:
    try:
        done = subprocess.run(['nvpmodel', '-q'], capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        return na('nvpmodel not found (not a Jetson)')
    except (OSError, subprocess.TimeoutExpired) as exc:
        return na(f'nvpmodel -q failed ({type(exc).__name__})')
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f'exit code {done.returncode}'])[-1]
        return na(f'nvpmodel -q: {reason}')
    mode = lines[0].split(':', 1)[-1].strip()
    return f'{mode} (mode {lines[1]})' if len(lines) > 1 and lines[1].isdigit() else mode


def _mhz(path: Path, unit_hz: float) -> str:
    return f'{int(_read(path)) * unit_hz / 1e6:.0f}'


def _cpu_clocks() -> str:
    cpus = sorted(Path('/sys/devices/system/cpu').glob('cpu[0-9]*/cpufreq'),
                  key=lambda p: int(p.parent.name[3:]))
    if not cpus:
        return na('no /sys/devices/system/cpu/cpu*/cpufreq (not exposed, e.g. in a VM)')
    groups: dict[str, list[str]] = {}
    for folder in cpus:
        parts = []
        cur = folder / 'scaling_cur_freq'
        parts.append(f'{_mhz(cur, 1e3)} MHz' if cur.is_file() else 'current n/a')
        top = folder / 'scaling_max_freq'
        if top.is_file():
            parts.append(f'max {_mhz(top, 1e3)}')
        governor = folder / 'scaling_governor'
        if governor.is_file():
            parts.append(_read(governor))
        groups.setdefault(', '.join(parts), []).append(folder.parent.name)
    return '; '.join(f"{'+'.join(names) if len(names) < 3 else f'{names[0]}..{names[-1]}'}: {desc}"
                     for desc, names in groups.items())


def _gpu_clock() -> str:
    candidates = [p for p in sorted(Path('/sys/class/devfreq').glob('*'))
                  if re.search(r'gpu|gp10b|gv11b|ga10b|gk20a|gm20b', p.name)]
    if not candidates:
        return na('no GPU devfreq node in /sys/class/devfreq (not a Jetson)')
    node = candidates[0]
    parts = [f'{_mhz(node / "cur_freq", 1.0)} MHz']
    if (node / 'max_freq').is_file():
        parts.append(f'max {_mhz(node / "max_freq", 1.0)}')
    if (node / 'governor').is_file():
        parts.append(_read(node / 'governor'))
    return f"{node.name}: {', '.join(parts)}"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f'{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, at start)'


def machine_facts() -> dict[str, str]:
    """What the figures depend on; every value a string, 'n/a: <why>' where it cannot be read (never
    raises)."""
    probes = {
        'cpu': _cpu_model, 'cpu_cores': _cores, 'memory': _memory, 'load_average': _load,
        'os': platform.platform, 'python': platform.python_version,
        'numpy': lambda: _module_version('numpy'), 'onnxruntime': lambda: _module_version('onnxruntime'),
        'tensorrt': _tensorrt, 'cuda_python': _cuda_python, 'gpu': _gpu,
        'device_model': _device_model, 'l4t': _l4t, 'power_mode': _power_mode, 'cpu_clocks': _cpu_clocks,
        'gpu_clock': _gpu_clock,
    }
    return {key: _fact(probe) for key, probe in probes.items()}


# --------------------------------------------------------------------------------- per-model measurement

def _proc_status_kb(key: str) -> int | None:
    try:
        text = _read('/proc/self/status')
    except OSError:
        return None
    match = re.search(rf'^{key}:\s*(\d+) kB', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _rss_mib() -> float | None:
    kb = _proc_status_kb('VmRSS')
    return kb / 1024 if kb is not None else None


def _peak_rss_mib() -> float | None:
    kb = _proc_status_kb('VmHWM')
    if kb is not None:
        return kb / 1024
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == 'darwin' else peak / 1024


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
    from rc_offline.evaluation import EvalResult, evaluate
    from student_trt.backends import open_backend
    from student_trt.postprocess import Postprocessor
    from student_trt.preprocess import Preprocessor

    path = Path(config['model'])
    backend_name = config['backend']
    iterations, warmup = int(config['iterations']), int(config['warmup'])
    trt = backend_name == 'tensorrt'
    # Read the frame (importing Pillow), import the runtime and make the CUDA context before the baselines:
    # the deltas are the model's.
    frame, frame_source = _evaluation_frame(config['eval_data'], config['eval_frames'])
    if trt:
        import tensorrt  # noqa: F401
        gpu_free_before = _gpu_free_mib()
    else:
        import onnxruntime  # noqa: F401
    rss_before = _rss_mib()
    notes: list[str] = []
    start = time.perf_counter()
    backend = open_backend(path, backend_name, num_threads=int(config['threads']), log=notes.append)
    try:
        load_s = time.perf_counter() - start
        rss_loaded = _rss_mib()
        gpu_free_loaded = _gpu_free_mib() if trt else None
        spec = backend.spec
        pre, post = Preprocessor(spec), Postprocessor(spec)
        if frame is None:
            frame, frame_source = _synthetic_frame(spec)
        x = pre(frame, 'rgb8')

        latency: dict = {'frame': frame_source}
        latency['inference'] = latency_stats(timed(lambda: backend.infer(x), warmup, iterations))
        if trt:
            backend.infer(x)  # the device input now holds the real frame
            latency['compute_only'] = latency_stats(timed(backend.execute_only, warmup, iterations))
            latency['copies'] = ('inference includes the pinned host->device input copy and the '
                                 'device->host output copies; compute_only excludes them')
        else:
            latency['compute_only'] = na('CPU backend has no device copies')
            latency['copies'] = na('CPU backend has no device copies')

        stages: dict[str, list[float]] = {'preprocess': [], 'infer': [], 'postprocess': [], 'total': []}

        def pipeline(record: bool) -> None:
            t0 = time.perf_counter()
            tensor = pre(frame, 'rgb8')
            t1 = time.perf_counter()
            out = backend.infer(tensor)
            t2 = time.perf_counter()
            post(out.depth, out.seg_logits)
            t3 = time.perf_counter()
            if record:
                for key, value in (('preprocess', t1 - t0), ('infer', t2 - t1), ('postprocess', t3 - t2),
                                   ('total', t3 - t0)):
                    stages[key].append(value * 1e3)

        for _ in range(warmup):
            pipeline(False)
        for _ in range(iterations):
            pipeline(True)
        latency['end_to_end'] = latency_stats(stages['total'])
        for key in ('preprocess', 'infer', 'postprocess'):
            latency[f'pipeline_{key}'] = latency_stats(stages[key])

        rss_after = _rss_mib()
        peak = _peak_rss_mib()
        memory: dict = {}
        no_proc = na('/proc/self/status not readable (not Linux)')
        readable = None not in (rss_before, rss_loaded, rss_after)
        memory['rss_delta_mib'] = round(rss_after - rss_before, 2) if readable else no_proc
        memory['rss_load_delta_mib'] = round(rss_loaded - rss_before, 2) if readable else no_proc
        memory['rss_peak_mib'] = round(peak, 2) if peak is not None else na('peak RSS not readable')
        if trt:
            size = backend.device_memory_size
            memory['engine_device_mib'] = round(size / MIB, 2) if size is not None else \
                na('this TensorRT exposes neither device_memory_size_v2 nor device_memory_size')
            gpu_free_after = _gpu_free_mib()
            memory['gpu_mem_delta_mib'] = round(gpu_free_before - gpu_free_after, 2)
            memory['gpu_mem_load_delta_mib'] = round(gpu_free_before - gpu_free_loaded, 2)
        else:
            memory['engine_device_mib'] = na('CPU backend')
            memory['gpu_mem_delta_mib'] = na('CPU backend')
            memory['gpu_mem_load_delta_mib'] = na('CPU backend')

        if config['eval_data'] is None or config['eval_frames'] == 0:
            accuracy = EvalResult(spec.class_names).summary('accuracy not evaluated (--eval-frames 0)')
        else:
            accuracy = evaluate(backend, config['eval_data'], config['eval_frames']).summary()

        return {
            'file': path.name, 'path': str(path), 'status': 'measured', 'backend': backend.name,
            'backend_description': backend.description, 'selection': backend.selection_reason,
            'precision': backend.precision, 'input': f'{spec.height}x{spec.width}',
            'classes': list(spec.class_names), 'calibration': spec.calibration or na('not quantized'),
            'load_s': round(load_s, 3), 'latency': latency, 'memory': memory, 'accuracy': accuracy,
            'notes': notes,
        }
    finally:
        backend.close()


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


# ----------------------------------------------------------------------------------------------- report

def _cell(value, digits: int = 2) -> str:
    """A table cell: a number with ``digits`` decimals, or the 'n/a: ...' string as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f'{value:,.{digits}f}' if digits else f'{value:,}'
    return str(value)


def _stat(latency: dict, kind: str, key: str, digits: int = 2) -> str:
    entry = latency.get(kind)
    return _cell(entry[key], digits) if isinstance(entry, dict) else _cell(entry)


def _table(head: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    lines = ['| ' + ' | '.join(head) + ' |',
             '| ' + ' | '.join('---:' if a == 'r' else '---' for a in align) + ' |']
    lines += ['| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |' for row in rows]
    return lines


def markdown_report(report: dict) -> str:
    """The markdown tables of a benchmark ``report`` (the JSON object ``main`` writes)."""
    facts, settings = report['machine'], report['settings']
    measured = [m for m in report['models'] if m['status'] == 'measured']
    lines = [f"# Student benchmark, {report['date']}", '']
    lines += _table(['Machine', ''], [[k.replace('_', ' '), v] for k, v in facts.items()], ['l', 'l'])
    lines.append('')
    lines += [f"Settings: {settings['warmup']} warm-up runs, then {settings['iterations']} timed runs per "
              f"measurement; backend {settings['backend']}; ONNX Runtime intra-op threads "
              f"{settings['threads'] or 'default (one per core)'}; each model measured in a fresh process.",
              '', f"Evaluation: {settings['evaluation']}", '']

    head = ['Model', 'Backend', 'Prec.', 'Input', 'Mean (ms)', 'p50', 'p90', 'p99', 'FPS',
            'Compute only p50 (ms)', 'Pre+infer+post p50 (ms)', 'Engine mem (MiB)', 'GPU mem Δ (MiB)',
            'RSS Δ (MiB)', 'RMSE (m)', 'AbsRel', 'δ<1.25', 'mIoU']
    rows = []
    for m in measured:
        lat, mem, acc = m['latency'], m['memory'], m['accuracy']
        rows.append([m['file'], m['backend'], m['precision'], m['input'],
                     _stat(lat, 'inference', 'mean_ms'), _stat(lat, 'inference', 'p50_ms'),
                     _stat(lat, 'inference', 'p90_ms'), _stat(lat, 'inference', 'p99_ms'),
                     _stat(lat, 'inference', 'fps', 1), _stat(lat, 'compute_only', 'p50_ms'),
                     _stat(lat, 'end_to_end', 'p50_ms'), _cell(mem['engine_device_mib'], 1),
                     _cell(mem['gpu_mem_delta_mib'], 1), _cell(mem['rss_delta_mib'], 1),
                     _cell(acc['rmse_m'], 3), _cell(acc['absrel'], 3), _cell(acc['delta1'], 3),
                     _cell(acc['miou'], 3)])
    for ref in report.get('reference', []):
        nr = 'n/r'
        rows.append([f"{ref['model']} (reference†)", f"{ref['backend']} (Jetson Orin Nano)",
                     ref['precision'], ref['input'], f"{ref['latency_ms']}†", nr, nr, nr,
                     f"{ref['fps']}†" if ref['fps'] else nr, nr, nr, nr, f"{ref['gpu_mem_mb']:,} MB†", nr,
                     f"{ref['rmse_m']}†" if ref['rmse_m'] is not None else nr, nr, nr, nr])
    lines += ['## Latency, memory, accuracy', '']
    if rows:
        lines += _table(head, rows, ['l', 'l', 'l', 'l'] + ['r'] * (len(head) - 4))
    else:
        lines.append('No model was measured.')
    lines += ['', '- Mean/p50/p90/p99/FPS: `backend.infer` on one preprocessed frame (TensorRT: including '
              "the input's host->device and the outputs' device->host copies); FPS = 1000 / mean.",
              '- Compute only: TensorRT `execute_async_v3` + synchronize, no copies. Pre+infer+post: '
              'Preprocessor + infer + Postprocessor at the model size on the same camera frame (the '
              "node's per-frame work minus ROS message conversion).",
              '- Engine mem: device memory per TensorRT execution context. GPU mem Δ: drop of '
              'cudaMemGetInfo free memory from before loading (CUDA context made) to after the timed runs '
              '(on a Jetson CPU and GPU share memory: other processes move it too). RSS Δ: resident memory '
              'growth of the measuring process over the same span (runtime library already imported).',
              '- RMSE/AbsRel/δ<1.25 over every pixel with ground-truth depth; mIoU over the classes present '
              'in ground truth or prediction; per-class IoU below.']
    if report.get('reference'):
        lines.append(f"- † Reference rows: from {report['reference_source']}. n/r: not reported there. "
                     + ' '.join(f"{r['model']}: {r['note']}." for r in report['reference']))

    if measured:
        names = list(dict.fromkeys(name for m in measured for name in m['classes']))
        lines += ['', '## Segmentation IoU per class', '']
        head = ['Model', *names, 'mIoU', 'Pixel acc.', 'Depth coverage', 'Frames']
        rows = []
        for m in measured:
            acc = m['accuracy']
            rows.append([m['file'], *(_cell(acc['iou'].get(n, na('not a class of this model')), 3)
                                      for n in names),
                         _cell(acc['miou'], 3), _cell(acc['pixel_accuracy'], 3), _cell(acc['coverage'], 3),
                         _cell(acc['frames'], 0)])
        lines += _table(head, rows, ['l'] + ['r'] * (len(head) - 1))
        lines += ['', '## Per-frame stages (p50 ms) and loading', '']
        head = ['Model', 'Preprocess', 'Infer', 'Postprocess', 'Total', 'Total p99', 'Load (s)', 'Frame']
        rows = [[m['file'], _stat(m['latency'], 'pipeline_preprocess', 'p50_ms'),
                 _stat(m['latency'], 'pipeline_infer', 'p50_ms'),
                 _stat(m['latency'], 'pipeline_postprocess', 'p50_ms'),
                 _stat(m['latency'], 'end_to_end', 'p50_ms'), _stat(m['latency'], 'end_to_end', 'p99_ms'),
                 _cell(m['load_s'], 2), m['latency']['frame']] for m in measured]
        lines += _table(head, rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'])
    others = [m for m in report['models'] if m['status'] != 'measured']
    if others:
        lines += ['', '## Not measured', '']
        lines += [f"- {m['file']}: {m['status']}: {m.get('error') or m.get('skip')}" for m in others]
    return '\n'.join(lines) + '\n'


def write_plot(report: dict, path: str | Path) -> None:
    """A PNG of the latency distributions (box: p25-p75, line: p50, whiskers: p1-p99, triangle: mean), one
    panel per measurement, one box per model.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # matplotlib >= 3.10 says orientation=, older ones (JetPack's apt packages) only vert=
    horizontal = {'orientation': 'horizontal'} if tuple(
        int(p) for p in re.findall(r'\d+', matplotlib.__version__)[:2]) >= (3, 10) else {'vert': False}
    measured = [m for m in report['models'] if m['status'] == 'measured']
    panels = [(kind, title) for kind, title in (
        ('inference', 'backend.infer (TensorRT: with host<->device copies)'),
        ('compute_only', 'compute only (TensorRT, no copies)'),
        ('end_to_end', 'preprocess + infer + postprocess')) if any(
        isinstance(m['latency'].get(kind), dict) for m in measured)]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(9, 1.2 + 0.55 * max(len(measured), 1)
                                                              * max(len(panels), 1) + 0.9 * len(panels)),
                             squeeze=False)
    for ax, (kind, title) in zip(axes[:, 0], panels, strict=False):
        models = [m for m in measured if isinstance(m['latency'].get(kind), dict)]
        data = [m['latency'][kind]['samples_ms'] for m in models]
        ax.boxplot(data, whis=(1, 99), showmeans=True, flierprops={'markersize': 2}, **horizontal)
        ax.set_yticks(range(1, len(models) + 1), [f"{m['file']} ({m['backend']})" for m in models],
                      fontsize=8)
        ax.invert_yaxis()  # first model on top, as in the table
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('ms (box p25-p75, line p50, whiskers p1-p99, triangle mean)', fontsize=8)
        ax.grid(axis='x', alpha=0.3)
    if not panels:
        axes[0, 0].text(0.5, 0.5, 'no model measured', ha='center', va='center')
        axes[0, 0].set_axis_off()
    facts = report['machine']
    gpu = '' if facts['gpu'].startswith('n/a') else f"; {facts['gpu'].split(' (')[0]}"
    fig.suptitle(f"Student latency, {report['date'][:10]}: {facts['cpu']}{gpu}; "
                 f"{report['settings']['iterations']} runs each"[:150], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- CLI

class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = _Parser(prog=PROG, description=summary, epilog=details,
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
    runnable = [m for m in models if m.backend]
    for m in models:
        if m.skip:
            _say(f'skipping {m.path.name}: {m.skip}')
    if not runnable:
        raise BenchmarkError(f'no model in {args.engine_dir} can be measured here (see the lines above)')
    output = Path(args.output)
    if not output.parent.is_dir():
        raise BenchmarkError(f'--output {output}: folder {output.parent} does not exist')
    eval_dir, eval_frames, evaluation = _evaluation_set(args)
    machine = machine_facts()
    records = []
    for model in models:
        if model.skip:
            records.append({'file': model.path.name, 'path': str(model.path), 'status': 'skipped',
                            'skip': model.skip})
            continue
        _say(f'measuring {model.path.name} with {model.backend} ...')
        record = run_isolated({'model': str(model.path), 'backend': model.backend,
                               'iterations': args.iterations, 'warmup': args.warmup, 'threads': args.threads,
                               'eval_data': eval_dir, 'eval_frames': eval_frames})
        if record['status'] == 'failed':
            _say(f"{PROG}: error: {model.path.name}: {record['error']}")
        records.append(record)
    report = {
        'tool': 'rc_perception benchmark', 'format': 1,
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'command': [PROG, *argv],
        'machine': machine,
        'settings': {'engine_dir': str(args.engine_dir), 'backend': args.backend,
                     'iterations': args.iterations, 'warmup': args.warmup, 'threads': args.threads,
                     'eval_data': eval_dir, 'eval_frames': eval_frames, 'evaluation': evaluation},
        'models': records,
    }
    if not args.no_reference:
        report['reference_source'] = REFERENCE_SOURCE
        report['reference'] = [dict(r) for r in REFERENCE_ROWS]
    report['machine']['load_average_end'] = _fact(_load).replace('at start', 'at end')
    text = markdown_report(report)
    plot = Path(args.plot) if args.plot else output.with_name(f'{output.stem}_latency.png')
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
    failed = [r['file'] for r in records if r['status'] == 'failed']
    if failed:
        _say(f"{PROG}: error: {len(failed)} model(s) failed: {', '.join(failed)}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 1 bad input or a failed model, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--measure-one'] and len(argv) == 3:
        return _measure_one_main(argv[1], argv[2])
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except UsageError as exc:
        _say(f'{PROG}: error: {exc}')
        return 2
    except BenchmarkError as exc:
        _say(f'{PROG}: error: {exc}')
        return 1
    except KeyboardInterrupt:
        _say(f'{PROG}: interrupted')
        return 130


if __name__ == '__main__':
    sys.exit(main())
