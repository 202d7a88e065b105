#!/bin/sh
# Pushes one finished call recording to the evidence archive. Called by MixMonitor when the
# recording is closed (see extensions.conf); also fine to run by hand or from cron for retries.
#
#   evidence-push.sh <recording file> <call id> [from number] [to number] [direction]
#
# Safety: the archive URL and key come from a root-readable config file, never the command line
# (which every local user can read in ps). Every argument is checked against a strict pattern; a
# caller ID that does not look like a phone number is left out rather than passed on, and values
# reach curl only as single, quoted arguments: nothing from the call is ever evaluated by a shell.
set -eu

CONF=${EVIDENCE_PUSH_CONF:-/etc/evidence-archive/push.conf}
# push.conf sets EVIDENCE_URL (e.g. https://evidence.example.com), EVIDENCE_SOURCE (this PBX's
# name) and EVIDENCE_KEY_FILE (a file holding one line: "Authorization: Bearer eak_...").
# shellcheck source=/dev/null
. "$CONF"

file=${1:?recording file}
call_id=${2:?call id}
from=${3:-}
to=${4:-}
direction=${5:-}

log() { logger -t evidence-push -- "$*" 2>/dev/null || echo "evidence-push: $*" >&2; }

case "$call_id" in
  *[!0-9A-Za-z._-]* | "" | .*) log "refusing call id with unexpected characters"; exit 2 ;;
esac
case "$EVIDENCE_SOURCE" in
  *[!0-9A-Za-z._-]* | "") log "EVIDENCE_SOURCE must be letters, digits, . _ -"; exit 2 ;;
esac
# Phone numbers: digits, optionally a leading +, 3 to 20 characters. Anything else is dropped.
phone_ok() { case "$1" in +*[!0-9]* | [!+0-9]* | *[!0-9+]*) return 1 ;; esac; [ ${#1} -ge 3 ] && [ ${#1} -le 20 ]; }
phone_ok "$from" || from=
phone_ok "$to" || to=
case "$direction" in inbound | outbound) ;; *) direction= ;; esac
[ -f "$file" ] || { log "no such recording: $call_id"; exit 2; }

# Metadata travels as headers: every value has passed a pattern of digits, "+" or fixed words,
# so none can carry a line break or anything else into the request.
set -- -H "X-Call-Source: $EVIDENCE_SOURCE"
[ -n "$from" ] && set -- "$@" -H "X-Call-From: $from"
[ -n "$to" ] && set -- "$@" -H "X-Call-To: $to"
[ -n "$direction" ] && set -- "$@" -H "X-Call-Direction: $direction"

# -T sends the file as the PUT body. Retries cover a restarting archive; the call id makes every
# retry safe (same bytes, same item).
status=$(curl --silent --show-error --output /dev/null --write-out '%{http_code}' \
  --retry 5 --retry-all-errors --retry-delay 5 --max-time 600 \
  -H "@$EVIDENCE_KEY_FILE" -H 'Content-Type: audio/wav' \
  "$@" -T "$file" "$EVIDENCE_URL/v1/calls/$call_id/recording") || status=000

case "$status" in
  200 | 201) log "archived call $call_id ($status)" ;;
  *) log "archive answered $status for call $call_id; the recording stays in place"; exit 1 ;;
esac
