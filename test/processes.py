"""Child processes of the cross-process tests (nodes, cameras, hostile publishers), each with its
output collected line by line, all in this test run's private ROS domain with Fast DDS as it comes."""

import os
import signal
import subprocess
import threading

from domains import private_domain_id
from ros_graph import wait_until

START_S = 60.0


def environment() -> dict[str, str]:
    """This test's domain, and Fast DDS as it comes: no profile file."""
    variables = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id()), "HF_HUB_OFFLINE": "1"}
    variables.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    return variables


class ChildProcess:
    """A child process whose output lines are collected as they come."""

    def __init__(self, arguments: list[str]) -> None:
        self.process = subprocess.Popen(
            arguments, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def line_with(self, text: str, timeout_s: float = START_S) -> str:
        def found():
            assert self.process.poll() is None or any(text in line for line in self.lines), self.output()
            return next((line for line in list(self.lines) if text in line), None)

        return wait_until(found, timeout_s, f"'{text}' in the output")

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGINT, as Ctrl-C or `ros2 launch` send it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5.0)
        return self.process.returncode


_namespaces = iter(range(1000))


def new_namespace() -> str:
    return f"/test_processes_{os.getpid()}_{next(_namespaces)}"
