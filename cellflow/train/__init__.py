"""Training, for every model: the loop (:mod:`~cellflow.train.trainer`), its settings
(:mod:`~cellflow.train.config`), the optimiser and weight average (:mod:`~cellflow.train.optim`),
batches drawn ahead by worker threads (:mod:`~cellflow.train.batch_workers`), multi-GPU training
(:mod:`~cellflow.train.distributed`) and the thread policy (:mod:`~cellflow.train.threads`).
"""
