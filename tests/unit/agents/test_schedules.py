import pytest
from stable_baselines3.common.utils import LinearSchedule

from agents.dqn.schedules import linear_schedule


@pytest.mark.parametrize("step", [0, 500, 1600, 5000, 10_000])
def test_epsilon_schedule_known_answers_and_sb3(step):
    total, fraction = 10_000, 0.16
    eps = linear_schedule(1.0, 0.04, fraction, step, total)
    expected = 1.0 - min(step / 1600, 1.0) * 0.96
    assert eps == pytest.approx(expected)
    assert eps == pytest.approx(LinearSchedule(1.0, 0.04, fraction)(1 - step / total))  # SB3's meaning


def test_zero_fraction_is_the_final_value():
    assert linear_schedule(1.0, 0.1, 0.0, 0, 100) == 0.1
