"""mapo-verl's CPU harness (the ``mapo-verl-cpu`` distribution in a checkout's ``cpu/``): verl's real trainer without
a GPU, for the smoke runs, ``compare``, the study and the tests. A GPU node installs only the product, ``mapo-verl``.

=================  ===========================================================================================
package            job
=================  ===========================================================================================
``backend``        verl's ``cpu`` platform, the ``hf`` rollout and the CPU fixes (the ``verl.plugins`` entry point
                   ``mapo_cpu``; names only, unless ``VERL_PLATFORM=cpu``)
``runners``        :class:`~mapo_verl_cpu.runners.spec.RunSpec`, the rollout backends, and one runner per launcher
                   (``local``, ``slurm``, ``ray``), each ``run(spec, placement, timeout, report) -> Outcome``
``fixtures``       the tiny Qwen2.5-VL, data in each set's public layout, the data a shipped config reads, a
                   throwaway local Slurm (``make smoke-slurm``)
``experiments``    ``python -m mapo_verl smoke | compare | study`` (the ``mapo_verl.commands`` entry points)
``checkout``       the checkout's root, its configs and the shared reference records (``MAPO_SHARED_DIR``)
=================  ===========================================================================================
"""
