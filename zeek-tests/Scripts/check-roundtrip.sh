#!/bin/bash
# Checks a round trip's output (zeek/ and daemon/ of a btest-bg-run pair): every connection
# of conn.log reached the daemon exactly once, every verdict came back, notices are one per
# originator, responder and port.
set -euo pipefail
zeek-cut uid < zeek/conn.log | sort > conn-uids
cut -d' ' -f1 daemon/flows.txt | sort > flow-uids
test -s conn-uids
diff conn-uids flow-uids
zeek-cut uid < zeek/netanom.log | sort > verdict-uids
diff conn-uids verdict-uids
notices=$(zeek-cut note < zeek/notice.log | grep -c NetAnom::Anomalous_Flow)
pairs=$(cut -d' ' -f2- daemon/flows.txt | sed 's|/.*||' | sort -u | wc -l)
test "$notices" = "$pairs"
