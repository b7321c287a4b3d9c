"""The tools around training: each a `minbert` command built on the core (tables of runs, reports,
ensembles, export, speed, MLM pre-training). The core (encoder, data, heads, training, evaluation) never
imports from here."""
