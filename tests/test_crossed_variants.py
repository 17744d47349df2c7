"""benchmarks/crossed_variants.py: the variants' p-values against independent computations
(scipy's one-sample t on the cells, on the template means and on the seed means)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from crossed_variants import variant_ps  # noqa: E402

from ldmprobe.analysis import inference as I


def _table(seed, sd_t, sd_s, shift=0.3):
    rng = np.random.default_rng(seed)
    return shift + sd_t * rng.normal(size=(8, 1)) + sd_s * rng.normal(size=(1, 4)) \
        + rng.normal(size=(8, 4))


def _find(sign_t, sign_s):
    """A complete 8 x 4 table whose template / seed components have the given signs."""
    for seed in range(2000):
        y = _table(seed, 0.4, 0.4)
        r = I.crossed_test(y, interval=False)
        if (r.var_template > 0) == sign_t and (r.var_seed > 0) == sign_s:
            return y, r
    raise AssertionError("no table with those signs")


def test_pooling_rules_equal_one_sample_t_tests():
    y, r = _find(True, False)  # seed component <= 0: pool seeds -> t over template means
    ps = variant_ps(y)
    assert ps["pool factors <= 0"] == pytest.approx(sps.ttest_1samp(y.mean(1), 0).pvalue,
                                                    rel=1e-10)
    assert ps["cell t if both <= 0"] == ps["shipped"] == r.p_value

    y, r = _find(False, True)  # template component <= 0: t over seed means
    assert variant_ps(y)["pool factors <= 0"] == pytest.approx(
        sps.ttest_1samp(y.mean(0), 0).pvalue, rel=1e-10)

    y, r = _find(False, False)  # both <= 0: t over the cells
    cells = sps.ttest_1samp(y.ravel(), 0).pvalue
    ps = variant_ps(y)
    assert ps["pool factors <= 0"] == pytest.approx(cells, rel=1e-10)
    assert ps["cell t if both <= 0"] == pytest.approx(cells, rel=1e-10)
    assert ps["shipped"] != pytest.approx(cells, rel=1e-3)

    y, r = _find(True, True)  # both > 0: every variant is the shipped test
    assert set(variant_ps(y).values()) == {r.p_value}


def _direct_rate(lam, reps, alpha, seed):
    """P(shipped p <= alpha) by simulating 8 x 4 tables with the given λ's (residual SD 1)."""
    rng = np.random.default_rng(seed)
    sd_t, sd_s = np.sqrt((lam[0] - 1) / 4), np.sqrt((lam[1] - 1) / 8)
    k = 0
    for _ in range(reps):
        y = (sd_t * rng.normal(size=(8, 1)) + sd_s * rng.normal(size=(1, 4))
             + rng.normal(size=(8, 4)))
        k += I.crossed_test(y, interval=False).p_value <= alpha
    return k / reps


@pytest.mark.slow  # about 5 s of CPU
def test_rao_blackwellised_rates_and_calibration_agree_with_direct_simulation():
    from crossed_variants import P_GRID, Calibration, calibration_rates

    cal = Calibration()
    for lam in ((1, 1, 1), (1, 9, 1)):
        direct = _direct_rate(lam, 3000, 0.05, seed=5)  # SE about 0.004
        (rb, se), = [calibration_rates(cal, lam, 0.0, 1500, (), seed=6)["generalised p"]]
        assert abs(rb[0] - direct) < 3 * np.hypot(se[0], np.sqrt(direct * (1 - direct) / 3000))
        # the plug-in calibration at the true λ's: P(p* <= 0.05) under them
        g = cal.calibrated(np.asarray(lam, float), "plug-in")
        at05 = np.interp(np.log(0.05), np.log(P_GRID), g)
        assert abs(at05 - direct) < 0.015, (lam, at05, direct)
