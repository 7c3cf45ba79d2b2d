"""The datasinks of ray_files.predict_files: Parquet or JSONL shards, named in input order.

A module of its own because the classes subclass Ray's: ray_files.py imports it inside
a function, so importing ray.py never needs Ray, and Ray's workers unpickle the sinks
by reference.
"""

import json
from typing import Any, Optional

import pyarrow.parquet as pq
from ray.data.datasource import BlockBasedFileDatasink, FilenameProvider


class Shards(FilenameProvider):
    """part-000000.parquet, part-000001.parquet, ...: one file per write task.
    Ray numbers the write tasks as it submits them, in input order when the order
    is preserved, so the names sort in input order.

    suffix (str): The files' suffix.
    """

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:06d}.{self.suffix}"


class CountedShards(BlockBasedFileDatasink):
    """Shards that keep the number of rows all write tasks wrote (``rows_written``,
    set on the driver when the write completes), to compare with the files found."""

    rows_written: Optional[int] = None

    def on_write_complete(self, write_result: Any) -> None:
        self.rows_written = write_result.num_rows
        super().on_write_complete(write_result)


class ParquetShards(CountedShards):
    """Parquet files (pyarrow's defaults) under `path`."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, file_format="parquet", filename_provider=Shards("parquet"), **kwargs)

    def write_block_to_file(self, block: Any, file: Any) -> None:
        pq.write_table(block.to_arrow(), file)


class JsonlShards(CountedShards):
    """JSONL files under `path`, each row written with json.dumps, as the JSONL
    command writes its rows (pandas' to_json, which Ray's write_json uses, would
    turn integer columns with nulls into floats and round the scores)."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, file_format="jsonl", filename_provider=Shards("jsonl"), **kwargs)

    def write_block_to_file(self, block: Any, file: Any) -> None:
        lines = [json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in block.to_arrow().to_pylist()]
        file.write("".join(lines).encode("utf-8"))
