"""Data-parallel `spacy train` on torch.distributed.

- launch.py: the workers' place (torchrun's variables), the process group (NCCL on
  GPUs, gloo on CPUs), and `spacy-bertcat train --workers N` (torch's elastic
  launcher on this machine).
- loop.py: spaCy's own training loop with sharded batches, worker 0's evaluation
  shared, saves and logs on worker 0 only.
- allreduce.py: the gradient all-reduce before bertcat's optimizer step.
"""
