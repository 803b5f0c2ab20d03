"""What the harness runs: ``smoke``, ``compare`` and the CPU study (``python -m mapo_verl smoke | compare | study``)."""
