# Alerting (issue 8): the real Alertmanager for the notification e2e tests
# (supervisor, internal/testpeers/alertmanager) and promtool for the
# PrometheusRule unit tests (deploy). Debian packages; the tests fail rather
# than skip when these are missing.
apt_install prometheus prometheus-alertmanager
export MEDIC_REQUIRE_ALERTMANAGER=1 MEDIC_REQUIRE_PROMTOOL=1
