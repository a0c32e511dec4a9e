#!/bin/sh
# Installs the system packages Jobline needs on Debian/Ubuntu, only those missing:
# nats-server (the bus; `jobline dev` and the tests start their own), git (bundles),
# a C++ toolchain (better-sqlite3's native build when no prebuilt binary fits), procps,
# openssh-server (sshd for the SSH executor's tests), chromium (the dashboard's browser tests,
# driven by playwright-core: never a browser download), zsh (the completion tests), docker-compose
# (1.29, only to validate docker-compose.yml: no Docker engine is needed or started).
set -eu
need=""
{ [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null; } || need="$need nats-server"
command -v git >/dev/null || need="$need git"
command -v g++ >/dev/null || need="$need g++"
command -v make >/dev/null || need="$need make"
# cc builds dist/bin/jobline-launcher, the small C program that starts every job (npm run build).
command -v cc >/dev/null || need="$need gcc"
command -v python3 >/dev/null || need="$need python3"
command -v pgrep >/dev/null || need="$need procps"
# openssh-server: the SSH executor's tests start their own sshd on a loopback port (never the system's).
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
[ -x /usr/bin/chromium ] || need="$need chromium"
# zsh: the CLI's tests load `jobline completion zsh` in a real zsh.
command -v zsh >/dev/null || need="$need zsh"
# docker-compose: deploy/deploy-files.int-spec.ts runs `docker-compose config -q` on the compose file.
command -v docker-compose >/dev/null || need="$need docker-compose"
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $need
