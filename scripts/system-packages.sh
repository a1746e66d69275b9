#!/usr/bin/env bash
# Debian packages the tests use as real peers (sipp for SIP, Kannel for SMPP). Installs only what is missing;
# without root or a package registry it says so and the tests that need them skip.
set -u
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v bearerbox >/dev/null 2>&1 || need+=(kannel)  # a third-party SMPP sender for the gateway tests
command -v make >/dev/null 2>&1 || need+=(make)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # console tests (headless, via playwright)
fc-list 2>/dev/null | grep -qi "wenquanyi micro hei" || need+=(fonts-wqy-microhei)  # Chinese in screenshots
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-packages: not root; missing ${need[*]} (tests that need them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "system-packages: could not install ${need[*]} (tests that need them will skip)" >&2
exit 0
