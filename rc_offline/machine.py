"""What a benchmark figure depends on: the machine's CPU, memory, GPU, runtime versions and, on a Jetson,
its model, L4T release, power mode and clocks; and the memory of a process (RSS), for every benchmark.

Every probe answers with a string, or ``n/a: <why>`` where it cannot be read: machine facts never fail a
benchmark.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from rc_offline.evaluation import na

__all__ = ['MIB', 'load_average', 'machine_facts', 'peak_rss_mib', 'rss_mib']

MIB = 1024 * 1024



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


def load_average(when: str = 'at start') -> str:
    """The 1 / 5 / 15 minute load average, or 'n/a: why'."""
    return _fact(_load).replace('at start', when)


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


# ------------------------------------------------------------------------------------------ process memory

def _proc_status_kb(key: str, pid: int | str = 'self') -> int | None:
    try:
        text = _read(f'/proc/{pid}/status')
    except OSError:
        return None
    match = re.search(rf'^{key}:\s*(\d+) kB', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def rss_mib(pid: int | str = 'self') -> float | None:
    """Resident memory of a process (this one by default) in MiB; None where /proc cannot tell."""
    kb = _proc_status_kb('VmRSS', pid)
    return kb / 1024 if kb is not None else None


def peak_rss_mib(pid: int | str = 'self') -> float | None:
    """Peak resident memory of a process (this one by default) in MiB; None where it cannot be read."""
    kb = _proc_status_kb('VmHWM', pid)
    if kb is not None:
        return kb / 1024
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == 'darwin' else peak / 1024
