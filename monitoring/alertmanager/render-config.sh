#!/usr/bin/env bash
# Render monitoring/alertmanager/alertmanager.yml for one machine.
#
#   render-config.sh OUTPUT_DIR
#
# Reads the same variables as the pipeline's own alerting (calibr_pipeline/connectors/alerts.py):
#   CALIBR_ALERT_SLACK_WEBHOOK_URL      (required, secret)  Slack incoming webhook
#   CALIBR_ALERT_PAGERDUTY_ROUTING_KEY  (required, secret)  PagerDuty Events v2 routing key
#   CALIBR_ALERT_SMTP_HOST              (required)          SMTP relay for the ops mailbox
#   CALIBR_ALERT_SMTP_PORT              (default 587)
#   CALIBR_ALERT_SMTP_FROM, CALIBR_ALERT_SMTP_TO (required; TO may be comma-separated)
#   CALIBR_ALERT_SMTP_USER              (optional)
#   CALIBR_ALERT_SMTP_PASSWORD          (optional, secret)
# Writes
#   OUTPUT_DIR/alertmanager.yml        no secret in it, only paths to the files below
#   OUTPUT_DIR/templates/*.tmpl
#   OUTPUT_DIR/secrets/{slack_api_url,pagerduty_routing_key,smtp_password}  mode 0600
# then runs `amtool check-config` on the result when amtool is installed.
# Only the variables listed in SUBST are substituted, so nothing else in the file is touched.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTPUT_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
missing=()
for var in CALIBR_ALERT_SLACK_WEBHOOK_URL CALIBR_ALERT_PAGERDUTY_ROUTING_KEY \
           CALIBR_ALERT_SMTP_HOST CALIBR_ALERT_SMTP_FROM CALIBR_ALERT_SMTP_TO; do
  [ -n "${!var:-}" ] || missing+=("$var")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "render-config.sh: missing ${missing[*]}" >&2
  exit 1
fi
command -v envsubst >/dev/null || { echo "render-config.sh: envsubst not found (apt-get install gettext-base)" >&2; exit 1; }

mkdir -p "$out/templates"
out="$(cd "$out" && pwd)"
secrets="$out/secrets"
(umask 077 && mkdir -p "$secrets")
chmod 700 "$secrets"
write_secret() {  # name value: written without a trailing newline, readable by the owner only
  (umask 077 && printf '%s' "$2" >"$secrets/$1.tmp")
  mv -f "$secrets/$1.tmp" "$secrets/$1"
}
write_secret slack_api_url "$CALIBR_ALERT_SLACK_WEBHOOK_URL"
write_secret pagerduty_routing_key "$CALIBR_ALERT_PAGERDUTY_ROUTING_KEY"
write_secret smtp_password "${CALIBR_ALERT_SMTP_PASSWORD:-}"

export CALIBR_ALERTMANAGER_SECRETS_DIR="$secrets"
export CALIBR_ALERT_SMTP_HOST CALIBR_ALERT_SMTP_FROM CALIBR_ALERT_SMTP_TO
export CALIBR_ALERT_SMTP_PORT="${CALIBR_ALERT_SMTP_PORT:-587}"
export CALIBR_ALERT_SMTP_USER="${CALIBR_ALERT_SMTP_USER:-}"
SUBST='${CALIBR_ALERTMANAGER_SECRETS_DIR} ${CALIBR_ALERT_SMTP_HOST} ${CALIBR_ALERT_SMTP_PORT} ${CALIBR_ALERT_SMTP_FROM} ${CALIBR_ALERT_SMTP_TO} ${CALIBR_ALERT_SMTP_USER}'
envsubst "$SUBST" <"$here/alertmanager.yml" >"$out/alertmanager.yml.tmp"
mv -f "$out/alertmanager.yml.tmp" "$out/alertmanager.yml"
cp "$here"/templates/*.tmpl "$out/templates/"

if grep -v '^[[:space:]]*#' "$out/alertmanager.yml" | grep -q '\${CALIBR_'; then
  echo "render-config.sh: unsubstituted placeholder left in $out/alertmanager.yml" >&2
  exit 1
fi
if command -v amtool >/dev/null; then
  amtool check-config "$out/alertmanager.yml" >/dev/null
fi
echo "rendered $out/alertmanager.yml"
