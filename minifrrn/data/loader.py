"""A batching loader that decodes in background threads, so that PNG decoding overlaps compute.

The order of an epoch is a pure function of (seed, epoch): a run resumed mid-epoch sees the same
batches as one that never stopped. Pillow and NumPy release the GIL while decoding and resizing, so
threads give real parallelism here without the cost of processes.
"""
from __future__ import annotations

import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

import numpy as np

from ..seeding import ORDER, stream
from .augment import check_seed

__all__ = ["DataLoader", "collate"]


def collate(samples):
    """One batch from samples of one size; samples of different sizes are named."""
    if not samples:
        raise ValueError("collate: no samples to make a batch of")
    first = samples[0]
    other = next((s for s in samples if s["image"].shape != first["image"].shape), None)
    if other is not None:
        raise ValueError(f"frames of different sizes in one batch: {first['name']} is "
                         f"{'x'.join(map(str, first['image'].shape[1:]))}, {other['name']} "
                         f"{'x'.join(map(str, other['image'].shape[1:]))}: every frame of a data "
                         f"set must have one size")
    return {"image": np.stack([s["image"] for s in samples]),
            "target": np.stack([s["target"] for s in samples]),
            "name": [s["name"] for s in samples]}


class DataLoader:
    """Iterate over ``dataset`` in batches: each iteration is one epoch.

    ``num_workers`` threads load whole batches; up to ``prefetch`` batches are decoded ahead of the
    consumer. ``set_epoch(e)`` chooses the epoch (shuffle order and augmentation);
    ``batches(epoch, start)`` iterates one epoch from batch ``start``. Call ``close()`` (or use
    ``with``) to stop the threads; they also stop when the loader is garbage-collected.
    """

    def __init__(self, dataset, batch_size, shuffle=True, drop_last=True, num_workers=2, prefetch=2,
                 seed=0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"the dataset has {len(dataset)} samples, fewer than one batch of "
                             f"{batch_size}: lower --batch-size")
        seed = check_seed(seed, "DataLoader: seed")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers, self.prefetch, self.seed = max(0, num_workers), max(1, prefetch), seed
        self.epoch = 0
        self._pool = None
        self._pool_lock = threading.Lock()  # batches() may start on several threads at once

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self, epoch):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return stream(self.seed, ORDER, epoch).permutation(n)

    def _load_batch(self, indices, epoch):
        load = getattr(self.dataset, "load", None)
        samples = [load(int(i), epoch) if load else self.dataset[int(i)] for i in indices]
        return collate(samples)

    def batches(self, epoch, start=0):
        order = self.order(epoch)
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        chunks = chunks[start:]
        if self.num_workers == 0:
            for chunk in chunks:
                yield self._load_batch(chunk, epoch)
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.num_workers,
                                                thread_name_prefix="minifrrn-loader")
            pool = self._pool
        pending = []

        closed = ("the DataLoader was closed while a batches() iterator was still in use: finish "
                  "or drop the iterator before close()")

        def next_batch():
            try:
                return pending.pop(0).result()
            except CancelledError:
                raise RuntimeError(closed) from None

        try:
            for chunk in chunks:
                try:
                    pending.append(pool.submit(self._load_batch, chunk, epoch))
                except RuntimeError:  # the pool was shut down by close()
                    raise RuntimeError(closed) from None
                if len(pending) > self.prefetch:
                    yield next_batch()
            while pending:
                yield next_batch()
        finally:
            for future in pending:
                future.cancel()

    def __iter__(self):
        return self.batches(self.epoch)

    def close(self):
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except BaseException:  # a Ctrl-C at exit too: a finalizer has no one to report to
            pass
