# operator-ux (issue 14): the /status page is checked in headless Chromium
# (supervisor.TestStatusPageInChromium) and the Prometheus-compatible API
# with promtool from Debian's prometheus package (supervisor/api). Both
# tests fail rather than skip when these are required and missing.
apt_install chromium prometheus
export MEDIC_REQUIRE_CHROMIUM=1 MEDIC_REQUIRE_PROMTOOL=1
