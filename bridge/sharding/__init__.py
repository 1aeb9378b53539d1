"""Sharded variables: place a ``VarCollection`` on a ``jax.sharding.Mesh`` by name rules.

* ``Rules([(regex, PartitionSpec), ...], strict=False)``: the first rule whose pattern
  matches a variable's name (``re.search`` over ``vc.items()`` names) gives its spec; a name
  that matches none is replicated (or an error with ``strict=True``).
* ``shard(vc, mesh, rules) -> {name: PartitionSpec}``: ``jax.device_put`` every value with
  ``NamedSharding(mesh, spec)``, all or nothing.
* ``follow(opt, model.vars(), specs)``: the specs of ``opt.vars()``, where optimizer state
  that stands for a parameter (Adam's ``mu``, ``nu``) takes that parameter's spec.
* ``constrain(vc, mesh, specs)``: inside a step, keep the new values on their specs.
* ``largest_axis(mesh_axis, parts)``: a rule value for FSDP (split each array's largest
  axis that ``parts`` divides).

``bridge.Jit`` needs no change: it compiles the step for the shardings of the variables it
reads and JAX partitions the computation. See ``docs/sharding.md``.

Example::

    from jax.sharding import Mesh, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("data",))
    rules = bridge.sharding.Rules([(r".*", bridge.sharding.largest_axis("data", mesh.size))])
    specs = bridge.sharding.shard(model.vars(), mesh, rules)
    bridge.sharding.shard(opt.vars(), mesh, bridge.sharding.follow(opt, model.vars(), specs))
    step = bridge.Jit(train_step, model.vars() + opt.vars())   # unchanged
"""

from bridge.sharding._rules import (
    Rules,
    ShardingError,
    constrain,
    follow,
    largest_axis,
    shard,
)

__all__ = ["Rules", "ShardingError", "constrain", "follow", "largest_axis", "shard"]
