"""A CPU study of advantage allocation: MAPO against GRPO and its variants.

``python -m mapo_verl study`` runs two parts (see the modules for the equations):

* :mod:`~mapo_verl_cpu.experiments.study.allocation`  the advantage each estimator gives a success and a failure
  for every success count N = 0..G, and the paper's graded example; "reversion" and "mirror"
  as numbers;
* :mod:`~mapo_verl_cpu.experiments.study.simulation`  a controlled policy-gradient simulation (shared-parameter
  softmax policy, G rollouts per prompt, verl's clipped surrogate, advantages from verl's
  registry) over three difficulty mixtures and several seeds.

It is a simulation of the mechanism, not a reproduction of the paper's VLM results.
"""
