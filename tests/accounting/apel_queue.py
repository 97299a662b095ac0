"""Read APEL messages back from an SSM outgoing queue with dirq's own API, as ssmsend reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dirq.QueueSimple import QueueSimple


def queued_records(queue_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Every cloud and accelerator record in the queue, in queue order (the queue is left as it was).

    Checks the layout on the way: the v0.4 header, records separated by ``%%`` lines, keys sorted
    (as caso writes them), and the accelerator message's type and version.
    """
    queue = QueueSimple(str(queue_dir))
    cloud, accelerator = [], []
    for name in queue:
        assert queue.lock(name)
        text = queue.get(name).decode()
        queue.unlock(name)
        if text.startswith("APEL-cloud-message: v0.4\n"):
            for block in text.split("\n", 1)[1].rstrip("\n").split("\n%%\n"):
                keys = [line.split(": ", 1)[0] for line in block.split("\n")]
                assert keys == sorted(keys), block
                cloud.append(dict(line.split(": ", 1) for line in block.split("\n")))
        else:
            message = json.loads(text)
            assert (message["Type"], message["Version"]) == ("APEL-accelerator-message", "0.1"), text[:200]
            accelerator.extend(message["UsageRecords"])
    return cloud, accelerator
