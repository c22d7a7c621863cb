"""How much memory a running native stack uses, per component (PSS).

PSS (proportional set size) shares each page among the processes that map it,
so the per-component figures add up to what the stack really costs the machine;
RSS would count shared libraries once per process.
"""

from __future__ import annotations

from pathlib import Path

from coursekit.native.stack import NativeStack


def _tree_pss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def _postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().split()[0])


def stack_memory(stack: NativeStack) -> dict[str, int]:
    """Component -> PSS in bytes, for everything of the stack that runs."""
    state = stack.load_state()
    usage: dict[str, int] = {}
    for service in stack.postgres_services:
        pid = _postmaster_pid(stack.state_dir / "pg" / service.name)
        if pid is not None:
            usage[service.name] = _tree_pss(pid)
    for name, pid in state.get("pids", {}).items():
        usage[name] = _tree_pss(pid)
    return {name: size for name, size in usage.items() if size}
