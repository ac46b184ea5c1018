#!/usr/bin/env bash
# Static checks of the monitoring configuration in monitoring/:
#   promtool check rules / test rules / check config, amtool check-config (template, a
#   rendered copy with dummy values, the loopback test variant), blackbox --config.check.
# Needs the Debian packages prometheus, prometheus-alertmanager, prometheus-blackbox-exporter
# (and gettext-base for envsubst). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in promtool amtool envsubst; do
  command -v "$tool" >/dev/null || { echo "monitoring-checks: $tool not found (apt-get install -y prometheus prometheus-alertmanager prometheus-blackbox-exporter gettext-base)" >&2; exit 1; }
done
blackbox="$(command -v prometheus-blackbox-exporter || command -v blackbox_exporter || true)"
[ -n "$blackbox" ] || { echo "monitoring-checks: blackbox exporter not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
step() { echo "== $*"; }

step "promtool check rules"
promtool check rules monitoring/prometheus/alerts.yml monitoring/prometheus/recording.yml

step "promtool test rules"
promtool test rules monitoring/prometheus/tests/*.yml

step "promtool check config"
promtool check config monitoring/prometheus/prometheus.yml

step "blackbox exporter config"
"$blackbox" --config.check --config.file=monitoring/blackbox/blackbox.yml 2>&1 | tail -n 1

step "amtool check-config (template)"
amtool check-config monitoring/alertmanager/alertmanager.yml

step "amtool check-config (rendered with dummy values)"
env -i PATH="$PATH" \
  CALIBR_ALERT_SLACK_WEBHOOK_URL=https://hooks.slack.invalid/services/T0/B0/x \
  CALIBR_ALERT_PAGERDUTY_ROUTING_KEY=dummy-routing-key \
  CALIBR_ALERT_SMTP_HOST=smtp.invalid CALIBR_ALERT_SMTP_FROM=alerts@calibr.invalid \
  CALIBR_ALERT_SMTP_TO=ops@calibr.invalid \
  bash monitoring/alertmanager/render-config.sh "$tmp/alertmanager"
amtool check-config "$tmp/alertmanager/alertmanager.yml"

if [ -x .venv/bin/python ]; then
  step "amtool check-config (loopback test variant)"
  .venv/bin/python -m calibr_pipeline_tests.monitoring_config.alertmanager_loopback http://127.0.0.1:9 >"$tmp/loopback.yml"
  amtool check-config "$tmp/loopback.yml"
fi

echo "monitoring checks passed"
