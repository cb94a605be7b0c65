# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""TF1 optimizers that apply a whole list of variables in one op per device,
with the global-norm clip folded in.

``GradientDescentOptimizer``, ``MomentumOptimizer``, ``AdagradOptimizer`` and
``AdamOptimizer`` are the ``tf.compat.v1.train`` optimizers of the same names,
with two more arguments:

* ``clip_norm``: clip the gradients by their global norm first, as
  ``tf.clip_by_global_norm`` would (``monolith_ops.clip_ops`` computes the
  norm); the clipped gradients are never written out.
* ``skip_nonfinite``: a step whose global norm is inf or NaN changes nothing,
  no variable, slot, beta power or ``global_step``; ``skipped_steps`` counts
  such steps.

Their ``apply_gradients`` (and so ``minimize``) takes TF's arguments and
returns TF's train op. Slots, non-slot variables and their names are TF's, so
checkpoints go both ways. Resource variables on CPU are updated by one
``MonolithMultiTensorApply*`` op per device, dtype and gradient kind (dense,
or ``IndexedSlices`` per index dtype), placed with the variables; anything
else (reference variables, variables with a constraint, GPU placement, a
``tf.distribute`` strategy) takes TF's own per-variable path with the same
clip. docs/optimizers.md says what each result equals.
"""

import tensorflow as tf
from tensorflow.python.distribute import distribute_lib
from tensorflow.python.training import optimizer as tf1_optimizer

from monolith_ops import _multi_tensor, clip_ops
from monolith_ops._clip.inputs import check_clip_norm, check_flags

__all__ = [
    "AdagradOptimizer",
    "AdamOptimizer",
    "GradientDescentOptimizer",
    "MomentumOptimizer",
]


def _check_clip_norm(clip_norm):
    """None, a number checked now, or a scalar tensor checked when run."""
    if clip_norm is None or isinstance(clip_norm, (tf.Tensor, tf.Variable)):
        return clip_norm
    return check_clip_norm(clip_norm)


class _MultiTensorApply:
    """What the four optimizers share: the grouping of the variables, the
    clip and skip, the calls of the ops, and the fallback."""

    # The op's rule ("Adam", ...) and its slot names, in the op's order.
    _RULE = None
    _SLOTS = ()

    def _init_multi_tensor(self, clip_norm, skip_nonfinite):
        check_flags(skip_nonfinite=skip_nonfinite)
        self._clip_norm = _check_clip_norm(clip_norm)
        self._skip_nonfinite = bool(skip_nonfinite)
        self._skipped_steps = None
        self._applied = None  # set while apply_gradients builds the update

    @property
    def skipped_steps(self):
        """The int64 variable counting the steps skip_nonfinite skipped (a
        local variable: not saved in checkpoints), or None before the first
        apply_gradients and without skip_nonfinite."""
        return self._skipped_steps

    def _hyper(self, dtype):
        """The op's hyperparameter inputs, cast to `dtype` as TF's apply
        casts them."""
        raise NotImplementedError

    def _op_attrs(self):
        return {}

    def apply_gradients(
        self, grads_and_vars, global_step=None, name=None, skip_gradients_aggregation=False
    ):
        """As ``tf.compat.v1.train.Optimizer.apply_gradients``, with the clip
        and the skip of this optimizer."""
        if distribute_lib.has_strategy() and not skip_gradients_aggregation:
            # The strategy's merge calls back into the stock path with the
            # grads aggregated; the clip happens before, per replica.
            return super().apply_gradients(
                self._clipped_for_stock(tuple(grads_and_vars)), global_step, name
            )
        grads_and_vars = tuple(grads_and_vars)
        if not grads_and_vars:
            raise ValueError("No variables provided.")
        pairs = []
        for g, v in grads_and_vars:
            if g is not None:
                try:
                    g = tf.convert_to_tensor(g) if not isinstance(g, tf.IndexedSlices) else g
                except (TypeError, ValueError) as err:
                    raise TypeError(
                        f"Gradient must be convertible to a Tensor or IndexedSlices, or None: {g}"
                    ) from err
            pairs.append((g, v))
        var_list = [v for g, v in pairs if g is not None]
        if not var_list:
            raise ValueError(
                f"No gradients provided for any variable: {[str(v) for _, v in pairs]}."
            )
        with tf.init_scope():
            self._create_slots(var_list)
            if self._skip_nonfinite and self._skipped_steps is None:
                self._skipped_steps = tf.compat.v1.Variable(
                    0,
                    dtype=tf.int64,
                    trainable=False,
                    name=f"{self._name}_skipped_steps",
                    collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES],
                    use_resource=True,
                )
        live = [(g, v) for g, v in pairs if g is not None]
        with tf.name_scope(name or self._name) as scope:
            self._prepare()
            norm = self._global_norm([g for g, _ in live])
            fused, stock = self._split(live)
            update_ops, applied = self._fused_updates(fused, norm)
            if self._skip_nonfinite and applied is None:
                applied = tf.math.is_finite(norm)
            self._applied = applied
            try:
                update_ops += self._stock_updates(stock, norm, applied)
                finish = self._finish(update_ops, "update" if global_step is not None else scope)
            finally:
                self._applied = None
            if global_step is None:
                train_op = finish
            else:
                with tf.control_dependencies([finish]), tf.compat.v1.colocate_with(global_step):
                    step = 1 if applied is None else tf.cast(applied, global_step.dtype)
                    train_op = tf.compat.v1.assign_add(global_step, step, name=scope).op
            if self._skipped_steps is not None:
                with tf.control_dependencies([train_op]):
                    count = self._skipped_steps.assign_add(
                        tf.cast(tf.logical_not(applied), tf.int64)
                    )
                train_op = tf.group(train_op, count, name="with_skip_count")
        if not tf.executing_eagerly():
            if isinstance(train_op, tf.Tensor):
                train_op = train_op.op
            collection = tf.compat.v1.get_collection_ref(tf.compat.v1.GraphKeys.TRAIN_OP)
            if train_op not in collection:
                collection.append(train_op)
        return train_op

    # The parts of apply_gradients.

    def _global_norm(self, grads):
        """The global norm when the clip or the skip reads it, else None."""
        if self._clip_norm is None and not self._skip_nonfinite:
            return None
        return _multi_tensor.global_norm(grads)

    def _split(self, pairs):
        """(pairs the ops update, pairs TF's path updates)."""
        if _multi_tensor.gpu_present():
            return [], pairs
        fused, stock = [], []
        for g, v in pairs:
            ok = _multi_tensor.fusable(g, v) and getattr(v, "constraint", None) is None
            (fused if ok else stock).append((g, v))
        return fused, stock

    def _fused_updates(self, pairs, norm):
        """One op per (device, dtype, gradient kind) and graph part; returns
        (ops, applied), applied a bool tensor when the skip reads it."""
        clip = self._clip_norm is not None
        update_ops, applied = _multi_tensor.apply_in_groups(
            self._RULE,
            pairs,
            lambda v: [self.get_slot(v, s) for s in self._SLOTS],
            self._hyper,
            norm,
            self._clip_norm,
            skip_nonfinite=self._skip_nonfinite,
            attrs=self._op_attrs(),
            sparse_inputs=lambda grads, _: self._sparse_inputs(grads, norm, clip),
        )
        if not self._skip_nonfinite or not applied:
            return update_ops, None
        return update_ops, applied[0] if len(applied) == 1 else tf.reduce_all(tf.stack(applied))

    def _sparse_inputs(self, grads, norm, clip):
        """The values and indices of IndexedSlices gradients as TF's apply
        sees them: clipped (as tf.clip_by_global_norm clips their values),
        then with repeated indices summed, except by gradient descent, which
        scatters them one by one."""
        if clip:
            grads, _ = clip_ops.clip_by_global_norm(grads, self._clip_norm, use_norm=norm)
        values, indices = [], []
        for g in grads:
            if self._RULE == "GradientDescent":
                values.append(g.values)
                indices.append(g.indices)
                continue
            summed, unique = tf1_optimizer._deduplicate_indexed_slices(g.values, g.indices)
            values.append(summed)
            indices.append(unique)
        return values, indices

    def _stock_updates(self, pairs, norm, applied):
        """TF's per-variable updates of `pairs`, with the same clip; under the
        skip, in a cond on `applied`."""
        if not pairs:
            return []
        grads = [g for g, _ in pairs]
        if self._clip_norm is not None:
            grads, _ = clip_ops.clip_by_global_norm(grads, self._clip_norm, use_norm=norm)

        def updates():
            made = []
            for g, (_, v) in zip(grads, pairs):
                with tf.compat.v1.colocate_with(v):
                    made.append(tf1_optimizer._get_processor(v).update_op(self, g))
            return tf.group(made)

        if applied is None:
            return [updates()]
        return [tf.cond(applied, updates, tf.no_op)]

    def _clipped_for_stock(self, grads_and_vars):
        grads = [g for g, _ in grads_and_vars]
        if self._clip_norm is None:
            return grads_and_vars
        clipped, _ = clip_ops.clip_by_global_norm(grads, self._clip_norm)
        return tuple(zip(clipped, [v for _, v in grads_and_vars]))


class GradientDescentOptimizer(_MultiTensorApply, tf.compat.v1.train.GradientDescentOptimizer):
    """``tf.compat.v1.train.GradientDescentOptimizer`` in one op per device,
    with ``clip_norm`` and ``skip_nonfinite`` (see the module)."""

    _RULE = "GradientDescent"

    def __init__(
        self,
        learning_rate,
        use_locking=False,
        name="GradientDescent",
        *,
        clip_norm=None,
        skip_nonfinite=False,
    ):
        super().__init__(learning_rate, use_locking=use_locking, name=name)
        self._init_multi_tensor(clip_norm, skip_nonfinite)

    def _hyper(self, dtype):
        return [tf.cast(self._learning_rate_tensor, dtype)]


class MomentumOptimizer(_MultiTensorApply, tf.compat.v1.train.MomentumOptimizer):
    """``tf.compat.v1.train.MomentumOptimizer`` in one op per device, with
    ``clip_norm`` and ``skip_nonfinite`` (see the module)."""

    _RULE = "Momentum"
    _SLOTS = ("momentum",)

    def __init__(
        self,
        learning_rate,
        momentum,
        use_locking=False,
        name="Momentum",
        use_nesterov=False,
        *,
        clip_norm=None,
        skip_nonfinite=False,
    ):
        super().__init__(
            learning_rate, momentum, use_locking=use_locking, name=name, use_nesterov=use_nesterov
        )
        self._init_multi_tensor(clip_norm, skip_nonfinite)

    def _hyper(self, dtype):
        return [tf.cast(self._learning_rate_tensor, dtype), tf.cast(self._momentum_tensor, dtype)]

    def _op_attrs(self):
        return {"use_nesterov": self._use_nesterov}


class AdagradOptimizer(_MultiTensorApply, tf.compat.v1.train.AdagradOptimizer):
    """``tf.compat.v1.train.AdagradOptimizer`` in one op per device, with
    ``clip_norm`` and ``skip_nonfinite`` (see the module)."""

    _RULE = "Adagrad"
    _SLOTS = ("accumulator",)

    def __init__(
        self,
        learning_rate,
        initial_accumulator_value=0.1,
        use_locking=False,
        name="Adagrad",
        *,
        clip_norm=None,
        skip_nonfinite=False,
    ):
        super().__init__(
            learning_rate,
            initial_accumulator_value=initial_accumulator_value,
            use_locking=use_locking,
            name=name,
        )
        self._init_multi_tensor(clip_norm, skip_nonfinite)

    def _hyper(self, dtype):
        return [tf.cast(self._learning_rate_tensor, dtype)]


class AdamOptimizer(_MultiTensorApply, tf.compat.v1.train.AdamOptimizer):
    """``tf.compat.v1.train.AdamOptimizer`` in one op per device, with
    ``clip_norm`` and ``skip_nonfinite`` (see the module). Under the skip, a
    skipped step leaves ``beta1_power`` and ``beta2_power`` as they are."""

    _RULE = "Adam"
    _SLOTS = ("m", "v")

    def __init__(
        self,
        learning_rate=0.001,
        beta1=0.9,
        beta2=0.999,
        epsilon=1e-8,
        use_locking=False,
        name="Adam",
        *,
        clip_norm=None,
        skip_nonfinite=False,
    ):
        super().__init__(
            learning_rate,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            use_locking=use_locking,
            name=name,
        )
        self._init_multi_tensor(clip_norm, skip_nonfinite)

    def _hyper(self, dtype):
        beta1_power, beta2_power = self._get_beta_accumulators()
        return [
            tf.cast(beta1_power, dtype),
            tf.cast(beta2_power, dtype),
            tf.cast(self._lr_t, dtype),
            tf.cast(self._beta1_t, dtype),
            tf.cast(self._beta2_t, dtype),
            tf.cast(self._epsilon_t, dtype),
        ]

    def _finish(self, update_ops, name_scope):
        if self._applied is None:
            return super()._finish(update_ops, name_scope)
        with tf.control_dependencies(update_ops):
            beta1_power, beta2_power = self._get_beta_accumulators()
            with tf.compat.v1.colocate_with(beta1_power):
                powers = [
                    power.assign(
                        tf.where(self._applied, power * beta, power),
                        use_locking=self._use_locking,
                    )
                    for power, beta in ((beta1_power, self._beta1_t), (beta2_power, self._beta2_t))
                ]
        return tf.group(*update_ops + powers, name=name_scope)
