"""export_trt: a student checkpoint in; ONNX models (FP32, FP16, INT8 Q/DQ) and TensorRT engines out.

Writes into --output-dir, named after the checkpoint (models/student_demo.pt -> student_demo_*):

  <stem>_fp32.onnx          opset --opset (17 parses on TensorRT 8.5+), checked against PyTorch
  <stem>_fp16.onnx          FP16-typed graph with float32 I/O (opset 19): what TensorRT >= 11 builds for fp16
  <stem>_int8_qdq.onnx      INT8 explicit quantization (symmetric Q/DQ), calibrated on --calib-images
  <stem>_<precision>.engine one per --precision, with a .engine.json sidecar, only where tensorrt imports
  <stem>_modelopt.log       what NVIDIA ModelOpt and ONNX Runtime printed while converting
  <stem>_timing.cache       TensorRT tactic timings, reused by the next build (default --timing-cache)

Every ONNX carries the model's ModelSpec (input size, colour order, mean/std, classes, depth range, I/O
names, precision, calibration source) in metadata_props. Shapes are static, batch 1. The reduced-precision
models are compared with FP32 in ONNX Runtime on held-out images; a summary table ends the run.

INT8 needs real images from the target camera (--calib-images): a folder of images or a dataset folder
with an rgb/ sub-folder, preprocessed exactly as the node preprocesses. Without them INT8 is skipped (default
precisions) or refused (--precision int8); --allow-random-calib calibrates on noise, warns, and writes
"RANDOM (--allow-random-calib)" into the model's calibration metadata.

Examples:
  export_trt --checkpoint models/student_demo.pt --skip-trt            # ONNX only (laptop, CI)
  export_trt --checkpoint models/student_demo.pt --calib-images data/corridor  # + INT8, engines on a Jetson
  export_trt --from-onnx exported/student_demo_fp32.onnx   # on the Jetson: engines from copied ONNX files
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rc_offline.cli import ArgumentParser, ToolError, UsageError, run_tool
from rc_offline.dataset import IMAGE_SUFFIXES, DatasetError, read_rgb
from student_trt.metadata import KEY_PREFIX, PRECISIONS, ModelSpec

__all__ = ['Artifact', 'ExportError', 'UsageError', 'build_parser', 'compare', 'export_fp32',
           'find_calibration_images', 'main', 'parse_input_size', 'run_onnx', 'split_images',
           'synthetic_images']

#: FP32 ONNX vs PyTorch: max |difference|, absolute for depth (m), relative to max |logit| for segmentation.
FP32_DEPTH_TOL_M = 1e-3
FP32_SEG_TOL = 1e-3
#: FP16 ONNX vs FP32 ONNX (a failure beyond): depth RMSE and max |difference| as fractions of the depth range
#: (0.02 m and 0.2 m for 0.1-10 m), and the share of pixels with the same segmentation argmax.
FP16_DEPTH_RMSE_FRAC = 0.002
FP16_DEPTH_MAX_FRAC = 0.02
FP16_MIN_AGREEMENT = 0.99
#: INT8 vs FP32 beyond these earns a warning, not a failure: INT8 quality depends on the calibration images.
INT8_DEPTH_RMSE_FRAC = 0.02
INT8_MIN_AGREEMENT = 0.95
MAX_HELD_OUT = 16
MAX_CHECK_IMAGES = 4
DEFAULT_CALIB_COUNT = 128
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20
FP16_OPSET = 19
ADVICE = '100-500 images from the robot\'s own camera'


class ExportError(ToolError):
    """Unusable input or a failed export step (exit code 1)."""


@dataclass
class Artifact:
    """One row of the summary table."""

    path: Path
    precision: str
    accuracy: str = ''
    seconds: float = 0.0
    ok: bool = True


@dataclass
class Images:
    """Preprocessed calibration and evaluation inputs, and where they came from."""

    calib: np.ndarray | None
    held_out: np.ndarray
    calib_source: str
    held_out_source: str
    real: bool
    notes: list[str] = field(default_factory=list)


def _say(text: str = '') -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_input_size(text: str) -> tuple[int, int]:
    """'240x320' -> (240, 320).

    Raises:
        UsageError: not HxW with positive integers.
    """
    parts = text.lower().split('x')
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--input-size must be HxW in pixels, e.g. 240x320, got '{text}'") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"--input-size must be positive, got '{text}'")
    return h, w


def parse_precisions(text: str) -> tuple[str, ...]:
    """'fp16,int8' -> ('fp16', 'int8').

    Raises:
        UsageError: empty or unknown precisions.
    """
    wanted = tuple(dict.fromkeys(p.strip().lower() for p in text.split(',') if p.strip()))
    bad = [p for p in wanted if p not in PRECISIONS]
    if not wanted or bad:
        raise UsageError(f"--precision takes a comma list of {', '.join(PRECISIONS)}, got '{text}'")
    return wanted


def find_calibration_images(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` (of ``folder/rgb`` when that exists: a dataset folder), sorted by name.

    Hidden files are ignored; any other file that is not an image is an error.

    Raises:
        ExportError: not a folder, no images, or files that are not images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ExportError(f'--calib-images {root} is not a directory')
    if (root / 'rgb').is_dir():
        root = root / 'rgb'
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith('.'))
    others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        shown = ', '.join(others[:3]) + (f' and {len(others) - 3} more' if len(others) > 3 else '')
        raise ExportError(f"--calib-images {root} holds files that are not images: {shown} (expected only "
                          f"{', '.join(IMAGE_SUFFIXES)} files)")
    if not files:
        raise ExportError(f"--calib-images {root} holds no images (expected {', '.join(IMAGE_SUFFIXES)} "
                          'files, or a dataset folder with an rgb/ sub-folder)')
    return files


def split_images(count: int, calib_count: int) -> tuple[list[int], list[int]]:
    """Indices (calibration, held out) into ``count`` images sorted by name.

    Held out: ``min(16, count // 5)`` images (at least 1 when count >= 2), evenly spread over the sequence;
    calibration: up to ``calib_count`` of the others, evenly spread. A single image is both.
    """
    if count == 1:
        return [0], [0]
    n_held = min(MAX_HELD_OUT, max(1, count // 5))
    step = count / n_held
    held = sorted({min(count - 1, int(step * i + step / 2)) for i in range(n_held)})
    held_set = set(held)
    rest = [i for i in range(count) if i not in held_set]
    if len(rest) > calib_count:
        rest = [rest[int(j)] for j in np.linspace(0, len(rest) - 1, calib_count).round()]
    return rest, held


def synthetic_images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Deterministic uint8 RGB pictures (gradients and boxes) for the accuracy checks when no real images
    are given. Never used for calibration."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        grad = rng.uniform(-80, 80, (2, 3))
        img = rng.uniform(40, 200, 3) + grad[0] * (yy / height)[..., None] + grad[1] * (xx / width)[..., None]
        for _ in range(3):
            h, w = rng.integers(height // 8, height // 2), rng.integers(width // 8, width // 2)
            y, x = rng.integers(0, height - h), rng.integers(0, width - w)
            img[y:y + h, x:x + w] = rng.uniform(0, 255, 3)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
    return images


def _require_modules() -> None:
    missing = []
    for name, req in (('torch', 'torch'), ('onnx', 'onnx'), ('onnxruntime', 'onnx')):
        try:
            __import__(name)
        except ImportError:
            missing.append(f'{name} (pip install -r requirements/{req}.txt)')
    if missing:
        raise ExportError(f"export_trt needs {', '.join(missing)}")


def _set_metadata(model, spec: ModelSpec) -> None:
    """Replace the model's rc_perception.* metadata_props by ``spec``."""
    keep = [p for p in model.metadata_props if not p.key.startswith(KEY_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in spec.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = 'rc_perception.export_trt'
    model.doc_string = (f'rc_perception student ({spec.precision}); input {spec.input_name} '
                        f'(1, 3, {spec.height}, {spec.width}); see metadata_props {KEY_PREFIX}*')


def _drop_identities(model) -> None:
    """Remove Identity nodes (the TorchScript exporter emits them for de-duplicated weights) by pointing
    their consumers at their inputs: ModelOpt expects Conv weights and biases to be initializers."""
    outputs = {o.name for o in model.graph.output}
    rename, keep = {}, []
    for node in model.graph.node:
        if node.op_type == 'Identity' and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def export_fp32(model, spec: ModelSpec, opset: int):
    """ONNX ModelProto of ``model`` for a (1, 3, spec.height, spec.width) input; static shapes.

    Uses torch's TorchScript-based exporter (``dynamo=False``, deprecated but present in torch 2.13): it
    writes the requested opset (17, what TensorRT 8.5 parses) directly, in 1/3 of the time. The dynamo
    exporter implements only opset >= 18 and down-converts afterwards, a step it warns "may not be
    successful". For this static, control-flow-free CNN both produce the same operators.
    """
    import onnx
    import torch
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    with tempfile.TemporaryDirectory(prefix='rc_perception_export_') as tmp:
        path = Path(tmp) / 'model.onnx'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the legacy exporter's deprecation notice
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=[spec.input_name],
                              output_names=[spec.depth_output, spec.seg_output], do_constant_folding=True)
        proto = onnx.load(str(path))
    _drop_identities(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def run_onnx(path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth and segmentation logits of the exported ONNX ``path`` for an (N, 3, H, W) batch, image by image
    (the graphs have batch 1), through the ONNX Runtime backend the node runs: what is checked is what is
    deployed, metadata included.

    Raises:
        ExportError: the file does not load or does not match its own metadata.
    """
    from student_trt.backends import BackendError
    from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
    try:
        with OnnxRuntimeBackend(path) as backend:
            outs = [backend.infer(x[None]) for x in batch]
    except BackendError as exc:
        raise ExportError(str(exc)) from None
    return np.concatenate([o.depth for o in outs]), np.concatenate([o.seg_logits for o in outs])


def compare(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> dict:
    """``other`` against ``reference`` (each a (depth, seg_logits) batch): depth RMSE and max |difference|
    (m), share of pixels with the same segmentation argmax, mIoU of the argmaxes (rc_offline.metrics)."""
    from rc_offline.metrics import ConfusionMatrix, DepthErrors
    ref_depth, ref_seg = reference
    depth, seg = other
    errors = DepthErrors().add(depth, ref_depth)
    agreement = ConfusionMatrix(ref_seg.shape[1]).add(seg.argmax(axis=1), ref_seg.argmax(axis=1), None)
    return {'depth_rmse': errors.rmse, 'depth_max': float(np.max(np.abs(depth - ref_depth))),
            'agreement': agreement.pixel_accuracy(), 'miou': agreement.miou()}


def _fmt_metrics(m: dict) -> str:
    return f"depth RMSE {m['depth_rmse']:.4f} m, seg agreement {100 * m['agreement']:.2f} %"


def _fmt_size(path: Path) -> str:
    if not path.exists():
        return '-'
    size = path.stat().st_size
    return f'{size / 1e6:.2f} MB' if size >= 1e5 else f'{size / 1e3:.1f} kB'


def _summary(artifacts: list[Artifact], held_out: str) -> None:
    head = ('artifact', 'size', 'precision', f'accuracy vs FP32 ({held_out})', 'time', 'status')
    rows = [(a.path.name, _fmt_size(a.path), a.precision, a.accuracy, f'{a.seconds:.1f} s',
             'ok' if a.ok else 'FAILED') for a in artifacts]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    _say()
    for row in [head, tuple('-' * w for w in widths), *rows]:
        _say('  '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _preprocess_files(paths: list[Path], spec: ModelSpec) -> np.ndarray:
    from student_trt.preprocess import Preprocessor
    pre = Preprocessor(spec)
    try:
        return np.concatenate([pre(read_rgb(p), 'rgb8') for p in paths], axis=0)
    except DatasetError as exc:
        raise ExportError(f'--calib-images: {exc}') from None


def _prepare_images(args: argparse.Namespace, spec: ModelSpec, files: list[Path] | None,
                    want_int8: bool) -> Images:
    from student_trt.preprocess import Preprocessor
    if files:
        calib_idx, held_idx = split_images(len(files), args.calib_count)
        folder = files[0].parent
        held = _preprocess_files([files[i] for i in held_idx], spec)
        calib = _preprocess_files([files[i] for i in calib_idx], spec) if want_int8 else None
        notes = []
        if want_int8 and len(calib_idx) < min(args.calib_count, 100):
            notes.append(f'calibrating on only {len(calib_idx)} images of {folder}; {ADVICE} are advised')
        held_source = (f'{len(held_idx)} held-out images' if len(files) > 1
                       else '1 image, also used for calibration: nothing held out')
        return Images(calib, held, f'{len(calib_idx)} images from {folder}', held_source, True, notes)
    pre = Preprocessor(spec)
    held = pre.batch(synthetic_images(MAX_CHECK_IMAGES, spec.height, spec.width, seed=1))
    calib, source = None, ''
    if want_int8:  # only with --allow-random-calib
        rng = np.random.default_rng(0)
        calib = pre.batch([rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
                           for _ in range(args.calib_count)])
        source = (f'RANDOM (--allow-random-calib): {args.calib_count} uniform-noise images; the INT8 scales '
                  'do not represent real images')
    return Images(calib, held, source, f'{MAX_CHECK_IMAGES} synthetic images, no real images given', False)


def _random_calib_banner() -> None:
    line = '!' * 100
    _warn(f'{line}\n'
          'WARNING: --allow-random-calib: INT8 is calibrated on uniform noise, not on camera images.\n'
          'The engine will run, but its quantization scales are guesses: depth and segmentation can be\n'
          'badly off. The ONNX metadata records calibration = "RANDOM (--allow-random-calib) ...".\n'
          f'For a usable INT8 model pass --calib-images DIR with {ADVICE}.\n{line}')


@dataclass
class _Plan:
    """Validated arguments."""

    checkpoint: Path
    out: Path
    precisions: tuple[str, ...]
    input_size: tuple[int, int] | None
    files: list[Path] | None
    want_int8: bool


def _check_args(args: argparse.Namespace) -> _Plan:
    """Everything that can be checked before the heavy imports; raises UsageError / ExportError."""
    precisions = parse_precisions(args.precision or 'fp16,int8')
    input_size = parse_input_size(args.input_size) if args.input_size else None
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        raise UsageError(f'--opset must be {MIN_OPSET} to {MAX_OPSET} (17 for TensorRT 8.5), '
                         f'got {args.opset}')
    if args.calib_count < 1:
        raise UsageError(f'--calib-count must be at least 1, got {args.calib_count}')
    if args.workspace < 16:
        raise UsageError(f'--workspace is in MiB and must be at least 16, got {args.workspace}')
    no_images = args.calib_images is None and not args.allow_random_calib
    if args.precision is not None and 'int8' in precisions and no_images:
        raise UsageError('--precision int8 needs --calib-images DIR: INT8 scales must be calibrated on real '
                         'camera images (--allow-random-calib accepts a poor model instead)')
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise ExportError(f'checkpoint {checkpoint} does not exist' if not checkpoint.exists()
                          else f'checkpoint {checkpoint} is not a file')
    files = find_calibration_images(args.calib_images) if args.calib_images is not None else None
    want_int8 = 'int8' in precisions and not no_images
    if 'int8' in precisions and not want_int8:
        _say(f'INT8 skipped: no --calib-images (INT8 must be calibrated on {ADVICE}; add --calib-images DIR '
             'to get it)')
    if args.allow_random_calib and files is not None:
        _say('note: --allow-random-calib ignored: --calib-images given')
    return _Plan(checkpoint, Path(args.output_dir or 'exported'), precisions, input_size, files, want_int8)


@dataclass
class _Run:
    """One export in progress: what every step reads (see ``run_export``)."""

    args: argparse.Namespace
    plan: _Plan
    spec: ModelSpec
    images: Images
    log_path: Path

    @property
    def out(self) -> Path:
        return self.plan.out

    def path(self, variant: str) -> Path:
        return self.plan.out / f'{self.plan.checkpoint.stem}_{variant}.onnx'

    def variant_spec(self, precision: str, variant: str, calibration: str = '') -> ModelSpec:
        return self.spec.with_(precision=precision, calibration=calibration,
                               extra={**self.spec.extra, 'onnx_variant': variant})

    @property
    def depth_range(self) -> float:
        return self.spec.depth_max - self.spec.depth_min


def run_export(args: argparse.Namespace) -> int:
    """The export (arguments parsed by ``build_parser``): FP32, then FP16 and INT8 from it, then engines;
    returns the exit code.

    Raises:
        UsageError, ExportError: reported by ``main`` as one line.
    """
    plan = _check_args(args)
    _require_modules()
    start = time.perf_counter()
    model, spec = _load_model(plan)
    run = _Run(args, plan, spec, _prepare_images(args, spec, plan.files, plan.want_int8),
               plan.out / f'{plan.checkpoint.stem}_modelopt.log')
    plan.out.mkdir(parents=True, exist_ok=True)
    run.log_path.unlink(missing_ok=True)
    _describe(run, model)
    proto, fp32 = _export_fp32(run, model)
    artifacts = [fp32]
    if not fp32.ok:
        _summary(artifacts, run.images.held_out_source)
        _warn(f'export_trt: error: {fp32.path.name} differs from PyTorch beyond tolerance (kept for '
              'inspection); nothing else exported')
        return 1
    reference = run_onnx(fp32.path, run.images.held_out)
    if 'fp16' in plan.precisions:
        artifacts.append(_export_fp16(run, proto, reference))
    if plan.want_int8:
        artifacts.append(_export_int8(run, proto, reference))
    return _finish(run, artifacts, start)


def _load_model(plan: _Plan):
    """The checkpoint's model and its ModelSpec (at --input-size, with the checkpoint's name and hash)."""
    from rc_offline.checkpoint import CheckpointError, read_checkpoint
    from student_trt.engine_sidecar import sha256_file
    try:
        ckpt = read_checkpoint(plan.checkpoint)
        model = ckpt.build()
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    spec = ckpt.spec
    if plan.input_size is not None and plan.input_size != (spec.height, spec.width):
        try:
            ckpt.config.check_input_size(*plan.input_size)
        except ValueError as exc:
            raise UsageError(f'--input-size: {exc}') from None
        _say(f'note: exporting at {plan.input_size[0]}x{plan.input_size[1]}; {plan.checkpoint.name} was '
             f'trained at {spec.height}x{spec.width}')
        spec = spec.with_(height=plan.input_size[0], width=plan.input_size[1])
    spec = spec.with_(extra={**spec.extra, 'checkpoint': plan.checkpoint.name,
                             'checkpoint_sha256': sha256_file(plan.checkpoint)})
    return model, spec


def _describe(run: _Run, model) -> None:
    from rc_offline.model import count_parameters, estimate_gflops
    spec, (h, w) = run.spec, (run.spec.height, run.spec.width)
    _say(f'{run.plan.checkpoint}: {count_parameters(model) / 1e6:.2f} M parameters, '
         f'{estimate_gflops(model, h, w):.2f} GFLOPs at {h}x{w}; input {spec.input_name} (1, 3, {h}, {w}) '
         f'float32 {spec.color_order}; outputs {spec.depth_output} (1, 1, {h}, {w}) float32 m, '
         f'{spec.seg_output} (1, {spec.num_classes}, {h}, {w}) float32 logits')
    for note in run.images.notes:
        _say(f'note: {note}')


def _export_fp32(run: _Run, model) -> tuple[object, Artifact]:
    """FP32 ONNX, checked against PyTorch on a few held-out images; returns (ONNX proto, artifact)."""
    import onnx
    import torch
    t = time.perf_counter()
    fp32_spec = run.variant_spec('fp32', 'fp32')
    proto = export_fp32(model, fp32_spec, run.args.opset)
    _set_metadata(proto, fp32_spec)
    path = run.path('fp32')
    onnx.save(proto, str(path))
    check = run.images.held_out[:MAX_CHECK_IMAGES]
    with torch.no_grad():
        expected = tuple(o.numpy() for o in model(torch.from_numpy(check)))
    got = run_onnx(path, check)
    d_err = float(np.max(np.abs(got[0] - expected[0])))
    s_err = float(np.max(np.abs(got[1] - expected[1])))
    s_tol = FP32_SEG_TOL * max(1.0, float(np.max(np.abs(expected[1]))))
    kind = 'held-out' if run.images.real else 'synthetic'
    _say(f'{path.name}: opset {run.args.opset}, onnx.checker ok; ONNX Runtime vs PyTorch on {len(check)} '
         f'{kind} images: max |diff| depth {d_err:.1e} m (tol {FP32_DEPTH_TOL_M:.0e}), seg logits '
         f'{s_err:.1e} (tol {s_tol:.0e})')
    ok = d_err <= FP32_DEPTH_TOL_M and s_err <= s_tol
    return proto, Artifact(path, 'fp32', f'vs PyTorch: max |diff| depth {d_err:.1e} m, seg {s_err:.1e}',
                           time.perf_counter() - t, ok)


def _export_fp16(run: _Run, proto, reference) -> Artifact:
    """FP16-typed ONNX (float32 I/O), compared with FP32 on the held-out images; beyond tolerance fails."""
    import onnx

    from rc_offline.quantize import QuantizeError, convert_fp16
    t = time.perf_counter()
    try:
        f16 = convert_fp16(proto, log_path=run.log_path)
    except QuantizeError as exc:
        raise ExportError(str(exc)) from None
    _set_metadata(f16, run.variant_spec('fp16', 'fp16'))
    path = run.path('fp16')
    onnx.save(f16, str(path))
    m = compare(reference, run_onnx(path, run.images.held_out))
    rmse_tol, max_tol = FP16_DEPTH_RMSE_FRAC * run.depth_range, FP16_DEPTH_MAX_FRAC * run.depth_range
    ok = m['depth_rmse'] <= rmse_tol and m['depth_max'] <= max_tol and m['agreement'] >= FP16_MIN_AGREEMENT
    _say(f"{path.name}: opset {FP16_OPSET}, FP16-typed, float32 I/O; vs FP32: depth RMSE "
         f"{m['depth_rmse']:.4f} m (tol {rmse_tol:.3f}), max {m['depth_max']:.3f} m (tol {max_tol:.3f}), "
         f"seg agreement {100 * m['agreement']:.2f} % (tol {100 * FP16_MIN_AGREEMENT:.0f} %)")
    return Artifact(path, 'fp16', _fmt_metrics(m), time.perf_counter() - t, ok)


def _export_int8(run: _Run, proto, reference) -> Artifact:
    """INT8 Q/DQ ONNX calibrated with ModelOpt on the CPU; far from FP32 earns a warning, not a failure."""
    import onnx

    from rc_offline.quantize import QuantizeError, quantize_int8
    images, args = run.images, run.args
    if not images.real:
        _random_calib_banner()
    t = time.perf_counter()
    calibration = (f'{images.calib_source} ({args.calib_method} calibration, ModelOpt on the CPU)'
                   if images.real else images.calib_source)
    _say(f'INT8: calibrating on {images.calib_source} ({args.calib_method}; ModelOpt output -> '
         f'{run.log_path.name}) ...')
    try:
        result = quantize_int8(proto, images.calib, opset=args.opset, method=args.calib_method,
                               log_path=run.log_path)
    except QuantizeError as exc:
        raise ExportError(str(exc)) from None
    _set_metadata(result.model, run.variant_spec('int8', 'int8_qdq', calibration))
    path = run.path('int8_qdq')
    onnx.save(result.model, str(path))
    m = compare(reference, run_onnx(path, images.held_out))
    rmse_guide = INT8_DEPTH_RMSE_FRAC * run.depth_range
    good = m['depth_rmse'] <= rmse_guide and m['agreement'] >= INT8_MIN_AGREEMENT
    _say(f'{path.name}: opset {args.opset}, symmetric int8 Q/DQ on {result.weight_tensors} weights and '
         f'{result.activation_tensors} activations (float: {", ".join(result.excluded_nodes)} and convs '
         f'ModelOpt finds too narrow); vs FP32 on {images.held_out_source}: depth RMSE '
         f"{m['depth_rmse']:.4f} m, max {m['depth_max']:.3f} m, seg agreement "
         f"{100 * m['agreement']:.2f} %, mIoU vs FP32 {m['miou']:.3f}")
    if not good:
        _warn(f'warning: {path.name} is far from FP32 (guide: depth RMSE <= {rmse_guide:.2f} m, agreement '
              f'>= {100 * INT8_MIN_AGREEMENT:.0f} %): '
              + ('random calibration does that' if not images.real else
                 f'calibrate on {ADVICE}, varied, or try the other --calib-method'))
    return Artifact(path, 'int8', _fmt_metrics(m) + ('' if good else ' (!)'), time.perf_counter() - t)


def _finish(run: _Run, artifacts: list[Artifact], start: float) -> int:
    """Engines (unless --skip-trt), the summary table, and the exit code."""
    written = {a.path for a in artifacts}
    stem, out = run.plan.checkpoint.stem, run.out
    stale = sorted(p.name for p in out.glob(f'{stem}_*.onnx') if p not in written)
    if stale:
        _say(f"note: {', '.join(stale)} in {out} not rewritten by this export (left from an earlier one; "
             'delete if stale)')
    if run.args.skip_trt:
        _say('--skip-trt: ONNX artifacts only, no TensorRT engines built')
    else:
        artifacts += _build_engines(run.args, run.plan.precisions, stem, out, out, only=written)
    _summary(artifacts, run.images.held_out_source)
    _say(f'total {time.perf_counter() - start:.1f} s; artifacts in {out}')
    failed = [a.path.name for a in artifacts if not a.ok]
    if failed:
        _warn(f"export_trt: error: {', '.join(failed)} failed (see above)")
        return 1
    return 0


def _onnx_spec(path: Path) -> ModelSpec:
    try:
        return ModelSpec.from_onnx_file(path)
    except ImportError:
        raise ExportError(f'reading the model metadata of {path} needs onnx (pip install -r '
                          'requirements/onnx.txt)') from None
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def _build_engines(args: argparse.Namespace, precisions: tuple[str, ...], stem: str, onnx_dir: Path,
                   out: Path, only: set[Path] | None = None) -> list[Artifact]:
    """One engine per precision from ``onnx_dir/<stem>_<variant>.onnx``, as ``plan_build`` says; with
    ``only``, from those files alone (what this run exported, never a leftover)."""
    from student_trt.trt_build import (
        TrtBuildError,
        build_engine,
        engine_name,
        onnx_name,
        plan_build,
        tensorrt_version,
    )
    version = tensorrt_version()
    if version is None:
        _say('TensorRT is not installed here (import tensorrt failed): ONNX artifacts only; run export_trt '
             'on the Jetson to build engines')
        return []
    cache = Path(args.timing_cache) if args.timing_cache else out / f'{stem}_timing.cache'
    artifacts = []
    for precision in precisions:
        build = plan_build(version, precision)
        onnx_path = onnx_dir / onnx_name(stem, build.onnx_variant)
        engine = out / engine_name(stem, precision)
        if not onnx_path.is_file() or (only is not None and onnx_path not in only):
            _say(f'{engine.name} skipped: {onnx_path.name} was not exported (TensorRT {version} builds '
                 f'{precision} from the {build.onnx_variant} ONNX)')
            continue
        how = 'strongly typed' if build.strongly_typed else f"flags {', '.join(build.flags) or 'none'}"
        _say(f'TensorRT {version}: building {engine.name} from {onnx_path.name} ({how}, workspace '
             f'{args.workspace} MiB, timing cache {cache}) ...')
        t = time.perf_counter()
        try:
            sidecar = build_engine(onnx_path, engine, build, _onnx_spec(onnx_path),
                                   workspace_mib=args.workspace, timing_cache=cache, log=_say)
        except TrtBuildError as exc:
            _warn(f'error: {exc}')
            artifacts.append(Artifact(engine, precision, 'build failed', time.perf_counter() - t, False))
            continue
        artifacts.append(Artifact(engine, precision, f'built on {sidecar.gpu_name} (sm '
                                  f'{sidecar.compute_capability}), TensorRT {sidecar.tensorrt_version}',
                                  time.perf_counter() - t))
    return artifacts


def run_from_onnx(args: argparse.Namespace) -> int:
    """``--from-onnx``: build engines from ONNX files exported earlier (no torch needed; the Jetson path).

    Raises:
        UsageError, ExportError: reported by ``main`` as one line.
    """
    from student_trt.trt_build import ONNX_VARIANTS, split_onnx_name, tensorrt_version
    if args.skip_trt:
        raise UsageError('--from-onnx only builds engines; --skip-trt leaves nothing to do')
    for flag in ('calib_images', 'input_size'):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')} applies to --checkpoint exports, not to "
                             '--from-onnx')
    precisions = parse_precisions(args.precision or 'fp16,int8')
    path = Path(args.from_onnx)
    if not path.is_file():
        raise ExportError(f'--from-onnx {path} does not exist')
    parts = split_onnx_name(path)
    if parts is None:
        raise ExportError(f"--from-onnx {path.name} is not named like export_trt's ONNX files "
                          f"(<stem>_{{{','.join(ONNX_VARIANTS)}}}.onnx): pass one of those, as exported")
    stem = parts[0]
    _onnx_spec(path)  # fails early for a model without rc_perception metadata
    if tensorrt_version() is None:
        raise ExportError('--from-onnx builds TensorRT engines, but tensorrt does not import here (on a '
                          'Jetson it comes with JetPack: apt install python3-libnvinfer)')
    out = Path(args.output_dir) if args.output_dir else path.parent
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    artifacts = _build_engines(args, precisions, stem, path.parent, out)
    _summary(artifacts, 'not measured for engines')
    _say(f'total {time.perf_counter() - start:.1f} s; engines in {out}')
    failed = [a.path.name for a in artifacts if not a.ok]
    if failed or not artifacts:
        _warn(f"export_trt: error: {', '.join(failed) or 'no engine'} built")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = ArgumentParser(prog='export_trt', description=summary, epilog=details,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', help='student checkpoint (.pt written by rc_offline.checkpoint)')
    source.add_argument('--from-onnx', metavar='ONNX',
                        help='build engines from ONNX files exported earlier (any <stem>_*.onnx of the set; '
                             'the others are found beside it); needs tensorrt, not torch')
    add('--output-dir', default=None,
        help='folder for the artifacts (default: exported; with --from-onnx, the ONNX folder)')
    add('--skip-trt', action='store_true', help='write the ONNX artifacts only, build no engines')
    add('--precision', default=None,
        help='comma list of fp32, fp16, int8: one engine each (default fp16,int8; the FP32 ONNX is always '
             'written)')
    add('--calib-images', metavar='DIR', default=None,
        help='images from the target camera for INT8 calibration and the accuracy checks: a folder of images '
             'or a dataset folder with rgb/')
    add('--calib-count', type=int, default=DEFAULT_CALIB_COUNT,
        help=f'use at most this many calibration images (default {DEFAULT_CALIB_COUNT}); up to '
             f'{MAX_HELD_OUT} more are held out for the accuracy report')
    add('--calib-method', choices=('max', 'entropy'), default='entropy',
        help='how activation ranges are chosen from the calibration images (default entropy, which clips '
             'outliers, as TensorRT advises for CNNs: on the demo student its INT8 depth was 0.08-0.11 m '
             'RMSE from FP32 against 0.13-0.14 m with max; on one small test model max was closer. The '
             'report prints the figure: try both on your model)')
    add('--opset', type=int, default=DEFAULT_OPSET,
        help=f'ONNX opset of the FP32 and INT8 models (default {DEFAULT_OPSET}: TensorRT 8.5 parses <= 17)')
    add('--input-size', metavar='HxW', default=None,
        help="export at this input size (default: the checkpoint's, e.g. 240x320); multiples of 16")
    add('--workspace', type=int, default=1024, help='TensorRT builder workspace in MiB (default 1024)')
    add('--timing-cache', metavar='FILE', default=None,
        help='TensorRT timing cache, loaded if present and then updated (default '
             '<output-dir>/<stem>_timing.cache)')
    add('--allow-random-calib', action='store_true',
        help='without --calib-images, calibrate INT8 on noise anyway (poor quality; recorded in the '
             'metadata)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 1 bad input or failed export, 2 usage)."""
    args = build_parser().parse_args(argv)
    return run_tool('export_trt', lambda: run_from_onnx(args) if args.from_onnx else run_export(args))


if __name__ == '__main__':
    sys.exit(main())
