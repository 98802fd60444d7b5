# Sourced by the screenshot scripts: sets $browser to a Chromium (or Chrome) binary, installing
# Debian's chromium when run as root, or exits 1 saying how to get one.
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
        browser=$(command -v chromium)
    else
        echo "error: no Chromium found; install it (Debian: apt-get install -y chromium)" >&2
        exit 1
    fi
fi
