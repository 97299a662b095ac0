"""Ansible callback for benchmarks/converge.py --profile: every task's time, per host and in all, as JSON.

Enabled only by the benchmark (ANSIBLE_CALLBACKS_ENABLED=task_timings with this directory in
ANSIBLE_CALLBACK_PLUGINS); writes the file named by AI4OS_TASK_TIMINGS when the playbook ends.
A task's wall time runs from its start to the start of the next task (or the end of the
play), as the controller sees it: it includes the strategy's own work between tasks, such as
templating the next task's arguments and waiting for the slowest host. Per host, the time
from the worker's start on that host to its result.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timings
type: aggregate
short_description: task timings as JSON (benchmarks only)
description: Records each task's wall time and per-host times into the file named by AI4OS_TASK_TIMINGS.
requirements: [enabled in ANSIBLE_CALLBACKS_ENABLED]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timings"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.started: dict[tuple[str, str], float] = {}
        self.play_start = time.monotonic()

    def _close(self) -> None:
        if self.current is not None:
            self.current["wall"] = round(time.monotonic() - self.current.pop("_t0"), 4)
            self.current = None

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._close()

    def _start(self, task: Any, kind: str) -> None:
        self._close()
        role = task._role.get_name() if getattr(task, "_role", None) else ""
        self.current = {"_t0": time.monotonic(), "name": task.get_name(), "role": role, "action": task.action,
                        "kind": kind, "hosts": {}, "changed": 0, "skipped": 0}
        self.tasks.append(self.current)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._start(task, "task")

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._start(task, "handler")

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        self.started[(host.get_name(), task._uuid)] = time.monotonic()

    def _result(self, result: Any, status: str) -> None:
        host, task = result._host.get_name(), result._task
        t0 = self.started.pop((host, task._uuid), None)
        if self.current is None or t0 is None:
            return
        self.current["hosts"][host] = round(time.monotonic() - t0, 4)
        if status == "skipped":
            self.current["skipped"] += 1
        elif result._result.get("changed"):
            self.current["changed"] += 1

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._close()
        path = os.environ.get("AI4OS_TASK_TIMINGS")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump({"total": round(time.monotonic() - self.play_start, 3), "tasks": self.tasks}, out)
