"""Experiments: the harnesses of `main.py --mode=bench` (`bench`) and `--mode=study`
(`studies`, the studies in `studies.yaml`), and the measurement scripts run as
`.venv/bin/python experiments/NAME.py` (input pipeline, own folders, TFLite, sizes, resume
cost, the keras `model.fit` peer, test-time views). Each prints or writes the figures that
docs/results.md records."""
