"""What keras-icn needs to know about `tf.distribute`: replicas inside a training
step, and which worker process writes the run's files.

Under a strategy (MirroredStrategy, MultiWorkerMirroredStrategy) the training
step runs once per replica on that replica's share of the global batch. The
model's own state that every replica writes (the pool, p_0's moments) stays
one state only if every replica writes the same values: each replica makes its
share of the pseudo-negatives with its own random numbers, then `gather` hands
every replica all of them. Without a strategy every function here is the
identity, so the one-device step is unchanged.
"""

import tensorflow as tf


def count():
    """Replicas in sync: 1 without a strategy (a Python int, known when tracing)."""
    return tf.distribute.get_replica_context().num_replicas_in_sync


def multi_worker():
    """Whether the step runs under MultiWorkerMirroredStrategy (several processes)."""
    return isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


def fold_in_replica(seed):
    """`seed` made distinct per replica (unchanged on one replica)."""
    if count() == 1:
        return seed
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, seed.dtype))


def gather(values):
    """Every replica's `values`, concatenated along axis 0 in replica order."""
    if count() == 1:
        return values
    gathered = tf.distribute.get_replica_context().all_gather(values, axis=0)
    if values.shape[0] is None:
        return gathered
    return tf.ensure_shape(gathered, [values.shape[0] * count()] + values.shape[1:])  # static


def sum_over_replicas(values):
    """Every replica's `values` (a list of tensors) summed, on every replica."""
    if count() == 1:
        return values
    return tf.distribute.get_replica_context().all_reduce("SUM", values)


def check_strategy(steps_per_execution, shares):
    """Refuses, before training, settings the current strategy cannot run.

    Args:
        steps_per_execution: as for `compile`; Keras 3.15 fails with more than 1
            under MirroredStrategy with several replicas.
        shares: `{name: total}` per-step counts every replica takes a share of.
    """
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and steps_per_execution != 1:
        raise ValueError(f"steps_per_execution must be 1 under {type(strategy).__name__} with "
                         f"{replicas} replicas (Keras 3.15 cannot run more). Received: "
                         f"steps_per_execution={steps_per_execution}")
    for name, total in shares.items():
        if total % replicas:
            raise ValueError(_indivisible(name, total, replicas))


def _indivisible(name, total, replicas):
    return (f"{name}={total} must be divisible by the {replicas} replicas in sync: each makes an "
            f"equal share. Use a multiple of {replicas}.")


def share(name, total):
    """One replica's share of `total` (a per-step count such as `synthesis_batch_size`).

    Raises:
        ValueError: `total` does not divide evenly over the replicas.
    """
    replicas = count()
    if total % replicas:
        raise ValueError(_indivisible(name, total, replicas))
    return total // replicas


# Workers (MultiWorkerMirroredStrategy) --------------------------------------------

def is_chief(strategy):
    """Whether this process writes the run's files: the `chief` task, or worker 0
    in a cluster without one; always true without several workers."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def barrier(strategy):
    """Returns once every worker has called it (a collective); no-op on one worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
