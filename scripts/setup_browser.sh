#!/usr/bin/env bash
# What the browser test needs: Debian's chromium and a pinned playwright-core
# (tests/browser/node_modules, git-ignored). Idempotent; a failure here only
# warns, because tests/host/test_browser.py then skips and says why.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup_browser: installing Debian ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
      >/tmp/sampler_lab_apt.log 2>&1 \
      || echo "setup_browser: WARNING: apt-get install ${missing[*]} failed (see /tmp/sampler_lab_apt.log)"
  else
    echo "setup_browser: WARNING: ${missing[*]} missing and apt-get unavailable (or not root)"
  fi
fi

cd "$root/tests/browser" || exit 0
want="$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' package.json)"
have="$(node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup_browser: installing playwright-core $want"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: we drive the system chromium.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error \
      >/tmp/sampler_lab_npm.log 2>&1 \
      || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
      >>/tmp/sampler_lab_npm.log 2>&1 \
      || echo "setup_browser: WARNING: npm install failed (see /tmp/sampler_lab_npm.log)"
  else
    echo "setup_browser: WARNING: npm is missing; the browser test will skip"
  fi
fi
exit 0
