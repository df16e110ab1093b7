# rules-replay: promtool (Debian's prometheus package) checks that the
# project's rule unit tests pass under promtool as under `medic test rules`
# (supervisor/ruletest), and prometheus serves recorded data to `medic
# replay`'s tests (supervisor/replay). Fail rather than skip without them.
apt_install prometheus
export MEDIC_REQUIRE_PROMTOOL=1 MEDIC_REQUIRE_PROMETHEUS=1
