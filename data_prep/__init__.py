"""Preparers that turn MAPO's training and evaluation sets into parquet for verl's ``RLHFDataset``.

Run each as ``python -m data_prep.NAME [--local-dataset-path SRC] [--local-save-dir OUT]`` with NAME one of
``geo3k``, ``emoset``, ``mathvista``, ``mathvision``, ``mathverse``, ``webemo``, ``emotion6`` (the paper's sets, in
the registry :mod:`mapo_verl.data_sources`) or ``shapes`` (a small picture task made locally); ``OUT`` defaults to
``$MAPO_DATA_DIR/NAME`` (``~/data/mapo/NAME``), the folder the training configs read.

Modules by job: one per set (``NAME.py``); the shared drivers :mod:`data_prep.math_eval_driver` (MathVista,
MathVision, MathVerse) and :mod:`data_prep.emotion_driver` (EmoSet, WEBEmo, Emotion6); :mod:`data_prep.arguments`
(arguments, folder convention), :mod:`data_prep.hub_reader` (reading a split from the hub or a local hub-layout
copy), :mod:`data_prep.images`, :mod:`data_prep.prompts` (instructions, question and answer repairs),
:mod:`data_prep.rows` (the schema), :mod:`data_prep.sampling`, :mod:`data_prep.writer` (atomic chunked parquet and
the summary), :mod:`data_prep.datasets_needed` (what a composed config reads).
"""
