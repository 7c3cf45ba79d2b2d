"""Batch prediction (floor 3 of docs/architecture.md): the output row of a text
(rows.py), the local file engine with resume (local.py), and Ray Data: the public
API (ray.py), the Dataset transform (ray_dataset.py) and the file engine
(ray_files.py, ray_shards.py)."""
