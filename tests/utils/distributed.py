"""Multi-process runs for the `distributed` tests."""

import os


def run_torchrun(script_name: str, *args: str, timeout: int = 150, attempts: int = 2):
    """Run ``tests/scripts/<script_name>`` under ``torchrun --nproc_per_node 2`` on a free local port; fails the test
    with the processes' output when it does not exit 0.

    A run takes about 10 s. Rarely (about 1 in 10 runs of the older ``ddp_train.py`` here) a gloo rank hangs for
    good; so on timeout torchrun and every rank are killed (no orphaned rank keeps a core busy) and the run is tried
    once more. A run that fails is not retried."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / script_name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    for attempt in range(attempts):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        process = subprocess.Popen([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                                    "--master_port", str(port), str(script), *map(str, args)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            import psutil  # an accelerate dependency

            # torchrun starts the ranks in sessions of their own: kill them by ancestry, then torchrun
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.communicate()
            if attempt + 1 < attempts:
                continue
            raise AssertionError(f"torchrun {script_name} timed out after {timeout} s, {attempts} times") from None
        assert process.returncode == 0, stdout[-2000:] + stderr[-6000:]
        return process
