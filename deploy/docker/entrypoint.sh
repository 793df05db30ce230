#!/bin/sh
# Container entrypoint: size flow-router's worker processes from the container's
# CPU limit, then exec the command it was given (`flow-router serve …`).
#
# flow-router's own default (`--workers` unset) is one worker per core it can
# schedule on, and a CPU quota does not hide cores: a pod limited to 2 CPUs on a
# 64-core node would start 64 workers that share 2 CPUs of time. So, unless
# FLOW_ROUTER_WORKERS is already set (or is "auto"/"0"), export it as
#   - the CPU limit rounded down (at least 1), read from cgroup v2 `cpu.max` or
#     cgroup v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, and no more than `nproc`;
#   - `nproc` when there is no limit;
#   - 1 on the embedded memory store or without an upstream, which serve one
#     process only (flow-router refuses more).
# A `--workers` argument is left alone (flow-router prefers flags to the environment).
#
# `exec` replaces this shell, so SIGTERM from tini (or from the runtime when run
# without tini) reaches flow-router, which drains and stops its workers.
#
# FLOW_ROUTER_CGROUP_ROOT (default /sys/fs/cgroup) is read by this script only,
# so tests can point it at fake cgroup files.
set -eu

cgroup_root=${FLOW_ROUTER_CGROUP_ROOT:-/sys/fs/cgroup}

is_count() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# Whole CPUs allowed by the cgroup quota; prints nothing when there is no limit.
cgroup_cpus() {
    quota=
    period=
    if [ -r "$cgroup_root/cpu.max" ]; then
        # cgroup v2: "<quota> <period>" or "max <period>"
        read -r quota period <"$cgroup_root/cpu.max" || true
    else
        # cgroup v1: quota -1 means unlimited
        for dir in "$cgroup_root/cpu" "$cgroup_root/cpu,cpuacct" "$cgroup_root/cpuacct,cpu" "$cgroup_root"; do
            if [ -r "$dir/cpu.cfs_quota_us" ] && [ -r "$dir/cpu.cfs_period_us" ]; then
                read -r quota <"$dir/cpu.cfs_quota_us" || true
                read -r period <"$dir/cpu.cfs_period_us" || true
                break
            fi
        done
    fi
    if is_count "$quota" && is_count "$period" && [ "$period" -gt 0 ] && [ "$quota" -gt 0 ]; then
        cpus=$((quota / period))
        if [ "$cpus" -lt 1 ]; then
            cpus=1
        fi
        echo "$cpus"
    fi
}

cpu_workers() {
    cores=$(nproc 2>/dev/null || echo 1)
    limit=$(cgroup_cpus)
    if [ -n "$limit" ] && [ "$limit" -lt "$cores" ]; then
        echo "$limit"
    else
        echo "$cores"
    fi
}

# The store and upstream flow-router will use: flags win over the environment.
store=${FLOW_ROUTER_STORE:-memory://}
upstream=${FLOW_ROUTER_UPSTREAM:-}
workers_flag=
previous=
for arg in "$@"; do
    case $previous in
        --store) store=$arg ;;
        --upstream) upstream=$arg ;;
    esac
    case $arg in
        --store=*) store=${arg#--store=} ;;
        --upstream=*) upstream=${arg#--upstream=} ;;
        --workers | --workers=*) workers_flag=yes ;;
    esac
    previous=$arg
done

if [ -n "$workers_flag" ]; then
    sizing=flag
else
    sizing=${FLOW_ROUTER_WORKERS:-auto}
fi
case $sizing in
    auto | 0)
        case $store in
            memory* | '') workers=1 ;;
            *)
                if [ -z "$upstream" ]; then
                    workers=1
                else
                    workers=$(cpu_workers)
                fi
                ;;
        esac
        FLOW_ROUTER_WORKERS=$workers
        export FLOW_ROUTER_WORKERS
        echo "flow-router-entrypoint: FLOW_ROUTER_WORKERS=$workers" >&2
        ;;
esac

exec "$@"
