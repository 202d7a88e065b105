#!/usr/bin/env bash
# A throwaway one-node Ceph cluster with an S3 gateway (radosgw) on loopback, for the tests.
#
#   ceph.sh start DIR MON_PORT RGW_PORT [WATCH_PID]   → DIR/ready (env lines) or DIR/failed (why)
#   ceph.sh stop DIR                                  → every daemon it started is gone, DIR removed
#
# One monitor, one memstore OSD, pool size 1, no cephx, everything in DIR and on 127.0.0.1.
# With WATCH_PID, a watchdog stops the cluster when that process (the jest run) is gone, so a
# killed test run leaves no daemons behind.
set -uo pipefail

cmd=${1:?start|stop}
dir=${2:?directory}
conf="$dir/ceph.conf"
script=$(readlink -f "$0")

log() { echo "ceph.sh: $*" >>"$dir/ceph.sh.log"; }

stop() {
  [ -d "$dir" ] || return 0
  # The daemons run in the foreground in the start script's process group (spawned detached, it
  # leads its own). That group is ended as a whole only once verified to be ours: the start
  # script, or a daemon it recorded, is still in it.
  local started group="" pid f
  started=$(cat "$dir/start.pid" 2>/dev/null)
  for pid in "$started" $(cat "$dir"/pids/* 2>/dev/null); do
    if [ -n "$started" ] && [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$started" ]; then
      group=$started
      break
    fi
  done
  # The gateway, then the OSD, then the monitor; a throwaway cluster (memstore) gets two seconds.
  for name in rgw osd mon; do
    [ -s "$dir/pids/$name" ] && kill -TERM "$(cat "$dir/pids/$name")" 2>/dev/null
  done
  for _ in $(seq 1 10); do
    alive=0
    for f in "$dir"/pids/*; do
      [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  # Whatever is left of it: daemons, a boot still under way and its CLI calls, the watchdog.
  [ -n "$group" ] && [ -n "$(ps -o pid= -g "$group" 2>/dev/null)" ] && kill -KILL -- "-$group" 2>/dev/null
  for f in "$dir"/pids/*; do
    [ -s "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
  done
  rm -rf "$dir"
  rmdir "$(dirname "$dir")" 2>/dev/null # the temporary directory made for it, when now empty
  return 0
}

fail() {
  log "FAILED: $*"
  # The reason, with the logs' last lines: the directory goes with the test run.
  {
    echo "$*"
    for f in "$dir/ceph.sh.log" "$dir"/log/*.out; do
      [ -s "$f" ] && echo "--- $(basename "$f"):" && tail -n 15 "$f"
    done
  } >"$dir/failed.tmp" 2>/dev/null
  mv "$dir/failed.tmp" "$dir/failed"
  exit 1
}

start() {
  local mon_port=${3:?mon port} rgw_port=${4:?rgw port} watch=${5:-}
  mkdir -p "$dir"/{run,log,mon,osd/ceph-0,rgw,pids}
  echo $$ >"$dir/start.pid"
  for bin in ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool curl; do
    command -v "$bin" >/dev/null || fail "$bin is not installed (apt-get install ceph-mon ceph-osd ceph-common radosgw curl)"
  done
  [ "$(id -u)" = 0 ] || fail "not root: the Ceph daemons are only started as root here"
  if [ -n "$watch" ]; then
    (
      exec </dev/null >/dev/null 2>&1
      while kill -0 "$watch" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
      # In a session of its own: stopping ends the start script's group, the watchdog included.
      [ -d "$dir" ] && setsid bash "$script" stop "$dir"
    ) &
  fi
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
# Without cephx there is no session key for "secure" connections (radosgw asks for them).
ms mon client mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd crush update on start = false
osd crush chooseleaf type = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
# A nearly full disk must not stop the monitor (it shuts down below 5 % free by default).
mon data avail warn = 1
mon data avail crit = 0
osd max object name len = 460
osd max object namespace len = 64
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
EOF
  local c="-c $conf"
  log "creating the monitor"
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >>"$dir/ceph.sh.log" 2>&1 || fail "ceph-authtool"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >>"$dir/ceph.sh.log" 2>&1 || fail "monmaptool"
  ceph-mon $c --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" >>"$dir/ceph.sh.log" 2>&1 || fail "ceph-mon --mkfs"
  ceph-mon $c -f -i a >>"$dir/log/mon.out" 2>&1 &
  echo $! >"$dir/pids/mon"
  log "creating the OSD"
  local id
  id=$(timeout 60 ceph $c --connect-timeout 30 osd create 2>>"$dir/ceph.sh.log") || fail "ceph osd create (monitor not answering)"
  [ "$id" = 0 ] || fail "ceph osd create returned '$id'"
  ceph-osd $c -i 0 --mkfs >>"$dir/ceph.sh.log" 2>&1 || fail "ceph-osd --mkfs"
  # The OSD's own CRUSH update races its first boot ("wrong fsid"): place it here instead.
  timeout 60 ceph $c osd crush add osd.0 1.0 root=default >>"$dir/ceph.sh.log" 2>&1 || fail "ceph osd crush add"
  ceph-osd $c -f -i 0 >>"$dir/log/osd.out" 2>&1 &
  echo $! >"$dir/pids/osd"
  for _ in $(seq 1 120); do
    timeout 10 ceph $c osd dump 2>/dev/null | grep -q '^osd.0 up' && break
    sleep 0.5
  done
  timeout 10 ceph $c osd dump 2>/dev/null | grep -q '^osd.0 up' || fail "osd.0 did not come up"
  log "starting the gateway"
  radosgw $c -f -n client.rgw >>"$dir/log/rgw.out" 2>&1 &
  echo $! >"$dir/pids/rgw"
  local ok=0
  for _ in $(seq 1 240); do
    if curl -fs -o /dev/null "http://127.0.0.1:$rgw_port/" 2>/dev/null; then ok=1; break; fi
    sleep 0.5
  done
  [ $ok = 1 ] || fail "radosgw did not answer on 127.0.0.1:$rgw_port"
  local access secret
  access=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  timeout 60 radosgw-admin $c -n client.admin user create --uid=evidence-test --display-name=evidence-test \
    --access-key="$access" --secret="$secret" >>"$dir/ceph.sh.log" 2>&1 || fail "radosgw-admin user create"
  cat >"$dir/ready.tmp" <<EOF
CEPH_S3_ENDPOINT=http://127.0.0.1:$rgw_port
CEPH_S3_ACCESS_KEY_ID=$access
CEPH_S3_SECRET_ACCESS_KEY=$secret
EOF
  mv "$dir/ready.tmp" "$dir/ready"
  log "ready"
}

case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR MON_PORT RGW_PORT [WATCH_PID] | stop DIR" >&2; exit 2 ;;
esac
