"""A [training.before_update] callback for bench/distributed_train.py: the time at
which each step after the first starts, written (by worker 0 only) to `path`."""

import json
import os
import time

from spacy.util import registry


@registry.callbacks("bench.step_timer.v1")
def step_timer(path: str):
    stamps = []

    def before_update(nlp, info):
        if info["step"] >= 1 and os.environ.get("RANK", "0") == "0":
            stamps.append(time.perf_counter())
            with open(path, "w") as file:
                json.dump(stamps, file)

    return before_update
