"""Preparers that turn MAPO's training and evaluation sets into parquet for verl's ``RLHFDataset``.

Run each as ``python -m data_prep.NAME --local-save-dir OUT [--local-dataset-path SRC]`` with NAME one of
``geo3k``, ``emoset``, ``mathvista``, ``mathvision``, ``mathverse``, ``webemo``, ``emotion6``.
"""
