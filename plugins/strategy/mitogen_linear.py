"""Strategy ``mitogen_linear``: the kit's default (ansible.cfg).

Mitogen's linear strategy when the ``mitogen`` package is importable (a
dependency of ai4os-kit): one persistent Python interpreter per host instead
of a new one per task, which is what makes converging many nodes from a
2-core controller affordable (benchmarks/converge.py). Where it is not
installed, Ansible's own ``linear`` runs instead, with a warning.

Back to Ansible's strategy for one run: ``ANSIBLE_STRATEGY=linear``; for
good: ``strategy = linear`` in ansible.cfg.

This file only exists so that ansible.cfg can name the strategy without a
path into the virtual environment; Mitogen's own strategy module is a proxy
of the same kind.
"""

from __future__ import annotations

from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # plain Ansible without Mitogen
    from ansible.plugins.strategy.linear import StrategyModule as _Linear

    class StrategyModule(_Linear):  # type: ignore[no-redef]
        """Ansible's linear strategy, announced as the fallback it is."""

        def __init__(self, tqm):  # noqa: ANN001 (Ansible's signature)
            Display().warning("mitogen is not installed: running with Ansible's linear strategy "
                              "(pip install mitogen, or set ANSIBLE_STRATEGY=linear to silence this)")
            super().__init__(tqm)

else:
    _MitogenBase = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _MitogenBase):  # type: ignore[no-redef]
        """Mitogen's mixin over Ansible's linear strategy."""
