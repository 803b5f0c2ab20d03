"""The run tooling: everything that *runs* verl's trainer for this project, kept apart from the estimator.

A GPU user's ``import verl`` never imports this package beyond :mod:`mapo_verl_cpu.backend`'s registration of
names (the ``mapo_cpu`` entry point), which changes nothing unless ``VERL_PLATFORM=cpu`` selects it.

========================  ==============================================================================
module                    job
========================  ==============================================================================
``spec``                  :class:`RunSpec`: config, overrides, environment, interpreter, output folder;
                          the tiny CPU shrink of a shipped config
``rollouts``              the rollout backends a CPU run can select (one entry per backend)
``supervise``             a command under a wall-clock deadline; the whole process tree ended on time-out
``local``                 runner: ``main_ppo`` on this machine
``slurm``                 runner: ``sbatch`` of ``scripts/slurm_train.sbatch``, polled to its end
``ray_launcher``          runner: ``scripts/ray_cluster.sh submit`` to a running Ray cluster
``node_watch``            a Ray job's entry point: the trainer ended when a node with the job's actors dies
``local_slurm``           a throwaway local Slurm (``make smoke-slurm``)
``summary``               the end-of-run summary from verl's logs
``smoke``                 ``python -m mapo_verl smoke``
``smoke_data``            the smoke's Geometry3K data
``config_data``           the data a shipped config reads, built in public layouts and prepared by ``data_prep``
``public_layouts``        small sources in each dataset's public layout (MathVista ... Emotion6)
``compare``               ``python -m mapo_verl compare``: estimators against each other over seeds
``tiny_model``            the tiny Qwen2.5-VL, built and warm-started locally
``cpu_backend/``          verl's ``cpu`` platform, the ``hf`` rollout and the CPU fixes (a ``verl.plugins``
                          entry point)
========================  ==============================================================================
"""
