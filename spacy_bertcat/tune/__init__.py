"""Hyperparameter search over a `spacy train` config on Ray Tune (`spacy-bertcat
tune`): the search space of a config's [tune] block (`space.py`), one trial as a
real `spacy train` in its own process and folder (`trial.py`) reporting its dev
scores through a training logger (`logger.py`), the study on Ray Tune with Optuna's
TPE and ASHA, its folder, resume and outputs (`study.py`), the trials table
(`table.py`) and the report picture (`plots.py`).

Importing the room does not import Ray: `study.py` and `trial.py` import it where
they run.
"""
