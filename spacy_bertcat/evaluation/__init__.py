"""What runs a trained pipeline on held-out gold data: the evaluation report
(``evaluate``), and fitting a component's decisions on such data: per-label
thresholds (``thresholds``) and calibration (``calibrate``). The math these use
works on arrays and lives in ``decisions/``.
"""
