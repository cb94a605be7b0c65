# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Global-norm gradient clipping with monolith_ops' kernels in Keras.

Keras 3 (``keras``, and ``tf.keras`` from TensorFlow 2.16 on):

* ``GlobalNormClipOptimizer(inner_optimizer, clip_norm)`` wraps an optimizer,
  as ``keras.mixed_precision.LossScaleOptimizer`` does, and clips the
  gradients by their global norm with ``clip_ops.clip_by_global_norm`` before
  the inner optimizer applies them. It replaces ``global_clipnorm=clip_norm``
  on the inner optimizer.

Keras 2 (the ``tf_keras`` package, or ``tf.keras`` in TensorFlow 2.15):

* ``GlobalNormClipTransformer(clip_norm)`` is a ``gradient_transformers``
  entry for the legacy optimizers (``tf_keras.optimizers.legacy.*``);
* ``with_global_norm_clipping(optimizer_class)`` gives a subclass of one of
  the current optimizers (``tf_keras.optimizers.Adam``, ...) whose first
  argument is ``clip_norm``.

In every case the clipped gradient is the one summed over the replicas of a
``tf.distribute`` strategy, so a step of N replicas is the step of one
device on the whole batch (see docs/keras.md for how Keras' own
``global_clipnorm`` behaves there).
"""

import importlib
from typing import Any, Optional

import tensorflow as tf

from monolith_ops import _multi_tensor, clip_ops
from monolith_ops._clip.inputs import check_flags
from monolith_ops._clip.tf_ops import in_xla_context

__all__ = ["GlobalNormClipTransformer", "with_global_norm_clipping"]


def _keep_on_first_replica(first, grad):
    """grad on the first replica, zeros (of its structure) on the others."""
    if isinstance(grad, tf.IndexedSlices):
        values = tf.where(first, grad.values, tf.zeros_like(grad.values))
        return tf.IndexedSlices(values, grad.indices, grad.dense_shape)
    return tf.where(first, grad, tf.zeros_like(grad))


def _combine_duplicates(grad):
    """`grad` with the rows of a repeated index summed into one, as Keras'
    own ``global_clipnorm`` (whose scale multiplication makes a dense
    tensor) and tf_keras' optimizers do. An optimizer whose update is not
    linear in the gradient (Adam, Adagrad, RMSprop, ...) would otherwise
    apply the rows of one index one by one: Adam's second moment would
    hold the sum of their squares instead of the square of their sum.

    IndexedSlices stay sparse, with each index once; inside XLA, which has
    no kernel for ``tf.unique``, they become the dense tensor that Keras'
    clip makes there too. Other gradients are returned as they are."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    if in_xla_context():
        return tf.convert_to_tensor(grad)
    indices, positions = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, grad.dense_shape)


def _clip_summed(grads, clip_norm, resummed, inverse_scale=None):
    """Clips `grads` (a list that may hold None) by their global norm,
    unscaling them by `inverse_scale` (None for none) in the same pass;
    returns (clipped, norm).

    In a replica context of a strategy with several replicas the gradients
    are first summed over the replicas, and the clip is that of the sum.
    When `resummed` is true the caller's optimizer sums the gradients over
    the replicas again: the first replica then returns the clipped sum and
    the others zeros, so that this second sum is exactly the clipped sum.
    Otherwise every replica returns the clipped sum."""
    grads = list(grads)
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return clip_ops.clip_by_global_norm(grads, clip_norm, inverse_scale=inverse_scale)
    positions = [i for i, g in enumerate(grads) if g is not None]
    if not positions:
        return grads, tf.constant(0.0)
    summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in positions])
    clipped, norm = clip_ops.clip_by_global_norm(
        list(summed), clip_norm, inverse_scale=inverse_scale
    )
    if resummed:
        first = tf.equal(ctx.replica_id_in_sync_group, 0)
        clipped = [_keep_on_first_replica(first, g) for g in clipped]
    for i, g in zip(positions, clipped):
        grads[i] = g
    return grads, norm


# --- Keras 3 -------------------------------------------------------------------


def _keras_package(kind):
    """The keras package of an optimizer class of Keras' own: Keras 3,
    tf_keras, or the Keras 2 of TensorFlow 2.15; None for any other class."""
    top = kind.__module__.split(".")[0]
    return importlib.import_module(top) if top in ("keras", "tf_keras") else None


def _fused_rule(inner, kind):
    """(rule, slot list attributes, op attrs) of the op that updates as the
    update_step of `inner`, whose optimizer class is `kind`, does, or None
    when Keras' path must."""
    name = kind.__name__
    package = _keras_package(kind)
    if (
        package is None
        or kind is not getattr(package.optimizers, name, None)
        or getattr(inner, "use_ema", False)
        or getattr(inner, "jit_compile", False)  # Keras 2's XLA update_step
        or getattr(inner, "_mesh", None) is not None
    ):
        return None  # a subclass may change update_step; EMA is Keras'
    if name == "SGD":
        # Keras 2's SGD keeps and updates its momentums at momentum 0 too.
        if not inner.momentum and package is _K3:
            return "KerasGradientDescent", (), {}
        return "KerasMomentum", ("momentums",), {"use_nesterov": bool(inner.nesterov)}
    if name in ("Adam", "AdamW") and not inner.amsgrad:
        return "KerasAdam", ("_momentums", "_velocities"), {}
    if name == "Adagrad":
        return "KerasAdagrad", ("_accumulators",), {}
    return None


class _TFOps:
    """The few ops of Keras 2's update_steps (TF's), named as Keras 3's."""

    cast = staticmethod(tf.cast)
    power = staticmethod(tf.pow)
    sqrt = staticmethod(tf.sqrt)
    multiply = staticmethod(tf.multiply)
    add = staticmethod(tf.add)


def _fused_hyper(inner, rule, learning_rate, dtype, k):
    """The op's hyperparameters in `dtype`, each computed by the expression
    of the optimizer's update_step (and _apply_weight_decay) with its ops
    `k` (Keras 3's, or TF's for Keras 2), so that each is the value Keras
    rounds it to: a Python number meets a tensor of `dtype` in the same op
    as in update_step (1 * x and 0 + x are exact)."""
    lr = k.cast(learning_rate, dtype)
    one, zero = tf.ones([], dtype), tf.zeros([], dtype)
    decay = zero if inner.weight_decay is None else tf.cast(inner.weight_decay, dtype)
    if rule == "KerasGradientDescent":
        return [lr, decay]
    if rule == "KerasMomentum":
        return [lr, k.cast(inner.momentum, dtype), decay]
    if rule == "KerasAdagrad":
        return [lr, k.add(zero, inner.epsilon), decay]
    local_step = k.cast(inner.iterations + 1, dtype)
    beta_1_power = k.power(k.cast(inner.beta_1, dtype), local_step)
    beta_2_power = k.power(k.cast(inner.beta_2, dtype), local_step)
    alpha = lr * k.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    epsilon = k.add(zero, inner.epsilon)
    if getattr(inner, "adaptive_epsilon", False):  # tf_keras' option
        epsilon = inner.epsilon * k.sqrt(1 - beta_2_power)
    return [
        lr,
        alpha,
        k.multiply(one, 1 - inner.beta_1),
        k.multiply(one, 1 - inner.beta_2),
        epsilon,
        decay,
    ]


def _apply_fused(inner, grads, variables, clip_norm, skipped_steps=None, kind=None):
    """The optimizer's own apply of the clipped gradients (Keras 3's
    `inner.apply`, Keras 2's `apply_gradients` without aggregation) with the
    dense updates of SGD, Adam, AdamW and Adagrad in one op per device and
    dtype, the clip folded in. With `skipped_steps` (the counter of
    skip_nonfinite) a step whose norm is not finite changes nothing but the
    counter. Returns False, having done nothing, where Keras' own path must
    apply them (see docs/optimizers.md). `kind` is the class whose
    update_step `inner` runs (by default its own)."""
    found = _fused_rule(inner, kind or type(inner))
    if (
        found is None
        or variables is None
        or in_xla_context()
        or tf.distribute.has_strategy()
        or _multi_tensor.gpu_present()
    ):
        return False
    rule, slot_attrs, attrs = found
    keras3 = _K3 is not None and isinstance(inner, _K3.optimizers.Optimizer)
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    tf_vars = [v.value if keras3 else v for _, v in pairs]
    if (
        not pairs
        or any(getattr(v, "overwrite_with_gradient", False) for _, v in pairs)
        or len({id(v) for v in tf_vars}) < len(tf_vars)  # Keras applies a repeat in turn
    ):
        return False
    if keras3:
        inner._check_variables_are_known([v for _, v in pairs])
    with tf.name_scope(inner.name):
        pairs = [
            (g if isinstance(g, tf.IndexedSlices) else tf.convert_to_tensor(g), v) for g, v in pairs
        ]
        norm = _multi_tensor.global_norm([g for g, _ in pairs])
        if not keras3:
            inner._compute_current_learning_rate()
        learning_rate = inner.learning_rate
        # Keras 3's Adam and momentum SGD subtract a dense tensor from an
        # IndexedSlices gradient, which densifies it (tf.convert_to_tensor):
        # their update of an embedding is the dense rule on that tensor.
        densifies = keras3 and rule in ("KerasAdam", "KerasMomentum")
        slots, groups, others = {}, {}, []
        for (g, v), tf_var in zip(pairs, tf_vars):
            sparse = isinstance(g, tf.IndexedSlices)
            shape = g.values.shape[1:] if sparse else g.shape
            if (
                (sparse and not densifies)
                or not _multi_tensor.fusable(g, tf_var)
                or not shape.is_fully_defined()
                or shape != (tf_var.shape[1:] if sparse else tf_var.shape)  # Keras broadcasts
            ):
                others.append((g, v))
                continue
            if keras3:
                index = inner._get_variable_index(v)
            else:
                index = inner._index_dict[inner._var_key(v)]
            lists = [getattr(inner, a) for a in slot_attrs]
            slots[id(tf_var)] = [s[index].value if keras3 else s[index] for s in lists]
            # Keras asks with the tf.Variable, whose name is the full path.
            decayed = inner.weight_decay is not None and inner._use_weight_decay(tf_var)
            groups.setdefault((decayed, sparse), []).append((g, tf_var))
        skip = skipped_steps is not None
        ops = _K3.ops if keras3 else _TFOps
        applied = []
        for (decayed, sparse), group in groups.items():
            op_clip_norm = clip_norm
            if sparse:
                # Clipped and their repeated rows summed as on Keras' path,
                # then made dense as Keras' ops make them.
                clipped, _ = clip_ops.clip_by_global_norm(
                    [g for g, _ in group], clip_norm, use_norm=norm
                )
                dense = [tf.convert_to_tensor(_combine_duplicates(g)) for g in clipped]
                group = [(g, v) for g, (_, v) in zip(dense, group)]
                op_clip_norm = None
            applied += _multi_tensor.apply_in_groups(
                rule,
                group,
                lambda var: slots[id(var)],
                lambda dtype: _fused_hyper(inner, rule, learning_rate, dtype, ops),
                norm,
                op_clip_norm,
                skip_nonfinite=skip,
                attrs=dict(attrs, decay=decayed),
            )[1]

        def rest_of_step():
            counted = False
            if others:
                # Sparse gradients and other dtypes: clipped by the same
                # norm, then the optimizer's own weight decay and update.
                clipped, _ = clip_ops.clip_by_global_norm(
                    [g for g, _ in others], clip_norm, use_norm=norm
                )
                rest = [v for _, v in others]
                inner._apply_weight_decay(rest)
                if keras3:
                    clipped = [_combine_duplicates(g) for g in clipped]
                    inner._backend_update_step(clipped, rest, learning_rate)
                else:
                    clipped = inner._deduplicate_sparse_grad(clipped)
                    inner._internal_apply_gradients(list(zip(clipped, rest)))
                    counted = True  # Keras 2's advances iterations
            for _, v in pairs:
                if v.constraint is not None:
                    v.assign(v.constraint(v))
            if not counted:
                inner.iterations.assign_add(1)

        if not skip:
            rest_of_step()
            return True
        finite = tf.reduce_all(tf.stack(applied)) if applied else tf.math.is_finite(norm)
        _run_if_finite(finite, rest_of_step, skipped_steps)
    return True


def _run_if_finite(finite, step, skipped_steps):
    """step() when `finite` (a bool tensor) holds, else the step is counted
    in skipped_steps: the skip of skip_nonfinite, on either path."""
    tf.cond(finite, step, lambda: None)
    skipped_steps.assign_add(tf.cast(tf.logical_not(finite), tf.int64))


def _keras3():
    """The keras module when it is Keras 3, else None."""
    try:
        import keras
    except ImportError:
        return None
    major = int(keras.__version__.split(".")[0])
    return keras if major >= 3 else None


_K3 = _keras3()

if _K3 is not None:
    __all__.append("GlobalNormClipOptimizer")

    @_K3.saving.register_keras_serializable(package="monolith_ops")
    class GlobalNormClipOptimizer(_K3.optimizers.Optimizer):
        """Wraps a Keras 3 optimizer and clips gradients by their global norm.

        ``GlobalNormClipOptimizer(keras.optimizers.Adam(1e-3), clip_norm=1.0)``
        updates the variables as ``keras.optimizers.Adam(1e-3,
        global_clipnorm=1.0)`` does, with the norm and the clip computed by
        ``monolith_ops.clip_ops.clip_by_global_norm`` (the fused kernel; TF
        ops inside XLA). Gradients below ``clip_norm`` pass through, and a
        non-finite norm makes every gradient NaN, as in Keras (unless
        ``skip_nonfinite``).

        It works in ``model.fit`` (any ``jit_compile``), in custom loops
        (``apply_gradients`` / ``apply``), inside
        ``keras.mixed_precision.LossScaleOptimizer`` (which ``compile`` adds
        under the ``mixed_float16`` policy; it unscales the gradients and
        skips steps with non-finite ones before this optimizer clips them),
        and is saved and loaded with the model. Under a ``tf.distribute``
        strategy the gradient clipped is the one summed over the replicas.

        The optimizer's variables are those of ``inner_optimizer``;
        ``learning_rate`` and ``iterations`` are the inner optimizer's.

        Args:
          inner_optimizer: The ``keras.optimizers.Optimizer`` to wrap. It may
            not clip itself (``clipnorm``, ``clipvalue``, ``global_clipnorm``)
            nor accumulate gradients (``gradient_accumulation_steps``), nor
            be a ``LossScaleOptimizer`` (wrap this optimizer in one instead).
          clip_norm: Positive number, finite and not 0 in float32: the
            largest global norm.
          name: Optional name of this optimizer.
          loss_scale_factor: Optional fixed loss scale factor. Defaults to
            the inner optimizer's, which this optimizer takes over, so that
            gradients are unscaled before they are clipped.
          skip_nonfinite: A step whose global norm is inf or NaN changes
            nothing (no variable, slot or ``iterations``) and is counted in
            ``skipped_steps``, instead of making every variable NaN as Keras'
            ``global_clipnorm`` does. Not under a strategy with several
            replicas on Keras' path.

        Raises:
          TypeError: ``inner_optimizer`` is not a Keras 3 optimizer, or
            ``clip_norm`` is not a number.
          ValueError: ``clip_norm`` is not positive and finite in float32,
            the inner optimizer already clips, accumulates gradients or is a
            ``LossScaleOptimizer``, or the Keras backend is not TensorFlow.
        """

        def __init__(
            self,
            inner_optimizer: Any,
            clip_norm: float,
            name: Optional[str] = None,
            loss_scale_factor: Optional[float] = None,
            *,
            skip_nonfinite: bool = False,
        ) -> None:
            if not isinstance(inner_optimizer, _K3.optimizers.Optimizer):
                raise TypeError(
                    "inner_optimizer should be a keras.optimizers.Optimizer, "
                    f"but received {type(inner_optimizer).__name__}"
                )
            if isinstance(inner_optimizer, _K3.optimizers.LossScaleOptimizer):
                # Its loss scale would never be applied to the loss, which
                # only the outermost optimizer scales, but its gradients
                # would still be divided by it.
                raise ValueError(
                    "inner_optimizer is a LossScaleOptimizer, whose loss scale "
                    "only the outermost optimizer applies; wrap the other way: "
                    "keras.optimizers.LossScaleOptimizer("
                    "GlobalNormClipOptimizer(optimizer, clip_norm))"
                )
            if _K3.backend.backend() != "tensorflow":
                raise ValueError(
                    "GlobalNormClipOptimizer needs the TensorFlow backend of "
                    f"Keras, but the backend is {_K3.backend.backend()!r}"
                )
            clip_norm = clip_ops.check_clip_norm(clip_norm)
            check_flags(skip_nonfinite=skip_nonfinite)
            for arg in ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps"):
                if getattr(inner_optimizer, arg, None):
                    raise ValueError(
                        f"inner_optimizer has {arg}="
                        f"{getattr(inner_optimizer, arg)!r}; an optimizer "
                        "wrapped by GlobalNormClipOptimizer may not set it"
                    )
            if loss_scale_factor is None:
                loss_scale_factor = inner_optimizer.loss_scale_factor
            super().__init__(learning_rate=0.0, name=name, loss_scale_factor=loss_scale_factor)
            self.inner_optimizer = inner_optimizer
            self.clip_norm = clip_norm
            self.skip_nonfinite = bool(skip_nonfinite)
            self._skipped_steps = None
            # The gradients are unscaled here, before they are clipped.
            self.inner_optimizer.loss_scale_factor = None

        def build(self, var_list):
            self.inner_optimizer.build(var_list)
            super().build(var_list)
            if self.skip_nonfinite and self._skipped_steps is None:
                self._skipped_steps = self.add_variable(
                    (), initializer="zeros", dtype="int64", name="skipped_steps"
                )

        @property
        def skipped_steps(self):
            """With skip_nonfinite, the int64 variable counting the skipped
            steps (saved with the optimizer's variables); else None."""
            return self._skipped_steps

        @property
        def variables(self):
            return self._variables + self.inner_optimizer.variables

        def apply(self, grads, trainable_variables=None):
            grads = list(grads)
            if not grads:
                return
            if trainable_variables is not None:
                trainable_variables = list(trainable_variables)
                if not self.built:
                    self.build(trainable_variables)
            if self.loss_scale_factor is None and _apply_fused(
                self.inner_optimizer,
                grads,
                trainable_variables,
                self.clip_norm,
                self._skipped_steps,
            ):
                return
            if self.skip_nonfinite:
                ctx = tf.distribute.get_replica_context()
                if ctx is not None and ctx.num_replicas_in_sync > 1:
                    raise ValueError(
                        "GlobalNormClipOptimizer(skip_nonfinite=True) does not "
                        "work under a tf.distribute strategy with several "
                        "replicas: the inner optimizer's merge call cannot run "
                        "in the skip's condition"
                    )
            # The loss scale is undone in the clip's pass over the gradients.
            inverse_scale = None
            if self.loss_scale_factor is not None:
                inverse_scale = 1.0 / self.loss_scale_factor
            # The inner optimizer sums the gradients over the replicas again.
            grads, norm = _clip_summed(
                grads, self.clip_norm, resummed=True, inverse_scale=inverse_scale
            )
            grads = [_combine_duplicates(g) for g in grads]
            if not self.skip_nonfinite:
                self.inner_optimizer.apply(grads, trainable_variables)
                return
            _run_if_finite(
                tf.math.is_finite(norm),
                lambda: self.inner_optimizer.apply(grads, trainable_variables),
                self._skipped_steps,
            )

        def apply_gradients(self, grads_and_vars):
            grads, trainable_variables = zip(*grads_and_vars)
            self.apply(grads, trainable_variables)
            return self.iterations

        def stateless_apply(self, optimizer_variables, grads, trainable_variables):
            raise ValueError(
                "GlobalNormClipOptimizer needs the TensorFlow backend, which has no stateless_apply"
            )

        @property
        def learning_rate(self):
            return self.inner_optimizer.learning_rate

        @learning_rate.setter
        def learning_rate(self, learning_rate):
            self.inner_optimizer.learning_rate = learning_rate

        @property
        def iterations(self):
            return self.inner_optimizer.iterations

        def finalize_variable_values(self, var_list):
            self.inner_optimizer.finalize_variable_values(var_list)

        def get_config(self):
            return {
                "name": self.name,
                "inner_optimizer": _K3.saving.serialize_keras_object(self.inner_optimizer),
                "clip_norm": self.clip_norm,
                "loss_scale_factor": self.loss_scale_factor,
                "skip_nonfinite": self.skip_nonfinite,
            }

        @classmethod
        def from_config(cls, config, custom_objects=None):
            config = dict(config)
            inner = _K3.saving.deserialize_keras_object(
                config.pop("inner_optimizer"), custom_objects=custom_objects
            )
            return cls(inner, **config)


def __getattr__(name):
    if name == "GlobalNormClipOptimizer":
        try:
            import keras

            found = f"Keras {keras.__version__} is installed"
        except ImportError:
            found = "keras is not installed"
        raise AttributeError(
            "monolith_ops.keras.GlobalNormClipOptimizer needs Keras 3 and "
            f"{found}; with Keras 2 use with_global_norm_clipping or "
            "GlobalNormClipTransformer"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- Keras 2 (tf_keras) ----------------------------------------------------------


class GlobalNormClipTransformer:
    """A ``gradient_transformers`` entry of Keras 2's legacy optimizers that
    clips the gradients by their global norm with ``clip_by_global_norm``::

        tf_keras.optimizers.legacy.Adam(
            1e-3, gradient_transformers=[GlobalNormClipTransformer(1.0)])

    is ``tf_keras.optimizers.legacy.Adam(1e-3, global_clipnorm=1.0)``, the
    clip done by the kernels. The legacy optimizers call their transformers
    on the gradients already summed over the replicas. Their ``get_config``
    leaves ``gradient_transformers`` out, so the optimizer of a model saved
    and loaded again no longer clips: compile the loaded model again with a
    transformer (or use ``with_global_norm_clipping``, which is saved).

    Args:
      clip_norm: Positive finite number: the largest global norm.
    """

    def __init__(self, clip_norm: float) -> None:
        self.clip_norm = clip_ops.check_clip_norm(clip_norm)

    def __call__(self, grads_and_vars: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            return grads_and_vars
        grads, variables = zip(*grads_and_vars)
        clipped, _ = clip_ops.clip_by_global_norm(list(grads), self.clip_norm)
        return list(zip(clipped, variables))

    def __repr__(self):
        return f"GlobalNormClipTransformer(clip_norm={self.clip_norm})"


_CLIPPED_CLASSES: dict[type, type] = {}


def with_global_norm_clipping(optimizer_class: type) -> type:
    """A subclass of a Keras 2 optimizer class that clips by global norm.

    For the current (non-legacy) optimizers of Keras 2, which have no
    ``gradient_transformers``::

        ClippedAdam = with_global_norm_clipping(tf_keras.optimizers.Adam)
        optimizer = ClippedAdam(1.0, learning_rate=1e-3)  # clip_norm first

    updates as ``tf_keras.optimizers.Adam(1e-3, global_clipnorm=1.0)``; for
    SGD, Adam, AdamW and Adagrad the dense updates are one multi-tensor op
    per device and dtype (docs/optimizers.md).
    ``apply_gradients`` sums the gradients over the replicas (unless told to
    skip that), clips the sum with ``clip_by_global_norm`` and hands it to
    the optimizer's own ``apply_gradients``. The class is registered as
    serializable (package ``monolith_ops``), so a model compiled with it
    is saved and loaded with its optimizer; the same class is returned for
    the same ``optimizer_class``.

    Args:
      optimizer_class: A subclass of ``tf_keras.optimizers.Optimizer`` (or,
        with TensorFlow 2.15, of ``tf.keras.optimizers.Optimizer``).

    Raises:
      TypeError: ``optimizer_class`` is not such a class (a legacy optimizer:
        use ``GlobalNormClipTransformer``).
    """
    if optimizer_class in _CLIPPED_CLASSES:
        return _CLIPPED_CLASSES[optimizer_class]
    if not (
        isinstance(optimizer_class, type)
        and hasattr(optimizer_class, "aggregate_gradients")
        and hasattr(optimizer_class, "apply_gradients")
        and optimizer_class.__module__.split(".")[0] in ("tf_keras", "keras")
    ):
        raise TypeError(
            "optimizer_class should be a Keras 2 optimizer class (such as "
            "tf_keras.optimizers.Adam), but received "
            f"{optimizer_class!r:.100}; for legacy optimizers use "
            "GlobalNormClipTransformer, for Keras 3 GlobalNormClipOptimizer"
        )
    package = importlib.import_module(optimizer_class.__module__.split(".")[0])
    if package.__name__ == "keras" and int(package.__version__.split(".")[0]) >= 3:
        raise TypeError(
            "with_global_norm_clipping is for Keras 2 optimizers; "
            "with Keras 3 use GlobalNormClipOptimizer"
        )

    class Clipped(optimizer_class):
        def __init__(self, clip_norm, *args, **kwargs):
            if kwargs.get("global_clipnorm") or kwargs.get("clipnorm") or kwargs.get("clipvalue"):
                raise ValueError(
                    "clipnorm, clipvalue and global_clipnorm may not be set "
                    "on an optimizer that clips by global norm itself"
                )
            self.clip_norm = clip_ops.check_clip_norm(clip_norm)
            super().__init__(*args, **kwargs)

        def apply_gradients(
            self, grads_and_vars, name=None, skip_gradients_aggregation=False, **kwargs
        ):
            grads_and_vars = list(grads_and_vars)
            aggregate = kwargs.pop("experimental_aggregate_gradients", True)
            if not grads_and_vars:
                return super().apply_gradients(grads_and_vars, name=name, **kwargs)
            grads, variables = zip(*grads_and_vars)
            with tf.name_scope(name or self.name or "optimizer"):
                with tf.init_scope():
                    self.build(variables)
                if _apply_fused(self, grads, variables, self.clip_norm, kind=optimizer_class):
                    return self.iterations
            if not skip_gradients_aggregation and aggregate:
                grads, _ = _clip_summed(grads, self.clip_norm, resummed=False)
            else:
                grads, _ = clip_ops.clip_by_global_norm(list(grads), self.clip_norm)
            return super().apply_gradients(
                zip(grads, variables), name=name, skip_gradients_aggregation=True, **kwargs
            )

        def get_config(self):
            config = super().get_config()
            config["clip_norm"] = self.clip_norm
            return config

    Clipped.__name__ = Clipped.__qualname__ = f"GlobalNormClipped{optimizer_class.__name__}"
    Clipped.__module__ = __name__
    Clipped = package.saving.register_keras_serializable(package="monolith_ops")(Clipped)
    _CLIPPED_CLASSES[optimizer_class] = Clipped
    return Clipped
